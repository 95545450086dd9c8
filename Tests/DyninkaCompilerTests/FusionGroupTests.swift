import DyninkaCompiler
import Testing

/// Which services share a process: `@Service(isolated:)` in the file, then the groups a run (by
/// node) and a deployment (by what must share a node) make of them.
@Suite struct FusionGroupTests {
    static let source = prelude + """
        @Service func first() -> A { A(x: 1) }
        extension A {
            @Service func second() -> A { self }
            @Service(isolated: true) func risky() -> A { self }
            @Service(near: "second") func third() -> B { B(y: x) }
        }
        extension B { @Service(node: "edge-1") func fourth() -> B { self } }
        @main struct M { static func main() { _ = first().second().risky().third().fourth() } }
        """

    @Test func isolatedIsReadFromTheFileAndOnlyAsABooleanLiteral() throws {
        let ir = try Analyzer(file: "App.swift", source: Self.source).analyze().ir
        #expect(ir.service("risky")?.isolated == true)
        #expect(ir.service("second")?.isolated == nil)
        let bad = diagnostics(prelude + """
            @Service(isolated: "yes") func first() -> A { A(x: 1) }
            @main struct M { static func main() { _ = first() } }
            """)
        #expect(bad.first?.message == "@Service(isolated:) needs true or false", "\(bad)")
    }

    @Test func aRunGroupsByNodeKeepsIsolatedApartAndPutsTheEntryFirst() throws {
        let ir = try Analyzer(file: "App.swift", source: Self.source).analyze().ir
        #expect(Fusion.none.groups(ir.services, entry: "first") == [["first"], ["second"], ["risky"], ["third"], ["fourth"]])
        #expect(Fusion.auto.groups(ir.services, entry: "first") == [["first", "second", "third", "fourth"], ["risky"]])
        let nodes = ["first": "cloud", "second": "edge-1", "third": "edge-1", "fourth": "edge-1", "risky": "edge-1"]
        #expect(Fusion.auto.groups(ir.services, entry: "second") { nodes[$0] } == [["first"], ["second", "third", "fourth"], ["risky"]])
        #expect(Fusion.auto.groups(ir.services, entry: "fourth") { nodes[$0] } == [["first"], ["fourth", "second", "third"], ["risky"]])
    }

    @Test func aDeploymentFusesOnlyWhatMustShareANode() throws {
        let ir = try Analyzer(file: "App.swift", source: Self.source).analyze().ir
        // third is near second: one pod. fourth is pinned alone; first has no constraint.
        #expect(Fusion.auto.deployGroups(ir.services, entry: "first") == [["first"], ["second", "third"], ["risky"], ["fourth"]])
        #expect(Fusion.none.deployGroups(ir.services, entry: "first").count == 5)
    }
}

import DyninkaCompiler
import Testing

/// Analyzes `source` and returns the diagnostics it fails with (none when it succeeds).
func diagnostics(_ source: String) -> [Diagnostic] {
    do {
        _ = try Analyzer(file: "App.swift", source: source).analyze()
        return []
    } catch {
        return error.diagnostics.filter { $0.severity == .error }
    }
}

let prelude = """
    import Dyninka
    struct A: Codable { var x: Int }
    struct B: Codable { var y: Int }

    """

/// One test per diagnostic: each says what is wrong, where, and what to do.
@Suite struct DiagnosticTests {
    @Test func aChainCallingAFunctionThatIsNotAServiceIsAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            extension A { func helper() -> A { self } }
            extension A { @Service func last() -> B { B(y: x) } }
            @main struct M { static func main() { _ = first().helper().last() } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "'helper' is called in the dataflow but is not a service")
        #expect(d.line == 7)
        #expect(d.hint?.contains("mark 'helper' @Service") == true)
        #expect(d.description.hasPrefix("App.swift:7:"))
    }

    @Test func typesThatDoNotLineUpAreAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            extension B { @Service func second() -> B { self } }
            @main struct M { static func main() { _ = first().second() } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "'second' takes B but 'first' returns A")
        #expect(d.line == 6)
        #expect(d.hint?.contains("extension A") == true)
    }

    @Test func placedNamingAnUnknownServiceIsAnError() throws {
        let found = diagnostics(prelude + """
            @Placed("nowhere") var total = 0
            @Service func first() -> A { A(x: 1) }
            @main struct M { static func main() { _ = first() } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "@Placed names 'nowhere', which is not a service")
        #expect(d.line == 4)
        #expect(d.hint == "services in this file: first")
    }

    @Test func aServiceTypeThatIsNotCodableIsAnError() throws {
        let found = diagnostics(prelude + """
            struct Plain { var z: Int }
            @Service func first() -> Plain { Plain(z: 1) }
            @main struct M { static func main() { _ = first() } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "service 'first' uses 'Plain', which is not Codable")
        #expect(d.hint?.contains("struct Plain: Codable") == true)
    }

    @Test func codableAddedByAnExtensionCounts() {
        #expect(diagnostics(prelude + """
            struct Plain { var z: Int }
            extension Plain: Codable {}
            @Service func first() -> Plain { Plain(z: 1) }
            @main struct M { static func main() { _ = first() } }
            """).isEmpty)
    }

    @Test func duplicateServiceNamesAreAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            extension B { @Service func first() -> A { A(x: y) } }
            @main struct M { static func main() { _ = first() } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "duplicate service name 'first'")
        #expect(d.line == 5)
        #expect(d.hint?.contains("line 4") == true)
    }

    @Test func genericServicesAreAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first<T: Codable>(_ value: T) -> A { A(x: 1) }
            @main struct M { static func main() { _ = first(1) } }
            """)
        #expect(found.first?.message == "service 'first' is generic")
    }

    @Test func inoutServicesAreAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first(value: inout A) -> A { value }
            @main struct M { static func main() { var a = A(x: 1); _ = first(value: &a) } }
            """)
        #expect(found.first?.message == "service 'first' has an inout parameter 'value'")
    }

    @Test func noMainChainIsAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            @main struct M { static func main() { print("nothing") } }
            """)
        let d = try #require(found.first)
        #expect(d.message == "main has no chain of service calls")
        #expect(d.hint?.contains("get().filterTemperature()") == true)
    }

    @Test func noMainTypeIsAnError() throws {
        let found = diagnostics(prelude + "@Service func first() -> A { A(x: 1) }\n")
        #expect(found.first?.message == "no @main type: there is no main chain to run")
    }

    @Test func aDependencyOfTheWrongTypeIsAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            @Service func other() -> A { A(x: 2) }
            extension A { @Service func join(with: B) -> B { with } }
            @main struct M { static func main() { _ = first().join(with: other()) } }
            """)
        #expect(found.first?.message == "'with' of 'join' is B but 'other()' returns A")
    }

    @Test func anArgumentThatIsNeitherLiteralNorServiceIsAnError() throws {
        let found = diagnostics(prelude + """
            @Service func first() -> A { A(x: 1) }
            extension A { @Service func scale(by: Int) -> A { A(x: x * by) } }
            @main struct M { static func main() { let k = 2; _ = first().scale(by: k) } }
            """)
        #expect(found.first?.message == "argument 'by' of 'scale' must be a literal or a service call")
    }

    @Test func aPlacedVariableOfUnknownTypeAsksForAnAnnotation() throws {
        let found = diagnostics(prelude + """
            @Placed("first") var state = A(x: 0)
            @Service func first() -> A { state }
            @main struct M { static func main() { _ = first() } }
            """)
        #expect(found.first?.message == "cannot tell the type of @Placed variable 'state'")
        #expect(found.first?.hint?.contains("var state: TYPE = A(x: 0)") == true)
    }

    @Test func syntaxErrorsAreReportedWithTheirPosition() throws {
        let found = diagnostics("import Dyninka\nstruct A: Codable { var x: Int \n")
        #expect(!found.isEmpty)
        #expect(found.first?.line ?? 0 >= 2)
    }

    @Test func everyErrorIsReportedNotJustTheFirst() {
        let found = diagnostics(prelude + """
            @Placed("nowhere") var total = 0
            @Service func first<T>(_ t: T) -> A { A(x: 1) }
            @main struct M { static func main() { print(1) } }
            """)
        #expect(found.count >= 2)
    }
}

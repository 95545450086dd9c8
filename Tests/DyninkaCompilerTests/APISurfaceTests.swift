import Foundation
import SwiftParser
import SwiftSyntax
import Testing

/// What the package offers to code outside it: the library products an app links (`Dyninka`, its
/// macros, `DyninkaRuntime`). Everything else is one of our own modules, whose shared
/// declarations are `package`, so that `public` always means API.
let apiModules: Set<String> = ["Dyninka", "DyninkaMacros", "DyninkaRuntime"]

/// One declaration marked `public` or `open`: where it stands, and whether a doc comment precedes it.
struct PublicDeclaration: CustomStringConvertible, Sendable {
    var file: String
    var line: Int
    var text: String
    var documented: Bool
    var description: String { "\(file):\(line): \(text)" }
}

/// Finds declarations with a `public` or `open` modifier (imports aside), as the parser sees
/// them: a `public` inside a string literal, such as generated code, is not one.
final class PublicDeclarationFinder: SyntaxVisitor {
    private let file: String
    private let converter: SourceLocationConverter
    private(set) var found: [PublicDeclaration] = []

    init(file: String, tree: SourceFileSyntax) {
        self.file = file
        converter = SourceLocationConverter(fileName: file, tree: tree)
        super.init(viewMode: .sourceAccurate)
    }

    override func visit(_ node: DeclModifierSyntax) -> SyntaxVisitorContinueKind {
        guard ["public", "open"].contains(node.name.text),
              let declaration = node.parent?.parent?.as(DeclSyntax.self),
              !declaration.is(ImportDeclSyntax.self) else { return .skipChildren }
        let documented = declaration.leadingTrivia.contains {
            switch $0 {
            case .docLineComment, .docBlockComment: true
            default: false
            }
        }
        let line = declaration.startLocation(converter: converter, afterLeadingTrivia: true).line
        let text = declaration.trimmedDescription.prefix { $0 != "\n" && $0 != "{" }
        found.append(PublicDeclaration(file: file, line: line, text: String(text), documented: documented))
        return .skipChildren
    }
}

/// Every `public` declaration of `Sources`, module by module (the folder under `Sources`).
func publicDeclarations() throws -> [String: [PublicDeclaration]] {
    let sources = "\(packageRoot)/Sources"
    var byModule: [String: [PublicDeclaration]] = [:]
    for module in try FileManager.default.contentsOfDirectory(atPath: sources) {
        guard let files = FileManager.default.enumerator(atPath: "\(sources)/\(module)") else { continue }
        for case let relative as String in files where relative.hasSuffix(".swift") {
            let path = "Sources/\(module)/\(relative)"
            let tree = Parser.parse(source: try String(contentsOfFile: "\(packageRoot)/\(path)", encoding: .utf8))
            let finder = PublicDeclarationFinder(file: path, tree: tree)
            finder.walk(tree)
            byModule[module, default: []] += finder.found
        }
    }
    return byModule
}

/// Parsed once for all the tests below (the debug parser takes seconds for the whole tree).
let sourcesDeclarations = Result { try publicDeclarations() }

/// The public API is documented, and only the library products have one.
@Suite struct APISurfaceTests {
    @Test func everyPublicDeclarationHasADocComment() throws {
        let declarations = try sourcesDeclarations.get().values.flatMap { $0 }
        // The API modules declare something public: the walk found them.
        #expect(declarations.count > 50, "found only \(declarations.count) public declarations; is the source walk broken?")
        let undocumented = declarations.filter { !$0.documented }.map(\.description)
        #expect(undocumented.isEmpty, "public declarations without a /// comment:\n\(undocumented.joined(separator: "\n"))")
    }

    @Test func onlyTheLibraryProductsDeclarePublicAPI() throws {
        let stray = try sourcesDeclarations.get().filter { !apiModules.contains($0.key) }.values.flatMap { $0 }.map(\.description)
        #expect(stray.isEmpty, "declarations marked public outside \(apiModules.sorted()); our own modules share with `package`:\n\(stray.joined(separator: "\n"))")
    }

    @Test func theFinderSeesModifiersNotStrings() throws {
        let source = """
            /// Documented.
            @inlinable public func a() {}
            public var b = 1
            let template = "public func c() {}"
            public import Foundation
            """
        let tree = Parser.parse(source: source)
        let finder = PublicDeclarationFinder(file: "t.swift", tree: tree)
        finder.walk(tree)
        #expect(finder.found.map(\.line) == [2, 3])
        #expect(finder.found.map(\.documented) == [true, false])
    }
}

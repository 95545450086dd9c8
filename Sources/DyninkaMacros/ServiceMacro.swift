import SwiftDiagnostics
import SwiftSyntax
import SwiftSyntaxMacros

/// `@Service`: marks a function as a service. Locally it changes nothing; it only checks that
/// the function can become a network service, with the same messages `dyninka build` gives.
public struct ServiceMacro: PeerMacro {
    /// Checks the function (no generics, no `inout`, a return value) and adds nothing.
    public static func expansion(of node: AttributeSyntax, providingPeersOf declaration: some DeclSyntaxProtocol,
                                 in context: some MacroExpansionContext) throws -> [DeclSyntax] {
        guard let function = declaration.as(FunctionDeclSyntax.self) else {
            throw MacroError("@Service applies to functions (global, or methods in an extension)")
        }
        if function.genericParameterClause != nil {
            throw MacroError("service '\(function.name.text)' is generic; a service needs concrete Codable types")
        }
        for parameter in function.signature.parameterClause.parameters {
            if parameter.type.description.contains("inout") {
                throw MacroError("service '\(function.name.text)' has an inout parameter; services exchange values, pass and return them")
            }
        }
        if function.signature.returnClause == nil {
            throw MacroError("service '\(function.name.text)' returns nothing; a service returns a Codable value (or an Optional to drop items)")
        }
        return []
    }
}

/// An error shown at the macro's use site.
struct MacroError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

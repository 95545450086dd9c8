import SwiftSyntax
import SwiftSyntaxMacros

/// `@Placed("service")` on a global variable: the state lives with that service. Locally the
/// variable becomes an accessor over locked storage, so it is safe under Swift 6 concurrency.
public struct PlacedMacro: AccessorMacro, PeerMacro {
    /// The variable's getter and setter, both through its locked storage.
    public static func expansion(of node: AttributeSyntax, providingAccessorsOf declaration: some DeclSyntaxProtocol,
                                 in context: some MacroExpansionContext) throws -> [AccessorDeclSyntax] {
        let name = try variableName(declaration)
        return [
            "get { _dyninkaPlaced_\(raw: name).value }",
            "set { _dyninkaPlaced_\(raw: name).value = newValue }",
        ]
    }

    /// The variable's locked storage (`_dyninkaPlaced_NAME`), holding its initial value.
    public static func expansion(of node: AttributeSyntax, providingPeersOf declaration: some DeclSyntaxProtocol,
                                 in context: some MacroExpansionContext) throws -> [DeclSyntax] {
        let name = try variableName(declaration)
        guard let binding = declaration.as(VariableDeclSyntax.self)?.bindings.first,
              let initializer = binding.initializer?.value else {
            throw MacroError("@Placed variable '\(name)' needs an initial value")
        }
        if let type = binding.typeAnnotation?.type {
            return ["let _dyninkaPlaced_\(raw: name) = PlacedState<\(type.trimmed)>(\(initializer.trimmed))"]
        }
        return ["let _dyninkaPlaced_\(raw: name) = PlacedState(\(initializer.trimmed))"]
    }

    private static func variableName(_ declaration: some DeclSyntaxProtocol) throws -> String {
        guard let variable = declaration.as(VariableDeclSyntax.self), variable.bindingSpecifier.text == "var",
              variable.bindings.count == 1,
              let pattern = variable.bindings.first?.pattern.as(IdentifierPatternSyntax.self) else {
            throw MacroError("@Placed applies to one global 'var' with an initial value")
        }
        return pattern.identifier.text
    }
}

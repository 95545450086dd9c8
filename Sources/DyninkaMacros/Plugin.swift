import SwiftCompilerPlugin
import SwiftSyntaxMacros

@main
struct DyninkaMacrosPlugin: CompilerPlugin {
    let providingMacros: [Macro.Type] = [ServiceMacro.self, PlacedMacro.self]
}

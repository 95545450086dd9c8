import SwiftSyntax

/// A function marked @Service, as found.
struct ServiceCandidate {
    let node: FunctionDeclSyntax
    let receiver: String?
    var ir: ServiceIR

    var name: String { ir.name }

    /// The types the service exchanges, with the syntax that names each.
    func typesUsed() -> [(String, Syntax)] {
        var used: [(String, Syntax)] = []
        if let receiver { used.append((receiver, Syntax(node.name))) }
        for parameter in node.signature.parameterClause.parameters {
            used.append((parameter.type.trimmedDescription, Syntax(parameter.type)))
        }
        if let output = node.signature.returnClause?.type {
            used.append((output.trimmedDescription, Syntax(output)))
        }
        return used
    }

    /// Hash of the function's text, of the declarations of the types it names, and of its state.
    func hash(types: [String: String], placed: [String]) -> String {
        var text = node.trimmedDescription
        for (type, _) in typesUsed() {
            for name in TypeTable.names(in: type) { text += "\n" + (types[name] ?? "") }
        }
        text += "\n" + placed.joined(separator: "\n")
        return FNV.hex(text)
    }
}

/// A global variable marked @Placed("service").
struct PlacedCandidate {
    let node: VariableDeclSyntax
    let service: String
    let ir: PlacedIR
}

/// The @main type and its main function's body.
struct MainCandidate {
    let node: Syntax
    let name: String
    let body: CodeBlockSyntax?
    let attributeEdits: [SourceEdit]
}

/// Which types are Codable: declared in the file with a conformance, or standard ones.
struct TypeTable {
    var declared: [String: Bool]

    static let standard: Set<String> = [
        "String", "Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64",
        "Double", "Float", "Bool", "Date", "Data", "UUID", "URL", "Decimal", "RawJSON", "Character",
    ]

    /// The base name of a type: `[Reading]?` -> `Reading` (for messages).
    static func base(_ type: String) -> String { names(in: type).first ?? type }

    /// Every type name in a type expression: `[String: [Reading]]?` -> [String, Reading].
    static func names(in type: String) -> [String] {
        type.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }).map(String.init)
    }

    func isCodable(_ type: String) -> Bool {
        if type.contains("->") || type.contains("inout") || type.hasPrefix("some ") || type.hasPrefix("any ") { return false }
        for name in Self.names(in: type) {
            if let codable = declared[name] {
                if !codable { return false }
            } else if !Self.standard.contains(name) && !name.contains(".") && name != "Optional" && name != "Array" && name != "Dictionary" && name != "Set" {
                // Not declared here and not standard: imported; the Swift compiler checks it.
                continue
            }
        }
        return true
    }
}

/// Walks the file's top level and extensions, collecting services, types, placed state and main.
final class DeclarationCollector: SyntaxVisitor {
    let analyzer: Analyzer
    var services: [ServiceCandidate] = []
    var placed: [PlacedCandidate] = []
    var types: [TypeIR] = []
    /// Declaration text of each type (for code hashes), extensions included.
    var typeSources: [String: String] = [:]
    var placedSource: [String: String] = [:]
    /// Types made Codable by an extension (`extension T: Codable {}`).
    var codableByExtension: Set<String> = []
    var mainType: MainCandidate?
    var errors: [Diagnostic] = []
    var edits: [SourceEdit] = []
    private var receivers: [String] = []

    init(analyzer: Analyzer) {
        self.analyzer = analyzer
        super.init(viewMode: .sourceAccurate)
    }

    func typeTable() -> TypeTable {
        var declared: [String: Bool] = [:]
        for type in types { declared[type.name] = type.isCodable || codableByExtension.contains(type.name) }
        return TypeTable(declared: declared)
    }

    // MARK: Types

    private func recordType(_ name: String, kind: String, inheritance: InheritanceClauseSyntax?, attributes: AttributeListSyntax,
                            members: MemberBlockSyntax, node: some DeclSyntaxProtocol) {
        let conformances = inheritance?.inheritedTypes.map { $0.type.trimmedDescription } ?? []
        let codable = conformances.contains("Codable") || (conformances.contains("Encodable") && conformances.contains("Decodable"))
        types.append(TypeIR(name: name, kind: kind, conformances: conformances, isCodable: codable, line: analyzer.location(node).line))
        typeSources[name, default: ""] += node.trimmedDescription
        if attributes.contains(where: { $0.as(AttributeSyntax.self)?.attributeName.trimmedDescription == "main" }) {
            var edits: [SourceEdit] = []
            for attribute in attributes {
                if let a = attribute.as(AttributeSyntax.self), a.attributeName.trimmedDescription == "main" {
                    // A library has no entry point: blank the attribute, keeping line and column numbers.
                    edits.append(SourceEdit(range: a.positionAfterSkippingLeadingTrivia.utf8Offset..<a.endPositionBeforeTrailingTrivia.utf8Offset,
                                            replacement: String(repeating: " ", count: a.trimmedLength.utf8Length)))
                }
            }
            let main = members.members.compactMap { $0.decl.as(FunctionDeclSyntax.self) }.first {
                $0.name.text == "main" && $0.modifiers.contains { $0.name.text == "static" }
            }
            mainType = MainCandidate(node: Syntax(node), name: name, body: main?.body, attributeEdits: edits)
        }
    }

    override func visit(_ node: StructDeclSyntax) -> SyntaxVisitorContinueKind {
        recordType(node.name.text, kind: "struct", inheritance: node.inheritanceClause, attributes: node.attributes,
                   members: node.memberBlock, node: node)
        receivers.append(node.name.text)
        return .visitChildren
    }
    override func visitPost(_ node: StructDeclSyntax) { receivers.removeLast() }

    override func visit(_ node: ClassDeclSyntax) -> SyntaxVisitorContinueKind {
        recordType(node.name.text, kind: "class", inheritance: node.inheritanceClause, attributes: node.attributes,
                   members: node.memberBlock, node: node)
        receivers.append(node.name.text)
        return .visitChildren
    }
    override func visitPost(_ node: ClassDeclSyntax) { receivers.removeLast() }

    override func visit(_ node: EnumDeclSyntax) -> SyntaxVisitorContinueKind {
        recordType(node.name.text, kind: "enum", inheritance: node.inheritanceClause, attributes: node.attributes,
                   members: node.memberBlock, node: node)
        receivers.append(node.name.text)
        return .visitChildren
    }
    override func visitPost(_ node: EnumDeclSyntax) { receivers.removeLast() }

    override func visit(_ node: ActorDeclSyntax) -> SyntaxVisitorContinueKind {
        recordType(node.name.text, kind: "actor", inheritance: node.inheritanceClause, attributes: node.attributes,
                   members: node.memberBlock, node: node)
        receivers.append(node.name.text)
        return .visitChildren
    }
    override func visitPost(_ node: ActorDeclSyntax) { receivers.removeLast() }

    override func visit(_ node: ExtensionDeclSyntax) -> SyntaxVisitorContinueKind {
        let name = node.extendedType.trimmedDescription
        let conformances = node.inheritanceClause?.inheritedTypes.map { $0.type.trimmedDescription } ?? []
        if conformances.contains("Codable") || (conformances.contains("Encodable") && conformances.contains("Decodable")) {
            codableByExtension.insert(name)
        }
        // What an extension adds to the type, except its services (each hashed on its own):
        // editing one service must not change the hash of every service using the type.
        var added = "extension \(name)" + (node.inheritanceClause?.trimmedDescription ?? "")
        for member in node.memberBlock.members {
            if let function = member.decl.as(FunctionDeclSyntax.self),
               function.attributes.contains(where: { $0.as(AttributeSyntax.self)?.attributeName.trimmedDescription == "Service" }) {
                continue
            }
            added += "\n" + member.decl.trimmedDescription
        }
        typeSources[name, default: ""] += "\n" + added
        receivers.append(name)
        return .visitChildren
    }
    override func visitPost(_ node: ExtensionDeclSyntax) { receivers.removeLast() }

    // Function bodies hold no declarations that matter here.
    override func visit(_ node: CodeBlockSyntax) -> SyntaxVisitorContinueKind { .skipChildren }
    override func visit(_ node: ClosureExprSyntax) -> SyntaxVisitorContinueKind { .skipChildren }

    // MARK: Services

    override func visit(_ node: FunctionDeclSyntax) -> SyntaxVisitorContinueKind {
        guard let attribute = node.attributes.lazy.compactMap({ $0.as(AttributeSyntax.self) })
            .first(where: { $0.attributeName.trimmedDescription == "Service" }) else { return .skipChildren }
        // The generated library calls the function directly: the attribute goes, lines stay.
        edits.append(SourceEdit(range: attribute.positionAfterSkippingLeadingTrivia.utf8Offset..<attribute.endPositionBeforeTrailingTrivia.utf8Offset,
                                replacement: String(repeating: " ", count: attribute.trimmedLength.utf8Length)))
        let name = node.name.text
        let receiver = receivers.last
        var ok = true
        if node.genericParameterClause != nil || node.genericWhereClause != nil {
            errors.append(analyzer.diagnostic(node.name, "service '\(name)' is generic",
                                              hint: "a service needs concrete Codable types: write one service per type"))
            ok = false
        }
        if node.modifiers.contains(where: { ["static", "class", "mutating"].contains($0.name.text) }) {
            errors.append(analyzer.diagnostic(node.name, "service '\(name)' is static or mutating",
                                              hint: "make it a global function, or a plain method in an extension whose receiver is the input"))
            ok = false
        }
        var parameters: [ParameterIR] = []
        for parameter in node.signature.parameterClause.parameters {
            let type = parameter.type
            if type.as(AttributedTypeSyntax.self)?.specifiers.contains(where: { $0.trimmedDescription == "inout" }) == true
                || type.trimmedDescription.hasPrefix("inout ") {
                errors.append(analyzer.diagnostic(parameter, "service '\(name)' has an inout parameter '\(parameter.firstName.text)'",
                                                  hint: "services exchange values over the network: pass a value and return the result"))
                ok = false
            }
            if parameter.ellipsis != nil {
                errors.append(analyzer.diagnostic(parameter, "service '\(name)' has a variadic parameter",
                                                  hint: "take an array instead: [\(type.trimmedDescription)]"))
                ok = false
            }
            let label = parameter.firstName.text
            let inner = parameter.secondName?.text ?? label
            parameters.append(ParameterIR(label: label, name: inner, type: type.trimmedDescription, defaultArgument: nil))
        }
        guard let returnType = node.signature.returnClause?.type else {
            errors.append(analyzer.diagnostic(node.name, "service '\(name)' returns nothing",
                                              hint: "return a Codable value (or an Optional of one: nil drops the item)"))
            return .skipChildren
        }
        var output = returnType.trimmedDescription
        var optional = false
        if let opt = returnType.as(OptionalTypeSyntax.self) {
            output = opt.wrappedType.trimmedDescription
            optional = true
        } else if output.hasPrefix("Optional<") && output.hasSuffix(">") {
            output = String(output.dropFirst(9).dropLast())
            optional = true
        }
        let effects = node.signature.effectSpecifiers
        let (line, column) = analyzer.location(node.name)
        var placement = PlacementIR()
        var isolated = false
        for argument in attribute.arguments?.as(LabeledExprListSyntax.self) ?? [] {
            guard let label = argument.label?.text, ["node", "label", "near", "isolated"].contains(label) else {
                errors.append(analyzer.diagnostic(argument, "@Service takes node:, label:, near: and isolated:",
                                                  hint: "write @Service(node: \"edge-1\"), @Service(label: \"zone=factory\"), @Service(near: \"movingAvg\") or @Service(isolated: true)"))
                ok = false
                continue
            }
            if label == "isolated" {
                guard let literal = argument.expression.as(BooleanLiteralExprSyntax.self) else {
                    errors.append(analyzer.diagnostic(argument, "@Service(isolated:) needs true or false", hint: "write @Service(isolated: true)"))
                    ok = false
                    continue
                }
                isolated = literal.literal.tokenKind == .keyword(.true)
                continue
            }
            if argument.expression.is(NilLiteralExprSyntax.self) { continue }
            guard let value = argument.expression.as(StringLiteralExprSyntax.self)?.representedLiteralValue, !value.isEmpty else {
                errors.append(analyzer.diagnostic(argument, "@Service(\(label):) needs a non-empty string literal"))
                ok = false
                continue
            }
            switch label {
            case "node": placement.node = value
            case "label":
                guard value.contains("=") else {
                    errors.append(analyzer.diagnostic(argument, "label '\(value)' is not key=value", hint: "write @Service(label: \"zone=factory\")"))
                    ok = false
                    continue
                }
                placement.label = value
            default: placement.near = value
            }
        }
        if ok {
            services.append(ServiceCandidate(node: node, receiver: receiver, ir: ServiceIR(
                name: name, receiver: receiver, parameters: parameters, output: output, outputOptional: optional,
                isAsync: effects?.asyncSpecifier != nil, isThrowing: effects?.throwsClause != nil,
                placedState: [], defaultRoute: "", placement: placement == PlacementIR() ? nil : placement,
                codeHash: "", line: line, column: column, isolated: isolated ? true : nil)))
        }
        return .skipChildren
    }

    // MARK: Placed state

    override func visit(_ node: VariableDeclSyntax) -> SyntaxVisitorContinueKind {
        guard let attribute = node.attributes.lazy.compactMap({ $0.as(AttributeSyntax.self) })
            .first(where: { $0.attributeName.trimmedDescription == "Placed" }) else { return .skipChildren }
        guard receivers.isEmpty else {
            errors.append(analyzer.diagnostic(node, "@Placed applies to global variables",
                                              hint: "move the variable to the top level of the file"))
            return .skipChildren
        }
        guard let argument = attribute.arguments?.as(LabeledExprListSyntax.self)?.first?.expression.as(StringLiteralExprSyntax.self),
              let service = argument.representedLiteralValue else {
            errors.append(analyzer.diagnostic(attribute, "@Placed needs the service name as a string literal",
                                              hint: "write @Placed(\"movingAvg\")"))
            return .skipChildren
        }
        guard node.bindingSpecifier.text == "var", node.bindings.count == 1, let binding = node.bindings.first,
              let pattern = binding.pattern.as(IdentifierPatternSyntax.self), let initializer = binding.initializer?.value else {
            errors.append(analyzer.diagnostic(node, "@Placed applies to one `var` with an initial value",
                                              hint: "write @Placed(\"\(service)\") var name = initialValue"))
            return .skipChildren
        }
        let name = pattern.identifier.text
        let type = binding.typeAnnotation?.type.trimmedDescription ?? Self.literalType(initializer)
        guard let type else {
            errors.append(analyzer.diagnostic(node, "cannot tell the type of @Placed variable '\(name)'",
                                              hint: "add a type annotation: @Placed(\"\(service)\") var \(name): TYPE = \(initializer.trimmedDescription)"))
            return .skipChildren
        }
        // In the library the variable becomes an accessor over locked storage, on the same lines.
        let declaration = "let _dyninkaPlaced_\(name) = PlacedState<\(type)>(\(initializer.trimmedDescription)); "
            + "var \(name): \(type) { get { _dyninkaPlaced_\(name).value } set { _dyninkaPlaced_\(name).value = newValue } }"
        let original = node.trimmedDescription
        let newlines = original.filter { $0 == "\n" }.count
        edits.append(SourceEdit(range: node.positionAfterSkippingLeadingTrivia.utf8Offset..<node.endPositionBeforeTrailingTrivia.utf8Offset,
                                replacement: declaration + String(repeating: "\n", count: newlines)))
        placedSource[name] = original
        placed.append(PlacedCandidate(node: node, service: service, ir: PlacedIR(
            name: name, service: service, type: type, initializer: initializer.trimmedDescription, line: analyzer.location(node).line)))
        return .skipChildren
    }

    /// The type of a literal initializer, as Swift would infer it.
    static func literalType(_ expression: ExprSyntax) -> String? {
        var expression = expression
        if let prefix = expression.as(PrefixOperatorExprSyntax.self), prefix.operator.text == "-" { expression = prefix.expression }
        if expression.is(IntegerLiteralExprSyntax.self) { return "Int" }
        if expression.is(FloatLiteralExprSyntax.self) { return "Double" }
        if expression.is(StringLiteralExprSyntax.self) { return "String" }
        if expression.is(BooleanLiteralExprSyntax.self) { return "Bool" }
        if let array = expression.as(ArrayExprSyntax.self), let first = array.elements.first,
           let element = literalType(first.expression) { return "[\(element)]" }
        return nil
    }
}

/// 64-bit FNV-1a, for change detection (not security).
package enum FNV {
    /// The hash of `text`'s UTF-8 bytes as 16 lowercase hex digits.
    package static func hex(_ text: String) -> String {
        var hash: UInt64 = 0xcbf29ce484222325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100000001b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

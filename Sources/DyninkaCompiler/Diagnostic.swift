/// A problem found in the app file, printed as `file:line:col: error: message` with a hint.
public struct Diagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var file: String
    public var line: Int
    public var column: Int
    public var severity: Severity
    public var message: String
    /// What to do about it.
    public var hint: String?

    public init(file: String, line: Int, column: Int, severity: Severity = .error, message: String, hint: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
        self.hint = hint
    }

    public var description: String {
        var text = "\(file):\(line):\(column): \(severity.rawValue): \(message)"
        if let hint { text += "\n\(file):\(line):\(column): note: \(hint)" }
        return text
    }
}

/// The errors that stopped a compilation; nothing was generated.
public struct CompileFailure: Error, CustomStringConvertible, Sendable {
    public var diagnostics: [Diagnostic]
    public var description: String {
        let errors = diagnostics.filter { $0.severity == .error }.count
        return diagnostics.map(\.description).joined(separator: "\n") + "\n\(errors) error\(errors == 1 ? "" : "s"); nothing was generated"
    }
}

/// A problem found in the app file, printed as `file:line:col: error: message` with a hint.
package struct Diagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    package enum Severity: String, Sendable { case error, warning }

    package var file: String
    package var line: Int
    package var column: Int
    package var severity: Severity
    package var message: String
    /// What to do about it.
    package var hint: String?

    package init(file: String, line: Int, column: Int, severity: Severity = .error, message: String, hint: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
        self.hint = hint
    }

    package var description: String {
        var text = "\(file):\(line):\(column): \(severity.rawValue): \(message)"
        if let hint { text += "\n\(file):\(line):\(column): note: \(hint)" }
        return text
    }
}

/// The errors that stopped a compilation; nothing was generated.
package struct CompileFailure: Error, CustomStringConvertible, Sendable {
    package var diagnostics: [Diagnostic]
    package var description: String {
        let errors = diagnostics.filter { $0.severity == .error }.count
        return diagnostics.map(\.description).joined(separator: "\n") + "\n\(errors) error\(errors == 1 ? "" : "s"); nothing was generated"
    }
}

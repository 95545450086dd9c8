/// One setting of `dyninka-host`: its flag, its DYNINKA_* variable, what values it takes and
/// what it does. `HostSetting.all` is the table: `dyninka-host --help` (through `HostOptions`),
/// the environment a host reads, the command lines and manifests launchers write, the docs'
/// settings table and `configs/host.env` all come from it or are checked against it.
package struct HostSetting: Sendable {
    /// What a setting takes.
    package enum Kind: Sendable {
        /// Free text (a path, an address, a URL).
        case text
        /// A whole number in a range; `unit` is what the docs say of it ("ms", "bytes").
        case integer(ClosedRange<Int>, unit: String?)
        /// On or off: a bare flag; as a variable 1/0, true/false, yes/no, on/off.
        case flag
        /// Several values: a repeatable flag; as a variable one string split at `separator`.
        case list(separator: Character)
        /// One of a few words.
        case choice([String])
    }

    /// Where the value lives in `HostSettings`.
    package enum Field: Sendable {
        case text(WritableKeyPath<HostSettings, String> & Sendable)
        case optionalText(WritableKeyPath<HostSettings, String?> & Sendable)
        case integer(WritableKeyPath<HostSettings, Int> & Sendable)
        case flag(WritableKeyPath<HostSettings, Bool> & Sendable)
        /// A flag that may also be left unsaid (nil: the host decides).
        case optionalFlag(WritableKeyPath<HostSettings, Bool?> & Sendable)
        case list(WritableKeyPath<HostSettings, [String]> & Sendable)
    }

    /// The flag's name without dashes (`max-in-flight`); nil for a setting only the environment
    /// gives (a secret, which must not show in a process list).
    package let flag: String?
    /// The environment variable of the same meaning; nil for settings only launchers pass.
    package let variable: String?
    package let kind: Kind
    package let field: Field
    /// One sentence for `--help` and the docs, without the default.
    package let help: String
    /// What the docs' table says for the default, when it is not the value itself.
    package let defaultNote: String?

    init(_ flag: String?, _ variable: String?, _ kind: Kind, _ field: Field, _ help: String, defaultNote: String? = nil) {
        self.flag = flag
        self.variable = variable
        self.kind = kind
        self.field = field
        self.help = help
        self.defaultNote = defaultNote
    }

    /// The name people know it by: `--flag`, or the variable for an environment-only setting.
    package var displayName: String { flag.map { "--\($0)" } ?? variable ?? "?" }

    /// The value in `settings` as text (as a variable or a flag's argument takes it); nil when
    /// an optional setting is unset. A list is joined with its separator, a flag is "1" or "0".
    package func text(in settings: HostSettings) -> String? {
        switch field {
        case .text(let path): return settings[keyPath: path]
        case .optionalText(let path): return settings[keyPath: path]
        case .integer(let path): return String(settings[keyPath: path])
        case .flag(let path): return settings[keyPath: path] ? "1" : "0"
        case .optionalFlag(let path): return settings[keyPath: path].map { $0 ? "1" : "0" }
        case .list(let path):
            let values = settings[keyPath: path]
            guard case .list(let separator) = kind, !values.isEmpty else { return nil }
            return values.joined(separator: String(separator))
        }
    }

    /// The default, as the docs show it.
    package var defaultText: String {
        if let defaultNote { return defaultNote }
        if case .flag = kind { return "off" }
        return text(in: HostSettings()) ?? ""
    }

    /// Whether `settings` holds another value than the default.
    package func differsFromDefault(in settings: HostSettings) -> Bool {
        text(in: settings) != text(in: HostSettings())
    }

    /// The flag and its argument(s) for the value in `settings`: nothing for an unset optional,
    /// a flag that is off, or an environment-only setting; a list repeats the flag per value.
    package func flagArguments(in settings: HostSettings) -> [String] {
        guard let flag else { return [] }
        switch field {
        case .flag(let path): return settings[keyPath: path] ? ["--\(flag)"] : []
        case .optionalFlag(let path): return settings[keyPath: path] == true ? ["--\(flag)"] : []
        case .list(let path): return settings[keyPath: path].flatMap { ["--\(flag)", $0] }
        default: return text(in: settings).map { ["--\(flag)", $0] } ?? []
        }
    }

    /// Sets the value from text (a variable's value), checked against what the setting takes.
    package func assign(_ text: String, to settings: inout HostSettings) throws(SettingError) {
        switch (kind, field) {
        case (.integer(let range, _), .integer(let path)):
            guard let number = Int(text), range.contains(number) else { throw rangeError(range, text) }
            settings[keyPath: path] = number
        case (.flag, .flag(let path)):
            settings[keyPath: path] = try Self.truth(text, of: self)
        case (.flag, .optionalFlag(let path)):
            settings[keyPath: path] = try Self.truth(text, of: self)
        case (.list(let separator), .list(let path)):
            settings[keyPath: path] = text.split(separator: separator).map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
        case (.choice(let words), .text(let path)):
            guard words.contains(text.lowercased()) else {
                throw SettingError("\(displayName) must be one of \(words.joined(separator: ", ")); got '\(text)'")
            }
            settings[keyPath: path] = text.lowercased()
        case (.text, .text(let path)): settings[keyPath: path] = text
        case (.text, .optionalText(let path)): settings[keyPath: path] = text
        default: preconditionFailure("the table pairs \(displayName)'s kind with a field of another type")
        }
    }

    /// Sets a number given as a flag, checked against the setting's range.
    package func assign(_ number: Int, to settings: inout HostSettings) throws(SettingError) {
        guard case .integer(let range, _) = kind, case .integer(let path) = field else {
            preconditionFailure("\(displayName) is not a number")
        }
        guard range.contains(number) else { throw rangeError(range, String(number)) }
        settings[keyPath: path] = number
    }

    /// Sets a flag given on the command line (present: on).
    package func assign(_ on: Bool, to settings: inout HostSettings) {
        switch field {
        case .flag(let path): settings[keyPath: path] = on
        case .optionalFlag(let path): settings[keyPath: path] = on
        default: preconditionFailure("\(displayName) is not a flag")
        }
    }

    /// Sets a list given as repeated flags, each of which may hold several values.
    package func assign(_ values: [String], to settings: inout HostSettings) throws(SettingError) {
        guard case .list(let separator) = kind else { preconditionFailure("\(displayName) is not a list") }
        try assign(values.joined(separator: String(separator)), to: &settings)
    }

    private func rangeError(_ range: ClosedRange<Int>, _ text: String) -> SettingError {
        SettingError("\(displayName) must be a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
    }

    private static func truth(_ text: String, of setting: HostSetting) throws(SettingError) -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw SettingError("\(setting.displayName) takes 1 or 0 (true/false, yes/no, on/off), got '\(text)'")
        }
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

extension HostSetting {
    /// Copies this setting's value from one set of settings to another.
    package func copy(from source: HostSettings, to target: inout HostSettings) {
        switch field {
        case .text(let path): target[keyPath: path] = source[keyPath: path]
        case .optionalText(let path): target[keyPath: path] = source[keyPath: path]
        case .integer(let path): target[keyPath: path] = source[keyPath: path]
        case .flag(let path): target[keyPath: path] = source[keyPath: path]
        case .optionalFlag(let path): target[keyPath: path] = source[keyPath: path]
        case .list(let path): target[keyPath: path] = source[keyPath: path]
        }
    }

    /// The line `--help` shows: the sentence, the default and the variable.
    package var helpLine: String {
        var notes: [String] = []
        let shown = defaultText
        if !shown.isEmpty, shown != "off", shown != "(required)" { notes.append("default \(shown)") }
        if let variable { notes.append("env \(variable)") }
        return notes.isEmpty ? help : "\(help) (\(notes.joined(separator: "; ")))"
    }
}

extension HostSetting {
    /// The docs' settings table (Markdown): flag, variable, default and meaning of every setting,
    /// in the table's order. `HostSettings.md` holds it between its `settings-table` markers, and
    /// a test keeps the two the same.
    package static func markdownTable() -> String {
        var lines = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
        for setting in all {
            let flag = setting.flag.map { "`--\($0)`" } ?? ""
            let variable = setting.variable.map { "`\($0)`" } ?? ""
            var shown = setting.defaultText
            if case .integer(_, let unit?) = setting.kind, Int(shown) != nil { shown += " \(unit)" }
            let help = setting.help.split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
            lines.append("| \(flag) | \(variable) | \(shown) | \(help) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

import ArgumentParser
import DyninkaSettings
import Foundation
import Testing
@testable import DyninkaHost

/// The one table of host settings covers every setting, parses back what launchers render, and
/// is what the docs and `configs/host.env` say.
@Suite struct HostSettingsTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A value other than the default that the setting takes, as text.
    static func sample(_ setting: HostSetting) -> String {
        switch setting.kind {
        case .integer(let range, _): return String(range.lowerBound + 1 == HostSettings().port ? range.lowerBound : range.lowerBound + 1)
        case .flag: return "1"
        case .list: return setting.flag == "peers" ? "a=127.0.0.1:1" : "a()"
        case .choice(let words): return words.first { $0 != setting.text(in: HostSettings()) }!
        case .text: return setting.flag == "host" ? "10.0.0.1" : "/x/\(setting.flag ?? "key")"
        }
    }

    @Test func everyFieldHasOneRowAndEveryRowItsOwnField() throws {
        #expect(Mirror(reflecting: HostSettings()).children.count == HostSetting.all.count, "a HostSettings property has no row in HostSetting.all, or a row is missing")
        #expect(Set(HostSetting.all.compactMap(\.flag)).count == HostSetting.all.compactMap(\.flag).count, "two rows share a flag")
        #expect(Set(HostSetting.all.compactMap(\.variable)).count == HostSetting.all.compactMap(\.variable).count, "two rows share a variable")
        for setting in HostSetting.all {
            var settings = HostSettings()
            try setting.assign(Self.sample(setting), to: &settings)
            let changed = HostSetting.all.filter { $0.differsFromDefault(in: settings) }.map(\.displayName)
            #expect(changed == [setting.displayName], "setting \(setting.displayName) changed \(changed)")
        }
    }

    @Test func everyFlagIsAnOptionOfTheHostAndFlagsWinOverVariables() throws {
        for setting in HostSetting.all where setting.flag != nil {
            var expected = HostSettings()
            try setting.assign(Self.sample(setting), to: &expected)
            let arguments = expected.arguments()
            #expect(!arguments.isEmpty, "\(setting.displayName) renders no flag")
            let parsed = try HostOptions.parse(arguments).settings(environment: [:])
            #expect(parsed == expected, "\(arguments) parsed to other settings")
            // The variable under the flag is not read, even when it would be refused.
            if let variable = setting.variable {
                let over = try HostOptions.parse(arguments).settings(environment: [variable: "\u{1}bad"])
                #expect(over == expected, "\(variable) was read although \(setting.displayName) was given")
            }
        }
    }

    @Test func whatLaunchersRenderReadsBackTheSame() throws {
        var settings = HostSettings()
        for setting in HostSetting.all { try setting.assign(Self.sample(setting), to: &settings) }
        settings.peers = ["a=127.0.0.1:1", "b=127.0.0.1:2"]
        settings.allowedRoutes = ["a()", "a().b()"]
        var fromArguments = try HostOptions.parse(settings.arguments()).settings(environment: [:])
        fromArguments.appKey = settings.appKey   // the key has no flag: it only comes as a variable
        #expect(fromArguments == settings)
        let environment = Dictionary(uniqueKeysWithValues: settings.environment(HostSetting.all).map { ($0.name, $0.value) })
        var fromEnvironment = try HostSettings.fromEnvironment(environment)
        for setting in HostSetting.all where setting.variable == nil { setting.copy(from: settings, to: &fromEnvironment) }
        #expect(fromEnvironment == settings)
    }

    @Test func badValuesNameTheFlagWhicheverWayTheyCame() throws {
        #expect(throws: SettingError.self) { try HostOptions.parse(["--max-in-flight", "0"]).settings(environment: [:]) }
        do {
            _ = try HostSettings.fromEnvironment(["DYNINKA_ACCESS_LOG": "maybe"])
            Issue.record("a flag variable took 'maybe'")
        } catch {
            #expect(error.description == "--access-log takes 1 or 0 (true/false, yes/no, on/off), got 'maybe'")
        }
    }

    /// The docs' settings table is the one rendered from the code's table.
    @Test func theDocsTableIsGeneratedFromTheTable() throws {
        let path = Self.root.appendingPathComponent("Sources/Dyninka/Dyninka.docc/HostSettings.md").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let marker = try #require(text.range(of: "<!-- settings-table"))
        let begin = try #require(text.range(of: "-->\n", range: marker.upperBound..<text.endIndex))
        let end = try #require(text.range(of: "<!-- end settings-table -->"))
        let current = String(text[begin.upperBound..<end.lowerBound])
        let generated = HostSetting.markdownTable()
        if ProcessInfo.processInfo.environment["DYNINKA_UPDATE_GOLDEN"] == "1" {
            try text.replacingCharacters(in: begin.upperBound..<end.lowerBound, with: generated).write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(current == generated, "HostSettings.md's table differs from HostSetting.all; run DYNINKA_UPDATE_GOLDEN=1 swift test --filter HostSettingsTableTests")
    }

    /// configs/host.env names every variable, only variables the host reads, and sets each to
    /// its default unless the setting has none or the comment above calls the value an example.
    @Test func theEnvironmentFileMatchesTheTable() throws {
        let path = Self.root.appendingPathComponent("configs/host.env").path
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let variables = HostSetting.all.compactMap(\.variable)
        for variable in variables { #expect(lines.contains { $0.contains("\(variable)=") }, "configs/host.env does not mention \(variable)") }
        var comment = ""
        for line in lines {
            if line.isEmpty { comment = ""; continue }
            let body = line.hasPrefix("# ") ? String(line.dropFirst(2)) : line
            guard body.hasPrefix("DYNINKA_"), let eq = body.firstIndex(of: "=") else { comment += line; continue }
            let name = String(body[..<eq]), value = String(body[body.index(after: eq)...])
            let setting = try #require(HostSetting.all.first { $0.variable == name }, "configs/host.env sets \(name), which the host does not read")
            guard !line.hasPrefix("#"), setting.defaultNote == nil, !setting.defaultText.isEmpty, !comment.contains("example") else { continue }
            var parsed = HostSettings()
            try setting.assign(value, to: &parsed)
            #expect(!setting.differsFromDefault(in: parsed), "configs/host.env sets \(name)=\(value), not its default \(setting.defaultText)")
        }
    }
}

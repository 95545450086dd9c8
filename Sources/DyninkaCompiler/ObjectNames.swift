import Foundation

/// Two services whose names become the same object name.
package struct NamingFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
}

/// Names of an app's objects: DNS-safe, unique, at most 63 characters.
package struct ObjectNames: Sendable {
    package let app: String
    private let names: [String: String]

    package init(_ ir: AppIR) throws(NamingFailure) {
        app = ObjectNames.dns(ir.name)
        var names: [String: String] = [:]
        var owners: [String: String] = [:]
        for service in ir.services {
            let name = String("\(app)-\(ObjectNames.dns(service.name))".prefix(63)).trimmingCharacters(in: ["-"])
            if let other = owners[name] {
                throw NamingFailure(description: "services '\(other)' and '\(service.name)' both become the DNS name '\(name)'; rename one of them")
            }
            owners[name] = service.name
            names[service.name] = name
        }
        self.names = names
    }

    /// The object name of a service (Deployment, Service, Marathon app).
    package subscript(service: String) -> String { names[service]! }

    /// A DNS label for a Swift name: movingAvg -> moving-avg, SmartBuilding -> smart-building.
    package static func dns(_ name: String) -> String {
        var out = ""
        var previousLower = false
        for c in name {
            if c.isUppercase {
                if previousLower { out += "-" }
                out += c.lowercased()
                previousLower = false
            } else if c.isLetter || c.isNumber {
                out += c.lowercased()
                previousLower = true
            } else {
                if !out.hasSuffix("-") { out += "-" }
                previousLower = false
            }
        }
        return String(out.trimmingCharacters(in: ["-"]).prefix(40))
    }
}

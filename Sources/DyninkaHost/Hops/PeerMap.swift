import Foundation

/// Where a service listens: a host name or IP address and a port.
package struct PeerAddress: Equatable, Sendable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "HOST:PORT" or "[IPv6]:PORT".
    package init?(parsing text: String) {
        let text = text.trimmingCharacters(in: .whitespaces)
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            guard after.hasPrefix(":") else { return nil }
            portPart = after.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (1...65535).contains(port) else { return nil }
        self.init(host: String(hostPart), port: port)
    }

    package var description: String { host.utf8.contains(58) ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The placement of services: name -> address. Filled from --peers, a placement file, or a
/// DNS template (for Kubernetes, where each service has a stable DNS name).
package struct PeerMap: Sendable, Equatable {
    package var addresses: [String: PeerAddress] = [:]
    /// When set, a service not listed resolves to this with "{name}" replaced by its DNS-safe
    /// name, for example "{name}.default.svc.cluster.local:8080".
    package var template: String?

    package init(addresses: [String: PeerAddress] = [:], template: String? = nil) {
        self.addresses = addresses
        self.template = template
    }

    package func address(of service: String) -> PeerAddress? {
        if let address = addresses[service] { return address }
        guard let template else { return nil }
        return PeerAddress(parsing: template.replacingOccurrences(of: "{name}", with: PeerMap.dnsName(service)))
    }

    /// Adds "name=host:port" entries separated by commas or whitespace.
    package mutating func add(list: String) throws(PeerError) {
        for item in list.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }) where !item.isEmpty {
            guard let eq = item.firstIndex(of: "=") else {
                throw PeerError(description: "peer '\(item)' is not NAME=HOST:PORT (for example map=127.0.0.1:8083)")
            }
            let name = String(item[..<eq])
            guard let address = PeerAddress(parsing: String(item[item.index(after: eq)...])) else {
                throw PeerError(description: "peer '\(item)': '\(item[item.index(after: eq)...])' is not HOST:PORT")
            }
            addresses[name] = address
        }
    }

    /// Reads a placement file: JSON `{"services": {"map": "127.0.0.1:8083", ...}}`, optionally
    /// with `"template": "{name}.ns.svc:8080"`.
    package mutating func add(placementFile path: String) throws(PeerError) {
        struct File: Decodable { var services: [String: String]?; var template: String? }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw PeerError(description: "cannot read placement file '\(path)': \(error.localizedDescription); expected JSON like {\"services\": {\"map\": \"127.0.0.1:8083\"}}")
        }
        for (name, text) in file.services ?? [:] {
            guard let address = PeerAddress(parsing: text) else {
                throw PeerError(description: "placement file '\(path)': '\(text)' for '\(name)' is not HOST:PORT")
            }
            addresses[name] = address
        }
        if let template = file.template { self.template = template }
    }

    /// A DNS label (RFC 1123) for a Swift name: movingAvg -> moving-avg.
    package static func dnsName(_ name: String) -> String {
        var out = ""
        var previousLower = false
        for scalar in name.unicodeScalars {
            let c = Character(scalar)
            if c.isUppercase {
                if previousLower { out += "-" }
                out += c.lowercased()
                previousLower = false
            } else if c.isLetter || c.isNumber {
                out.append(c)
                previousLower = true
            } else {
                if !out.hasSuffix("-") { out += "-" }
                previousLower = false
            }
        }
        let trimmed = out.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return String(trimmed.prefix(63))
    }
}

/// A peer list or placement file that cannot be used.
package struct PeerError: Error, CustomStringConvertible {
    package var description: String
}

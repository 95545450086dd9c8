import ArgumentParser
import CDyninkaCrypto
import DyninkaDeploy
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka invoke URL`: one request to a running service.
    struct Invoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send one request to a running service and print the answer.",
            discussion: """
                Example (a custom route from filterTemperature on, signed with the app key that \
                `dyninka run` printed: without it, services take only main's chain from clients):
                  dyninka invoke http://127.0.0.1:8082 \\
                      --data '{"variable":"Temperature","value":21}' \\
                      --route 'map().movingAvg()' --key-file /tmp/dyninka-state-.../app.key
                """)

        @Argument(help: "The service's URL, http://127.0.0.1:PORT (loopback only).")
        var url: String
        @Option(help: "JSON input (the request body).")
        var data: String = ""
        @Option(help: "The rest of the dataflow (Dyninka-Route); omit for the default route, '' to stop after this service.")
        var route: String?
        @Option(help: "Explicit arguments of the service (Dyninka-Args), e.g. 'conditions: weather()'.")
        var arguments: String?
        @Option(help: "Sign the request with the app key in this file (as a hop of the app): any route and arguments, at any service.")
        var keyFile: String?
        @Option(help: "Dyninka-Deadline: milliseconds the whole request may take.")
        var deadline: Int?
        @Flag(help: "Print the status and headers too.")
        var verbose = false

        func validate() throws {
            guard port != nil else { throw ValidationError("URL must look like http://127.0.0.1:PORT") }
        }

        private var port: Int? {
            guard url.hasPrefix("http://127.0.0.1:") || url.hasPrefix("http://localhost:") else { return nil }
            return Int(url.split(separator: ":").last?.split(separator: "/").first ?? "")
        }

        func run() throws {
            var headers: [(String, String)] = []
            if let route { headers.append(("Dyninka-Route", route)) }
            if let arguments { headers.append(("Dyninka-Args", arguments)) }
            if let deadline { headers.append(("Dyninka-Deadline", String(deadline))) }
            if let keyFile { headers.append(("Dyninka-Auth", try signature(keyFile: keyFile))) }
            let reply = try BlockingHTTP.request(port: port!, method: "POST", headers: headers, body: data, timeout: 60)
            if verbose {
                print("\(reply.status)")
                for (name, value) in reply.headers.sorted(by: { $0.key < $1.key }) { print("\(name): \(value)") }
            }
            print(reply.text)
            if reply.status >= 400 { throw ExitCode(1) }
        }

        /// The Dyninka-Auth value for this request, made with the key in `keyFile` for the
        /// service at `url` (asked with GET /), valid for a minute (or the deadline).
        private func signature(keyFile: String) throws -> String {
            func fail(_ message: String) -> ExitCode {
                FileHandle.standardError.write(Data("error: \(message)\n".utf8))
                return ExitCode(1)
            }
            guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else { throw fail("cannot read the key file \(keyFile)") }
            let hex = Array(text.utf8.filter { $0 > 32 })
            let key = stride(from: 0, to: hex.count - 1, by: 2).compactMap { UInt8(String(decoding: hex[$0...$0 + 1], as: UTF8.self), radix: 16) }
            guard hex.count >= 32, key.count * 2 == hex.count,
                  let context = key.withUnsafeBufferPointer({ dyn_app_key_new($0.baseAddress, $0.count) }) else {
                throw fail("\(keyFile) does not hold an app key (32 or more hex digits)")
            }
            defer { dyn_app_key_free(context) }
            let described = try BlockingHTTP.request(port: port!, path: "/", timeout: 10)
            guard let service = (try? JSONSerialization.jsonObject(with: Data(described.body)) as? [String: Any])?["service"] as? String else {
                throw fail("\(url) did not say which service it runs (GET / answered \(described.status))")
            }
            let expiry = UInt64(Date().timeIntervalSince1970 * 1000) + UInt64(min(deadline ?? 60_000, 60_000))
            var value = [CChar](repeating: 0, count: Int(DYN_AUTH_VALUE_MAX))
            func part(_ text: String?, _ body: (dyn_part) -> Int) -> Int {
                guard let text else { return body(dyn_part(data: nil, length: 0)) }
                let bytes = Array(text.utf8) + [0]
                return bytes.withUnsafeBufferPointer { body(dyn_part(data: $0.baseAddress, length: $0.count - 1)) }
            }
            // What the host reads: the values as sent (CR and LF become spaces), without the
            // spaces and tabs before them.
            let trimmed = { (text: String?) in
                text.map { String(String($0.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 }).drop { $0 == " " || $0 == "\t" }) }
            }
            let length = part(service) { s in part(trimmed(route)) { r in part(trimmed(arguments)) { a in part(deadline.map(String.init)) { d in
                dyn_auth_value(context, s, r, a, d, expiry, &value) } } } }
            guard length > 0 else { throw fail("libcrypto could not sign the request") }
            return String(decoding: value[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

import ArgumentParser
import DyninkaDeploy
import Foundation

extension DyninkaCommand {
    /// `dyninka invoke URL`: one request to a running service.
    struct Invoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send one request to a running service and print the answer.",
            discussion: """
                Example (a custom route from filterTemperature on):
                  dyninka invoke http://127.0.0.1:8082 \\
                      --data '{"variable":"Temperature","value":21}' \\
                      --route 'map().movingAvg()'
                """)

        @Argument(help: "The service's URL, http://127.0.0.1:PORT (loopback only).")
        var url: String
        @Option(help: "JSON input (the request body).")
        var data: String = ""
        @Option(help: "The rest of the dataflow (Dyninka-Route); omit for the default route, '' to stop after this service.")
        var route: String?
        @Option(help: "Explicit arguments of the service (Dyninka-Args), e.g. 'conditions: weather()'.")
        var arguments: String?
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
            let reply = try BlockingHTTP.request(port: port!, method: "POST", headers: headers, body: data, timeout: 60)
            if verbose {
                print("\(reply.status)")
                for (name, value) in reply.headers.sorted(by: { $0.key < $1.key }) { print("\(name): \(value)") }
            }
            print(reply.text)
            if reply.status >= 400 { throw ExitCode(1) }
        }
    }
}

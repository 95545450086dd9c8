import ArgumentParser
import DyninkaDeploy
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka trace`: one request's spans as a tree.
    struct Trace: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one request as a tree: each hop's time, its function's, and the network between hops.",
            discussion: """
                Reads the spans from a running `dyninka run` (its live view, --from URL) or from \
                OTLP/JSON files written by hosts started with --otlp-file. Without a trace id it \
                shows the newest trace. A response's `traceresponse` header names the trace a \
                request began (00-TRACE_ID-SPAN_ID-01).

                Examples:
                  dyninka trace --from http://127.0.0.1:40123/
                  dyninka trace 4bf92f3577b34da6a3ce929d0e0e4736 --from http://127.0.0.1:40123/
                  dyninka trace --file spans.jsonl
                """)

        @Argument(help: "The trace id (32 hex digits); default: the newest trace.")
        var traceID: String?
        @Option(help: "The live view of a `dyninka run` (it prints `view URL`).")
        var from: String?
        @Option(help: "OTLP/JSON lines files written by hosts (--otlp-file); repeatable.")
        var file: [String] = []

        func validate() throws {
            guard (from == nil) != file.isEmpty else { throw ValidationError("give either --from URL (a running dyninka run's view) or --file PATH") }
            if let traceID, traceID.count != 32 || !traceID.allSatisfy(\.isHexDigit) {
                throw ValidationError("a trace id is 32 hex digits (the second field of traceparent or traceresponse), got '\(traceID)'")
            }
        }

        func run() throws {
            if let from {
                guard let url = URL(string: from), let host = url.host, let port = url.port else {
                    throw ValidationError("--from must look like http://127.0.0.1:PORT/, got '\(from)'")
                }
                let reply: HTTPReply
                do { reply = try BlockingHTTP.request(host: host, port: port, path: "/api/trace/\(traceID?.lowercased() ?? "latest")", timeout: 5) } catch {
                    note("error: cannot reach the live view at \(from): \(error); is `dyninka run` still running?")
                    throw ExitCode(1)
                }
                guard reply.status == 200 else {
                    note("error: \(reply.text.trimmingCharacters(in: .whitespacesAndNewlines))")
                    throw ExitCode(1)
                }
                print(reply.text, terminator: "")
                return
            }
            let store = SpanStore()
            for path in file {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    note("error: cannot read \(path)")
                    throw ExitCode(1)
                }
                for line in text.split(separator: "\n") { store.ingest(otlp: Data(line.utf8)) }
            }
            guard let id = traceID?.lowercased() ?? store.recentRoots(1).first?.traceID else {
                note("error: no spans in \(file.joined(separator: ", "))")
                throw ExitCode(1)
            }
            let lines = TraceTree.render(store.trace(id))
            guard !lines.isEmpty else {
                note("error: no spans of trace \(id) in \(file.joined(separator: ", "))")
                throw ExitCode(1)
            }
            for line in lines { print(line) }
        }
    }
}

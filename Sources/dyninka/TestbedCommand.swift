import ArgumentParser
import DyninkaCompiler
import DyninkaDeploy
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka testbed`: a fog of network namespaces on this machine.
    struct TestbedCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "testbed",
            abstract: "A fog test bed on this machine: nodes, links with delay, loss and rate, and names.",
            discussion: """
                Each node is a Linux network namespace with its own address; a router namespace joins \
                them and carries the links' conditions. The bed adds a node `client` for load \
                generators. Needs root. Run an app on it with `dyninka run App.swift --testbed`.

                Examples:
                  dyninka testbed up configs/testbed/fog.json
                  dyninka testbed link edge-1 cloud --delay 20 --jitter 5 --loss 1
                  dyninka testbed probe edge-1 cloud
                  dyninka testbed exec client -- curl -s http://smart-building-get:8080/
                  dyninka testbed down
                """,
            subcommands: [Up.self, Down.self, Status.self, Link.self, Probe.self, Exec.self, Kill.self, Revive.self])

        struct Kill: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Fail a node: kill everything on it (SIGKILL); `dyninka run` restarts nothing there until it is revived.",
                discussion: "On a bed with --kubernetes this is the node's containerd, kubelet and kube-proxy and every container of its pods: the cluster sees the node stop answering, marks it not ready after its grace period (40 s), and replaces its pods elsewhere after the manifests' toleration (deploy --node-loss-timeout, 20 s).")
            @Argument(help: "The node.") var node: String
            func run() throws {
                do { note("killed \(try Testbed.kill(node: node)) processes on \(node); it stays down until `dyninka testbed revive \(node)`") } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
            }
        }

        struct Revive: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Bring a failed node back: `dyninka run` restarts what ran on it; with --kubernetes the node rejoins the cluster (Ready when this returns).")
            @Argument(help: "The node.") var node: String
            func run() throws {
                do { try Testbed.revive(node: node); note("\(node) is up again") } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
            }
        }

        struct Up: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create the nodes and links a test bed file describes (removing an earlier bed first).",
                discussion: """
                    With --kubernetes the nodes also become real Kubernetes nodes (containerd, kubelet \
                    and kube-proxy in each node's namespace, from the Kubernetes kit), with the file's \
                    labels; `client` joins tainted, so no pod lands there. The control plane and kube-dns \
                    run on this machine at 10.77.0.1, reached over a management link to the router that \
                    no link condition applies to. Pods of node K get 10.78.K.0/24, routed through the \
                    router, so the links' delay, loss and rate apply to pod traffic as to processes. \
                    The last line is `kubeconfig PATH`; deploy with \
                    `KUBECONFIG=PATH dyninka deploy App.swift --apply --namespace NS`.
                    """)
            @Argument(help: "The test bed file (JSON), e.g. configs/testbed/fog.json.")
            var file: String
            @Flag(help: "Make the nodes real Kubernetes nodes (about 15 s per node, plus 4 minutes once per machine to build the node binaries).")
            var kubernetes = false
            @Option(help: "With --kubernetes: the Kubernetes kit's folder (default: $DYNINKA_K8S_KIT).")
            var kit: String?

            func run() throws {
                let spec: TestbedSpec
                do { spec = try TestbedSpec.load(file) } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
                let started = Date()
                do {
                    let kitFolder = kubernetes ? try Testbed.locateKit(kit) : nil
                    let state = try Testbed.up(spec, file: URL(fileURLWithPath: file).standardizedFileURL.path, emulator: try linkEmulator(),
                                               kubernetesKit: kitFolder) { note($0) }
                    printStatus(state)
                    note(String(format: "test bed '%@' up in %.1f s", state.name, Date().timeIntervalSince(started)))
                } catch let failure as TestbedFailure {
                    note("error: \(failure)")
                    _ = try? Testbed.down()
                    throw ExitCode(1)
                }
            }
        }

        struct Down: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove the bed: its processes, namespaces, links, rules and files.")
            func run() throws {
                do {
                    let removed = try Testbed.down()
                    note(removed.isEmpty ? "no test bed was up" : "removed \(removed.joined(separator: ", "))")
                    let left = Testbed.leftovers()
                    if !left.isEmpty {
                        note("error: still there: \(left.joined(separator: ", "))")
                        throw ExitCode(1)
                    }
                } catch let failure as TestbedFailure {
                    note("error: \(failure)")
                    throw ExitCode(1)
                }
            }
        }

        struct Status: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List the nodes, addresses, links and what runs where.")
            func run() throws {
                guard let state = Testbed.current() else {
                    note("no test bed is up (start one with `dyninka testbed up FILE`)")
                    throw ExitCode(1)
                }
                printStatus(state)
            }
        }

        struct Link: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Set the conditions between two nodes while the bed runs (no options: a plain LAN).",
                discussion: "Delay is one way: a round trip over the link takes twice as long. --loss 100 cuts the link.")
            @Argument(help: "One node.") var a: String
            @Argument(help: "The other node.") var b: String
            @Option(help: "One-way delay in ms.") var delay: Double = 0
            @Option(help: "Jitter in ms (each packet's delay is drawn from delay +- jitter, in order).") var jitter: Double = 0
            @Option(help: "Loss in percent, per direction.") var loss: Double = 0
            @Option(help: "Rate in Mbit/s, per direction.") var rate: Double?

            func validate() throws {
                guard delay >= 0, jitter >= 0, jitter <= delay else { throw ValidationError("--delay and --jitter must be >= 0, with jitter <= delay") }
                guard (0...100).contains(loss) else { throw ValidationError("--loss must be 0...100") }
                if let rate, rate <= 0 { throw ValidationError("--rate must be above 0 Mbit/s") }
            }

            func run() throws {
                let conditions = LinkConditions(delayMs: delay, jitterMs: jitter, lossPercent: loss, rateMbit: rate)
                do {
                    _ = try Testbed.setLink(a, b, conditions)
                    note("\(a) <-> \(b): \(conditions)")
                } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
            }
        }

        struct Probe: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Measure round trips between two nodes (UDP echo), against the link's setting.")
            @Argument(help: "From this node.") var a: String
            @Argument(help: "To this node.") var b: String
            @Option(help: "Round trips to measure.") var count = 50
            @Option(help: "Also send this many MiB over TCP and report the throughput against the link's rate.") var mib: Int?

            func run() throws {
                guard let state = Testbed.current() else {
                    note("no test bed is up")
                    throw ExitCode(1)
                }
                do {
                    let (rtts, lost) = try Testbed.probe(from: a, to: b, count: count, state: state)
                    let setting = state.conditions(a, b)
                    say(ProbeReport(rtts: rtts, lost: lost, setting: setting).line(a, b))
                    if let mib {
                        let mbit = try Testbed.throughput(from: a, to: b, bytes: mib << 20, state: state)
                        say(String(format: "%@ -> %@: %d MiB over TCP at %.1f Mbit/s", a, b, mib, mbit)
                            + (setting.rateMbit.map { String(format: " (rate %.0f Mbit/s: %+.1f%%)", $0, (mbit - $0) / $0 * 100) } ?? ""))
                    }
                } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
            }
        }

        struct Exec: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Run a command on a node (in its namespace, with its names).")
            @Argument(help: "The node (client for load generators).") var node: String
            @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).") var command: [String] = []

            func run() throws {
                guard let state = Testbed.current(), state.node(node) != nil else {
                    note("error: no node '\(node)' in a running test bed")
                    throw ExitCode(1)
                }
                let arguments = command.first == "--" ? Array(command.dropFirst()) : command
                guard !arguments.isEmpty else { throw ValidationError("give the command after --") }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
                process.arguments = ["netns", "exec", Testbed.namespace(of: node)] + arguments
                try process.run()
                process.waitUntilExit()
                throw ExitCode(process.terminationStatus)
            }
        }
    }
}

/// Round trips measured over a link, against its setting.
struct ProbeReport {
    var rtts: [Double]
    var lost: Int
    var setting: LinkConditions

    var mean: Double { rtts.isEmpty ? 0 : rtts.reduce(0, +) / Double(rtts.count) }

    func line(_ a: String, _ b: String) -> String {
        let sorted = rtts.sorted()
        func p(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        // One way is half the median round trip: a busy machine delays a few probes by tens of
        // milliseconds (scheduling, not the link), which would pull a mean away.
        let oneWay = p(0.5) / 2
        var text = String(format: "%@ -> %@: %d round trips, %d lost; rtt mean %.2f ms, p50 %.2f, p99 %.2f; one way %.2f ms",
                          a, b, rtts.count, lost, mean, p(0.5), p(0.99), oneWay)
        if setting.delayMs > 0 {
            text += String(format: " (setting %.1f ms: %+.1f%%)", setting.delayMs, (oneWay - setting.delayMs) / setting.delayMs * 100)
        }
        return text
    }
}

/// The link emulator beside this dyninka (built with it: `swift build --product dyninka-linkemu`).
func linkEmulator() throws -> String {
    let beside = LocalProgram.executableDirectory + "/dyninka-linkemu"
    if FileManager.default.isExecutableFile(atPath: beside) { return beside }
    throw TestbedFailure("no dyninka-linkemu beside dyninka (\(beside)): build it with `swift build --product dyninka-linkemu`")
}

/// Nodes, links and processes of a bed that is up.
func printStatus(_ state: Testbed.State) {
    say("test bed '\(state.name)' from \(state.file):")
    for node in state.nodes {
        let labels = node.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        say("  node \(node.name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(node.address.padding(toLength: 12, withPad: " ", startingAt: 0)) namespace \(node.namespace)\(labels.isEmpty ? "" : "  labels \(labels)")")
    }
    if state.links.isEmpty { say("  links: every pair is a LAN") }
    for link in state.links { say("  link \(link.a) <-> \(link.b): \(link.conditions)") }
    say("  every other pair: LAN")
    if let cluster = state.cluster {
        say("  kubernetes: every node is a real node (kit \(cluster.kit)); control plane and kube-dns on \(Testbed.managementAddress)")
        say("  pods: \(Testbed.podNetwork) (node K: 10.78.K.0/24), ClusterIPs: \(Testbed.serviceNetwork)")
        say("kubeconfig \(cluster.kubeconfig)")
        return
    }
    for node in state.nodes {
        for process in Testbed.processes(inNamespace: node.namespace) {
            let words = process.command.split(separator: " ")
            if let at = words.firstIndex(of: "--service"), at + 1 < words.count {
                let address = words.firstIndex(of: "--host").flatMap { $0 + 1 < words.count ? " on \(words[$0 + 1])" : nil } ?? ""
                say("  runs on \(node.name): service \(words[at + 1])\(address) (dyninka-host, pid \(process.pid))")
            } else {
                say("  runs on \(node.name): [\(process.pid)] \(process.command.count > 140 ? String(process.command.prefix(140)) + "..." : process.command)")
            }
        }
    }
}

extension DyninkaCommand {
    /// `dyninka move SERVICE --to NODE`: service mobility on the test bed.
    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a running service to another test bed node, with its @Placed state, without losing a request.",
            discussion: """
                Asks the `dyninka run --testbed` that runs the app (through a request file in the bed's \
                state folder, not a port): a new host starts on the node, the old one finishes what it \
                has in flight and hands over its state, and the service's address moves with it, so \
                callers keep its name and address. Needs root.

                Example:
                  dyninka move movingAvg --to edge-1
                """)
        @Argument(help: "The service.") var service: String
        @Option(help: "The node to move it to.") var to: String
        @Option(help: "Seconds to wait for the move.") var timeout = 60.0

        func run() throws {
            do {
                try Testbed.requireRoot()
                let (ok, text) = try Testbed.requestMove(Testbed.MoveRequest(service: service, node: to), timeout: timeout)
                if ok { say(text) } else {
                    note("error: \(text)")
                    throw ExitCode(1)
                }
            } catch let failure as TestbedFailure {
                note("error: \(failure)")
                throw ExitCode(1)
            }
        }
    }
}


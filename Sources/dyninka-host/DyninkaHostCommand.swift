import ArgumentParser

/// The daemon that runs service functions of a Dyninka app as network services.
@main
struct DyninkaHostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dyninka-host",
        abstract: "Runs the services of a Dyninka app library as point-to-point HTTP services.",
        discussion: """
            One process serves one service. Requests carry their input as the JSON body and the rest \
            of the dataflow in the Dyninka-Route header; each host runs its function and forwards \
            the output to the next service itself (no gateway, no broker).
            """,
        subcommands: [Serve.self, GatewayMode.self],
        defaultSubcommand: nil)
}

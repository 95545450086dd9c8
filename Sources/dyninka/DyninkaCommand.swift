import ArgumentParser
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView

/// The Dyninka command line: one Swift file in, a distributed dataflow out.
@main
struct DyninkaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dyninka",
        abstract: "Build and run distributed dataflow apps written as one Swift file.",
        discussion: """
            Mark functions @Service, state @Placed("service"), and chain the services in main. \
            `dyninka build` turns every service into a network service; `dyninka run` starts them \
            on this machine, each in its own dyninka-host process, talking point to point.
            """,
        subcommands: [Build.self, Run.self, Graph.self, Image.self, Deploy.self, Invoke.self, Trace.self, TestbedCommand.self, Move.self, Guard.self])
}

import ArgumentParser
import DyninkaCompiler
import DyninkaDeploy
import Foundation

extension DyninkaCommand {
    /// `dyninka image FILE`: the app's container image, built here without a daemon or registry.
    struct Image: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build the app's container image offline (no daemon, no registry, no base image to pull).",
            discussion: """
                The image holds the release dyninka-host, the app library, the shared libraries \
                they load and nothing else: no shell, no package manager; it runs as user 65532. \
                It is written as a docker-archive tarball, which `ctr images import`, \
                `docker load` and the Kubernetes kit's `node import` read, and its layer is also \
                written gzipped (what a registry would store). The same inputs give the same \
                digests; the tag is the start of the image ID.

                Example:
                  dyninka image examples/SmartBuilding/SmartBuilding.swift --output /tmp/images
                """)

        @Argument(help: "The app's Swift file.")
        var file: String
        @Option(help: "Folder for the image files (default: the app's .dyninka folder).")
        var output: String?
        @Option(help: "The image's name without a tag (default dyninka/APP, APP in DNS form).")
        var repository: String?
        @OptionGroup var built: BuiltAppOptions

        func run() throws {
            let build = try buildApp(file: file, out: built.out)
            let host: String
            do { host = try HostBinary.locate(explicit: built.hostBinary) } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
            let folder = output ?? URL(fileURLWithPath: build.library).deletingLastPathComponent().path
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            note("building the image of \(build.ir.name) from \(host) and \(build.library)")
            let image: ContainerImage.Built
            do {
                image = try ContainerImage.build(app: build.ir.name, hostBinary: host, appLibrary: build.library,
                                                 repository: repository ?? "dyninka/\(ObjectNames.dns(build.ir.name))", output: folder)
            } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
            say("image \(image.reference)")
            say("id \(image.id)")
            say("archive \(image.archive)")
            say(String(format: "size %.1f MB compressed (%@), %.1f MB unpacked, %d files", Double(image.compressedBytes) / 1e6,
                       image.compressedLayer, Double(image.layerBytes) / 1e6, image.files.filter { $0.bytes > 0 }.count))
        }
    }
}

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
            let image = try buildImage(of: build, hostBinary: built.hostBinary, output: output, repository: repository)
            say("image \(image.reference)")
            say("id \(image.id)")
            say("archive \(image.archive)")
            say(image.sizeLine)
        }
    }
}

extension ContainerImage.Built {
    /// "size 31.3 MB compressed (PATH), 80.2 MB unpacked, 30 files".
    var sizeLine: String {
        String(format: "size %.1f MB compressed (%@), %.1f MB unpacked, %d files", Double(compressedBytes) / 1e6, compressedLayer,
               Double(layerBytes) / 1e6, files.filter { $0.bytes > 0 }.count)
    }
}

/// Builds the image of a built app (`dyninka image`, and `deploy --apply` on a test bed's
/// cluster): into `output`, else the app's build folder.
func buildImage(of build: BuildResult, hostBinary: String?, output: String?, repository: String?) throws -> ContainerImage.Built {
    let host: String
    do { host = try HostBinary.locate(explicit: hostBinary) } catch {
        note("error: \(error)")
        throw ExitCode(1)
    }
    let folder = output ?? URL(fileURLWithPath: build.library).deletingLastPathComponent().path
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    note("building the image of \(build.ir.name) from \(host) and \(build.library)")
    do {
        return try ContainerImage.build(app: build.ir.name, hostBinary: host, appLibrary: build.library,
                                        repository: repository ?? "dyninka/\(ObjectNames.dns(build.ir.name))", output: folder)
    } catch {
        note("error: \(error)")
        throw ExitCode(1)
    }
}

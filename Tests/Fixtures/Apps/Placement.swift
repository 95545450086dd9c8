// A test app for placement on a fog cluster: one service pinned to a node, one on nodes with a
// label, one next to another service, and one left to the scheduler. The Kubernetes tests
// deploy it to nodes named and labelled like the fog test bed (cloud, edge-1 zone=roof, edge-2).
import Dyninka

struct Frame: Codable {
    var camera: String
    var objects: Int
}

/// Pinned: the camera is wired to edge-2.
@Service(node: "edge-2") func capture() -> Frame {
    Frame(camera: "gate", objects: 0)
}

extension Frame {
    /// On any node labelled zone=roof.
    @Service(label: "zone=roof") func detect() -> Frame {
        Frame(camera: camera, objects: objects + 2)
    }

    /// Next to the camera, wherever that is.
    @Service(near: "capture") func blur() -> Frame { self }

    /// Anywhere.
    @Service func report() -> String { "\(camera): \(objects) objects" }
}

@main struct Placement {
    static func main() async throws {
        print(capture().detect().blur().report())
    }
}

import Foundation

/// Where an app is deployed.
package enum DeployTarget: String, CaseIterable, Sendable {
    case local, kubernetes, marathon
}

/// Which target the environment points at, and why.
package struct Detection: Equatable, Sendable {
    package var target: DeployTarget
    package var reason: String

    package init(target: DeployTarget, reason: String) {
        self.target = target
        self.reason = reason
    }
}

/// Detects the infrastructure from the environment: in-cluster variables or a kubeconfig
/// context for Kubernetes, a Marathon URL for Marathon, otherwise this machine.
package enum InfrastructureDetector {
    package static func detect(environment: [String: String], readFile: (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }) -> Detection {
        if let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty {
            return Detection(target: .kubernetes, reason: "running inside a Kubernetes pod (KUBERNETES_SERVICE_HOST=\(host))")
        }
        if let url = environment["MARATHON_URL"], !url.isEmpty {
            return Detection(target: .marathon, reason: "MARATHON_URL is set (\(url))")
        }
        var configs: [String] = []
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            configs = list.split(separator: ":").map(String.init)
        } else if let home = environment["HOME"] {
            configs = [home + "/.kube/config"]
        }
        for path in configs {
            guard let text = readFile(path) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("current-context:") {
                let context = line.dropFirst("current-context:".count).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\"'")))
                if !context.isEmpty {
                    return Detection(target: .kubernetes, reason: "kubeconfig \(path) has current context '\(context)'")
                }
            }
        }
        return Detection(target: .local, reason: "no Kubernetes (KUBERNETES_SERVICE_HOST, a kubeconfig context) or Marathon (MARATHON_URL) in the environment")
    }
}

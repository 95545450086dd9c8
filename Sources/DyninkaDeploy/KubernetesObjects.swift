/// The few fields of Kubernetes objects that a deploy reads back from the API server (decoded
/// from `kubectl get -o json`; every field optional where the server may leave it out).
package enum Kube {
    /// A list answer (`kind: List` or `DeploymentList` ...).
    package struct List<Item: Decodable & Sendable>: Decodable, Sendable {
        package var items: [Item]
    }

    /// `metadata`.
    package struct Metadata: Decodable, Sendable {
        package var name: String
        package var namespace: String?
        package var labels: [String: String]?
        package var annotations: [String: String]?
        package var generation: Int?
        package var deletionTimestamp: String?
        package var creationTimestamp: String?
    }

    /// A status condition (Deployment, Pod).
    package struct Condition: Decodable, Sendable {
        package var type: String
        package var status: String
        package var reason: String?
        package var message: String?
    }

    /// A Deployment: what it wants and how far its rollout is.
    package struct Deployment: Decodable, Sendable {
        package struct Spec: Decodable, Sendable {
            package var replicas: Int?
            package var template: Template?
        }
        package struct Template: Decodable, Sendable {
            package var metadata: TemplateMetadata?
            package var spec: PodTemplateSpec?
        }
        package struct PodTemplateSpec: Decodable, Sendable {
            package var nodeSelector: [String: String]?
        }
        package struct TemplateMetadata: Decodable, Sendable {
            package var annotations: [String: String]?
        }
        package struct Status: Decodable, Sendable {
            package var observedGeneration: Int?
            package var replicas: Int?
            package var updatedReplicas: Int?
            package var readyReplicas: Int?
            package var availableReplicas: Int?
            package var unavailableReplicas: Int?
            package var conditions: [Condition]?
        }
        package var metadata: Metadata
        package var spec: Spec?
        package var status: Status?

        /// `deployment.kubernetes.io/revision`: 1 at creation, +1 per rolled template.
        package var revision: Int { Int(metadata.annotations?["deployment.kubernetes.io/revision"] ?? "") ?? 0 }
        /// The dyninka service this Deployment runs.
        package var service: String? { spec?.template?.metadata?.annotations?["dyninka.io/service"] }
        /// The hash of what dyninka generated for the service (nil: not made by this dyninka).
        package var specHash: String? { metadata.annotations?[KubernetesManifests.specHashAnnotation] }
        package var desired: Int { spec?.replicas ?? 1 }

        /// Rolled out as `kubectl rollout status` means it: the controller saw this generation,
        /// every replica runs the new template, none of the old is left, and all are available.
        package var rolledOut: Bool {
            guard let status else { return false }
            return (status.observedGeneration ?? 0) >= (metadata.generation ?? 1)
                && (status.updatedReplicas ?? 0) >= desired
                && (status.replicas ?? 0) <= (status.updatedReplicas ?? 0)
                && (status.availableReplicas ?? 0) >= (status.updatedReplicas ?? 0)
        }

        /// The controller gave up (progressDeadlineSeconds passed).
        package var stalled: Condition? {
            status?.conditions?.first { $0.type == "Progressing" && $0.reason == "ProgressDeadlineExceeded" }
        }

        /// One line of rollout progress.
        package var progress: String {
            let s = status
            return "\(s?.updatedReplicas ?? 0)/\(desired) updated, \(s?.availableReplicas ?? 0)/\(desired) available"
                + ((s?.replicas ?? 0) > (s?.updatedReplicas ?? 0) ? ", \((s?.replicas ?? 0) - (s?.updatedReplicas ?? 0)) old still running" : "")
        }
    }

    /// A Pod: where it was scheduled and how it is doing.
    package struct Pod: Decodable, Sendable {
        package struct Spec: Decodable, Sendable {
            package var nodeName: String?
        }
        package struct Status: Decodable, Sendable {
            package var phase: String?
            package var conditions: [Condition]?
        }
        package var metadata: Metadata
        package var spec: Spec?
        package var status: Status?

        /// Running, Ready and not being deleted.
        package var ready: Bool {
            metadata.deletionTimestamp == nil && status?.phase == "Running"
                && status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
        }
    }

    /// A Node: whether it takes new pods.
    package struct Node: Decodable, Sendable {
        package struct Spec: Decodable, Sendable {
            /// Cordoned (`kubectl cordon`, and the first step of `kubectl drain`).
            package var unschedulable: Bool?
        }
        package var metadata: Metadata
        package var spec: Spec?
    }

    /// An Event (`v1`).
    package struct Event: Decodable, Sendable {
        package struct Object: Decodable, Sendable {
            package var kind: String?
            package var name: String?
        }
        package var involvedObject: Object
        package var type: String?
        package var reason: String?
        package var message: String?
        package var count: Int?
        package var lastTimestamp: String?
    }

    /// A Namespace.
    package struct Namespace: Decodable, Sendable {
        package var metadata: Metadata
    }

    /// Any object, by kind and name (for listings).
    package struct Object: Decodable, Sendable {
        package var kind: String?
        package var metadata: Metadata
    }
}

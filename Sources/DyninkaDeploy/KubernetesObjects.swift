/// The few fields of Kubernetes objects that a deploy reads back from the API server (decoded
/// from `kubectl get -o json`; every field optional where the server may leave it out).
public enum Kube {
    /// A list answer (`kind: List` or `DeploymentList` ...).
    public struct List<Item: Decodable & Sendable>: Decodable, Sendable {
        public var items: [Item]
    }

    /// `metadata`.
    public struct Metadata: Decodable, Sendable {
        public var name: String
        public var namespace: String?
        public var labels: [String: String]?
        public var annotations: [String: String]?
        public var generation: Int?
        public var deletionTimestamp: String?
        public var creationTimestamp: String?
    }

    /// A status condition (Deployment, Pod).
    public struct Condition: Decodable, Sendable {
        public var type: String
        public var status: String
        public var reason: String?
        public var message: String?
    }

    /// A Deployment: what it wants and how far its rollout is.
    public struct Deployment: Decodable, Sendable {
        public struct Spec: Decodable, Sendable {
            public var replicas: Int?
            public var template: Template?
        }
        public struct Template: Decodable, Sendable {
            public var metadata: TemplateMetadata?
        }
        public struct TemplateMetadata: Decodable, Sendable {
            public var annotations: [String: String]?
        }
        public struct Status: Decodable, Sendable {
            public var observedGeneration: Int?
            public var replicas: Int?
            public var updatedReplicas: Int?
            public var readyReplicas: Int?
            public var availableReplicas: Int?
            public var unavailableReplicas: Int?
            public var conditions: [Condition]?
        }
        public var metadata: Metadata
        public var spec: Spec?
        public var status: Status?

        /// `deployment.kubernetes.io/revision`: 1 at creation, +1 per rolled template.
        public var revision: Int { Int(metadata.annotations?["deployment.kubernetes.io/revision"] ?? "") ?? 0 }
        /// The dyninka service this Deployment runs.
        public var service: String? { spec?.template?.metadata?.annotations?["dyninka.io/service"] }
        /// The hash of what dyninka generated for the service (nil: not made by this dyninka).
        public var specHash: String? { metadata.annotations?[KubernetesManifests.specHashAnnotation] }
        public var desired: Int { spec?.replicas ?? 1 }

        /// Rolled out as `kubectl rollout status` means it: the controller saw this generation,
        /// every replica runs the new template, none of the old is left, and all are available.
        public var rolledOut: Bool {
            guard let status else { return false }
            return (status.observedGeneration ?? 0) >= (metadata.generation ?? 1)
                && (status.updatedReplicas ?? 0) >= desired
                && (status.replicas ?? 0) <= (status.updatedReplicas ?? 0)
                && (status.availableReplicas ?? 0) >= (status.updatedReplicas ?? 0)
        }

        /// The controller gave up (progressDeadlineSeconds passed).
        public var stalled: Condition? {
            status?.conditions?.first { $0.type == "Progressing" && $0.reason == "ProgressDeadlineExceeded" }
        }

        /// One line of rollout progress.
        public var progress: String {
            let s = status
            return "\(s?.updatedReplicas ?? 0)/\(desired) updated, \(s?.availableReplicas ?? 0)/\(desired) available"
                + ((s?.replicas ?? 0) > (s?.updatedReplicas ?? 0) ? ", \((s?.replicas ?? 0) - (s?.updatedReplicas ?? 0)) old still running" : "")
        }
    }

    /// A Pod: where it was scheduled and how it is doing.
    public struct Pod: Decodable, Sendable {
        public struct Spec: Decodable, Sendable {
            public var nodeName: String?
        }
        public struct Status: Decodable, Sendable {
            public var phase: String?
            public var conditions: [Condition]?
        }
        public var metadata: Metadata
        public var spec: Spec?
        public var status: Status?

        /// Running, Ready and not being deleted.
        public var ready: Bool {
            metadata.deletionTimestamp == nil && status?.phase == "Running"
                && status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
        }
    }

    /// An Event (`v1`).
    public struct Event: Decodable, Sendable {
        public struct Object: Decodable, Sendable {
            public var kind: String?
            public var name: String?
        }
        public var involvedObject: Object
        public var type: String?
        public var reason: String?
        public var message: String?
        public var count: Int?
        public var lastTimestamp: String?
    }

    /// A Namespace.
    public struct Namespace: Decodable, Sendable {
        public var metadata: Metadata
    }

    /// Any object, by kind and name (for listings).
    public struct Object: Decodable, Sendable {
        public var kind: String?
        public var metadata: Metadata
    }
}

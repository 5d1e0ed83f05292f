/// The JSON record of one run (`levain run --json-report FILE`). Field names
/// are snake_case in the JSON; docs/REPORT.md describes each.
public struct RunReport: Codable, Sendable {
    public var id: String
    public var command: [String]
    public var policy: String
    public var startedAt: String
    public var wallTimeMs: Double
    public var exit: Exit
    public var cpu: CPU
    public var memory: Memory
    public var limits: Limits
    public var isolation: Isolation
    public var workspace: String?
    /// Why the command did not start (exec failure), when it did not.
    public var error: String?

    public struct Exit: Codable, Sendable {
        /// The command's exit code, when it exited.
        public var code: Int32?
        /// The signal that ended it, when one did.
        public var signal: Int32?
        public var signalName: String?
        /// What `levain run` itself exits with: the code, or 128+signal.
        public var status: Int32
    }

    public struct CPU: Codable, Sendable {
        public var userMs: Double
        public var systemMs: Double
        /// Where the figures come from: "cgroup" or "rusage".
        public var source: String
    }

    public struct Memory: Codable, Sendable {
        public var peakBytes: UInt64?
        public var limitBytes: UInt64?
    }

    public struct Limits: Codable, Sendable {
        /// True when any limit ended or constrained the run.
        public var hit: Bool
        /// Which: "memory" (OOM kill), "pids", "cpu_time", "timeout", "file_size".
        public var which: [String]
        public var memoryBytes: UInt64?
        public var cpus: Double?
        public var pids: Int?
        public var timeoutSeconds: Double?
        public var cpuTimeSeconds: UInt64?
        public var fileSizeBytes: UInt64?
        public var openFiles: UInt64?
        /// The workspace's size (its ext4 image), when it has one.
        public var workspaceBytes: UInt64?
        public var oomKills: Int
        public var pidsLimitHits: Int
        public var cpuThrottledMs: Double?
    }

    public struct Isolation: Codable, Sendable {
        public var namespaces: [String]
        public var user: User
        public var rootfs: Rootfs
        public var seccomp: Seccomp
        public var landlock: Landlock
        public var cgroup: Cgroup
        public var capabilities: String
        public var noNewPrivs: Bool
        public var network: String
        public var rlimits: [String: UInt64]

        public struct User: Codable, Sendable {
            public var uid: UInt32
            public var gid: UInt32
            public var hostUID: UInt32
            public var hostGID: UInt32
        }

        public struct Rootfs: Codable, Sendable {
            public var type: String
            public var readOnly: Bool
            public var binds: [String]
            public var maskedProcPaths: Int
            public var tmpSizeBytes: UInt64
        }

        public struct Seccomp: Codable, Sendable {
            public var profile: String
            public var defaultAction: String
            public var allowedSyscalls: Int
            public var deniedSyscalls: Int
            public var filters: Int
            public var instructions: Int
            public var architectures: [String]
        }

        public struct Landlock: Codable, Sendable {
            public var applied: Bool
            public var abi: Int
            public var mode: String
        }

        public struct Cgroup: Codable, Sendable {
            public var version: Int?
            public var controllers: [String]
            public var paths: [String]
        }
    }
}

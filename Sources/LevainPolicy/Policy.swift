/// A policy: what a run may see and use. Pure values, loaded from TOML by
/// `PolicyLoader`; see docs/POLICY.md for the file format.
public struct Policy: Sendable, Equatable {
    public var name: String
    public var description: String
    /// Where it came from ("builtin:default" or a file path), for messages.
    public var source: String

    public var namespaces: Namespaces
    public var user: JailUser
    public var filesystem: Filesystem
    public var limits: Limits
    public var seccomp: SeccompSettings
    public var landlock: Requirement
    public var network: NetworkMode
    public var egress = Egress()
    public var models = Models()
    public var tools = Tools()
    public var audit = Audit()
    public var environment: Environment

    public init(name: String, description: String = "", source: String, namespaces: Namespaces = .all,
                user: JailUser = JailUser(), filesystem: Filesystem = Filesystem(), limits: Limits = Limits(),
                seccomp: SeccompSettings = SeccompSettings(), landlock: Requirement = .ifAvailable,
                network: NetworkMode = .loopback, environment: Environment = Environment()) {
        self.name = name
        self.description = description
        self.source = source
        self.namespaces = namespaces
        self.user = user
        self.filesystem = filesystem
        self.limits = limits
        self.seccomp = seccomp
        self.landlock = landlock
        self.network = network
        self.environment = environment
    }

    public struct Namespaces: Sendable, Equatable {
        public var user = true
        public var pid = true
        public var mount = true
        public var net = true
        public var uts = true
        public var ipc = true
        public var cgroup = true
        public static let all = Namespaces()
        public init() {}

        public var enabledNames: [String] {
            var names: [String] = []
            if user { names.append("user") }
            if pid { names.append("pid") }
            if mount { names.append("mount") }
            if net { names.append("net") }
            if uts { names.append("uts") }
            if ipc { names.append("ipc") }
            if cgroup { names.append("cgroup") }
            return names
        }
    }

    public struct JailUser: Sendable, Equatable {
        /// The ids the command runs as inside the jail.
        public var uid: UInt32 = 1000
        public var gid: UInt32 = 1000
        public var name = "jail"
        public var hostname = "levain"
        public init() {}
    }

    public struct Bind: Sendable, Equatable {
        public var host: String
        public var jail: String
        public var writable: Bool
        /// Skip silently when the host path does not exist.
        public var optional: Bool
        public init(host: String, jail: String, writable: Bool, optional: Bool = false) {
            self.host = host
            self.jail = jail
            self.writable = writable
            self.optional = optional
        }
    }

    public struct Filesystem: Sendable, Equatable {
        /// Binds in order; the defaults give a Debian userland (/usr and the
        /// merged-/usr symlinks come from `usrMerge`).
        public var binds: [Bind] = []
        /// Host /etc entries bound read-only when present (the rest of /etc is
        /// generated: passwd, group, hosts, hostname, nsswitch.conf, resolv.conf).
        public var etcFromHost: [String] = []
        /// Recreate /bin, /lib, /lib64, /sbin as the host has them (symlinks
        /// into /usr on a merged-/usr system, read-only binds otherwise).
        public var usrMerge = true
        public var tmpSize: UInt64 = 64 << 20
        public var shmSize: UInt64 = 64 << 20
        /// A per-run host directory mounted read-write at /workspace.
        public var workspace = true
        /// The workspace's size: a sparse ext4 image of this size per
        /// workspace, loop-mounted at /workspace inside the jail, so the kernel
        /// stops a run that fills it (ENOSPC) and the host's disk gives at most
        /// this much. nil ("off"): a plain host directory, unbounded.
        public var workspaceSize: UInt64? = Self.defaultWorkspaceSize
        public static let defaultWorkspaceSize: UInt64 = 1 << 30
        /// ext4 needs room for its journal and tables; below this a
        /// workspace would be mostly metadata.
        public static let minimumWorkspaceSize: UInt64 = 16 << 20
        public init() {}
    }

    public struct Limits: Sendable, Equatable {
        public var memory: UInt64? = 512 << 20
        public var cpus: Double? = 1
        public var pids: Int? = 256
        /// Wall-clock time in seconds.
        public var timeout: Double? = 300
        /// CPU seconds (RLIMIT_CPU).
        public var cpuTime: UInt64? = nil
        public var fileSize: UInt64? = 1 << 30
        public var openFiles: UInt64? = 1024
        public var core: UInt64 = 0
        public var stack: UInt64? = nil
        public init() {}
    }

    public struct SeccompSettings: Sendable, Equatable {
        /// A built-in profile name, or a path to an OCI seccomp JSON file
        /// (already resolved against the policy file's directory).
        public var profile = "default"
        public init() {}
    }

    public enum Requirement: String, Sendable, Equatable, CaseIterable {
        /// Refuse to run without it.
        case required
        /// Apply it when the kernel has it; the report says which.
        case ifAvailable = "if-available"
        case off
    }

    public enum NetworkMode: String, Sendable, Equatable, CaseIterable {
        /// Own network namespace with loopback up; nothing routes out.
        case loopback
        /// Own network namespace with no interface up at all.
        case none
    }

    public struct Environment: Sendable, Equatable {
        /// Variables set in the jail, in order.
        public var set: [(String, String)] = []
        /// Names copied from the caller's environment when present.
        public var pass: [String] = []
        public init() {}

        public static func == (a: Environment, b: Environment) -> Bool {
            a.pass == b.pass && a.set.map { $0.0 } == b.set.map { $0.0 } && a.set.map { $0.1 } == b.set.map { $0.1 }
        }
    }
}

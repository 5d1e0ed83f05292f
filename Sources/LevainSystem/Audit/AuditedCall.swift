#if canImport(Glibc)
import Glibc
#endif

/// One gated system call as the supervisor saw it: who made it (read from
/// /proc while the caller waited) and its arguments (read from the caller's
/// memory, then checked still pending before they were used).
public struct AuditedCall: Sendable, Equatable {
    public var session: String
    /// Wall clock when it was received, microseconds since the epoch.
    public var microseconds: Int64
    public var syscall: String
    /// The calling thread in the supervisor's pid namespace (not logged:
    /// it means nothing to a reader of the log).
    public var hostPID: Int32
    /// The caller and its parent in the jail's pid namespace (0: the
    /// parent is outside the jail).
    public var pid: Int32?
    public var ppid: Int32?
    public var exe: String?
    /// The caller's cgroup leaf ("run-3"): names the run it belongs to.
    public var cgroup: String?
    /// The paths the call names, absolute in the jail (relative ones
    /// resolved against the caller's cwd or directory fd, lexically).
    public var paths: [String] = []
    public var argv: [String]?
    /// Some of argv or a path was cut (at 256 entries, 4 KiB a string,
    /// 32 KiB in all) or unreadable.
    public var truncated = false
    public var flags: UInt64?
    /// connect/bind: "127.0.0.1:80", "[::1]:443", "unix:/run/x.sock",
    /// "unix:@abstract", "family 16".
    public var address: String?
    /// connect/bind of an inet socket: the port, and the IPv4 address.
    public var port: Int?
    public var ipv4: UInt32?
    /// "record", or "deny" (the call failed with the rule's errno).
    public var decision = "record"
    public var rule: String?
    /// kill, tgkill: the target pid (in the jail) and signal; ptrace: the
    /// request and target; listen: the socket fd.
    public var target: Int64?
    public var signal: Int32?
    public var request: Int64?
    public var fd: Int32?
    /// 1, or how many calls this record stands for (calls beyond the
    /// pending bound, coalesced by session, cgroup and system call; their
    /// arguments are not kept).
    public var count = 1

    public init(session: String, microseconds: Int64, syscall: String, hostPID: Int32) {
        self.session = session
        self.microseconds = microseconds
        self.syscall = syscall
        self.hostPID = hostPID
    }

    /// `other` is this call made again by the same process: everything but
    /// the time is the same.
    func isRepeated(by other: AuditedCall) -> Bool {
        hostPID == other.hostPID && syscall == other.syscall && session == other.session && cgroup == other.cgroup
            && paths == other.paths && argv == other.argv && flags == other.flags && address == other.address && fd == other.fd
            && target == other.target && signal == other.signal && request == other.request && decision == other.decision
            && rule == other.rule && truncated == other.truncated && pid == other.pid
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }
}

/// What to gate for one session's jail: the system call names by
/// (architecture, number) as the filter was compiled, and the paths whose
/// calls are let through without a record.
public struct AuditWatch: Sendable {
    public var session: String
    public var names: [UInt64: String]
    public var ignorePaths: [String]
    /// The calls recorded when let through (a call gated only for a deny
    /// rule is not).
    public var record: Set<String>
    public var deny: [AuditRule]
    /// Consecutive identical calls of one process are one record with a count.
    public var coalesce: Bool

    public init(session: String, names: [UInt64: String], ignorePaths: [String], record: Set<String>, deny: [AuditRule] = [],
                coalesce: Bool = true) {
        self.session = session
        self.names = names
        self.ignorePaths = ignorePaths
        self.record = record
        self.deny = deny
        self.coalesce = coalesce
    }

    /// `path` lies beneath `prefix` (a directory: "/tmp" covers "/tmp/x", not "/tmpx").
    static func covers(_ prefix: String, _ path: String) -> Bool {
        prefix == "/" || path == prefix || path.hasPrefix(prefix + "/")
    }

    public static func key(arch: UInt32, nr: Int32) -> UInt64 { UInt64(arch) << 32 | UInt64(UInt32(bitPattern: nr)) }

    /// Whether every path of a call lies beneath an ignored prefix.
    func ignores(_ paths: [String]) -> Bool {
        guard !paths.isEmpty, !ignorePaths.isEmpty else { return false }
        return paths.allSatisfy { p in ignorePaths.contains { Self.covers($0, p) } }
    }
}

/// A `[audit.deny.NAME]` rule: a gated call it matches fails with `errno`
/// instead of running, and is recorded with decision "deny" and the rule.
/// Every matcher given must match; at least one is.
public struct AuditRule: Sendable, Equatable {
    public var name: String
    public var syscalls: Set<String>
    /// A path of the call lies beneath one of these.
    public var beneath: [String] = []
    /// A path of the call lies beneath none of these (an exec allowlist).
    public var outside: [String] = []
    /// connect/bind: the port is one of these.
    public var ports: Set<Int> = []
    /// connect/bind: the IPv4 address is in one of these (address, prefix).
    public var networks: [(UInt32, Int)] = []
    public var errno: Int32

    public init(name: String, syscalls: Set<String>, errno: Int32) {
        self.name = name
        self.syscalls = syscalls
        self.errno = errno
    }

    public static func == (a: AuditRule, b: AuditRule) -> Bool {
        a.name == b.name && a.syscalls == b.syscalls && a.beneath == b.beneath && a.outside == b.outside && a.ports == b.ports
            && a.networks.map(\.0) == b.networks.map(\.0) && a.networks.map(\.1) == b.networks.map(\.1) && a.errno == b.errno
    }

    /// Whether `call` (its arguments decoded) is one this rule refuses.
    public func matches(_ call: AuditedCall) -> Bool {
        guard syscalls.contains(call.syscall) else { return false }
        if !beneath.isEmpty {
            guard call.paths.contains(where: { p in beneath.contains { AuditWatch.covers($0, p) } }) else { return false }
        }
        if !outside.isEmpty {
            // No path read (unreadable memory): refused, not let through.
            guard call.paths.isEmpty || call.paths.contains(where: { p in !outside.contains { AuditWatch.covers($0, p) } }) else {
                return false
            }
        }
        if !ports.isEmpty {
            guard let port = call.port, ports.contains(port) else { return false }
        }
        if !networks.isEmpty {
            guard let ip = call.ipv4, networks.contains(where: { net, prefix in
                prefix == 0 || (ip ^ net) >> (32 - UInt32(prefix)) == 0
            }) else { return false }
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainSystem

/// `[audit]`: the system calls of a session's jail the supervisor sees
/// (seccomp user notification) and records as `syscall.audited` events.
extension Policy {
    public struct Audit: Sendable, Equatable {
        /// Gated calls, by the kernel's names ("execve", "openat").
        public var record: [String] = []
        /// Jail paths beneath which a path call is let through without a
        /// record ("/tmp", "/dev"): the supervisor still sees it.
        public var ignorePaths: [String] = []
        /// `[audit.deny.NAME]`: calls refused with an errno (and recorded).
        public var deny: [AuditRule] = []
        /// Consecutive identical calls of one process (a loop opening the
        /// same file) are one record with `count`; false: one record each.
        public var coalesce = true
        public init() {}

        public var isEnabled: Bool { !record.isEmpty || !deny.isEmpty }
        /// Every call the filter stops: recorded ones and denied ones.
        public var gated: [String] {
            var out = record
            for r in deny { for n in r.syscalls.sorted() where !out.contains(n) { out.append(n) } }
            return out
        }
    }
}

/// The calls `[audit] record` may name, and what the supervisor reads of
/// each. The open family is gated only with a write, create or truncate flag
/// (the filter tests the flags; `openat2`'s are in memory, so every call is
/// gated and only writes are recorded).
public enum AuditedSyscall: String, Sendable, CaseIterable {
    case execve, execveat
    case open, openat, openat2, creat
    case connect, bind, listen
    case unlink, unlinkat, rename, renameat, renameat2
    case ptrace, kill, tgkill

    /// The argument holding an open's flags, when the filter tests them.
    public var flagsArgument: UInt32? {
        switch self {
        case .open: 1
        case .openat: 2
        default: nil
        }
    }

    /// O_WRONLY, O_RDWR, O_CREAT, O_TRUNC: an open with any of them writes.
    public static let writeFlags: [UInt64] = [0o1, 0o2, 0o100, 0o1000]

    /// The call names paths (what `beneath` and `outside` match).
    public var namesPaths: Bool {
        switch self {
        case .execve, .execveat, .open, .openat, .openat2, .creat, .unlink, .unlinkat, .rename, .renameat, .renameat2: true
        default: false
        }
    }

    /// The call names a socket address (what `ports` and `addresses` match).
    public var namesAddress: Bool { self == .connect || self == .bind }
}

extension PolicyLoader {
    static func readAudit(_ t: inout TableReader, into audit: inout Policy.Audit) throws(PolicyError) {
        if let names = try syscallNames(&t, "record") { audit.record = names }
        if let paths = try jailPaths(&t, "ignore_paths", "an ignored path", example: "/tmp") { audit.ignorePaths = paths }
        if let v = try t.bool("coalesce") { audit.coalesce = v }
        if var rules = try t.table("deny") {
            for entry in rules.table.entries {
                guard var r = try rules.table(entry.key) else { continue }
                audit.deny.append(try readDenyRule(&r, name: entry.key))
                try r.finish()
            }
            try rules.finish()
        }
    }

    /// System call names from the catalog, in order, each once.
    static func syscallNames(_ t: inout TableReader, _ key: String) throws(PolicyError) -> [String]? {
        guard let items = try t.stringArray(key) else { return nil }
        var names: [String] = []
        for (name, line) in items {
            guard AuditedSyscall(rawValue: name) != nil else {
                throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified(key),
                                  "\"\(name)\" is not a system call Levain audits; these are: \(AuditedSyscall.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// Absolute jail paths without "..", a trailing "/" dropped.
    static func jailPaths(_ t: inout TableReader, _ key: String, _ what: String, example: String) throws(PolicyError) -> [String]? {
        guard let items = try t.stringArray(key) else { return nil }
        for (p, line) in items where !p.hasPrefix("/") || p.split(separator: "/").contains("..") || p.utf8.contains(0) {
            throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified(key),
                              "\"\(p)\": \(what) is an absolute jail path without \"..\" (\"\(example)\")")
        }
        return items.map { $0.0.count > 1 && $0.0.hasSuffix("/") ? String($0.0.dropLast()) : $0.0 }
    }

    static let denyErrnos: [String: Int32] = [
        "EPERM": EPERM, "EACCES": EACCES, "ENOENT": ENOENT, "EROFS": EROFS, "ECONNREFUSED": ECONNREFUSED,
        "ENETUNREACH": ENETUNREACH, "EHOSTUNREACH": EHOSTUNREACH,
    ]

    /// `[audit.deny.NAME]`: syscalls, then matchers (beneath, outside,
    /// ports, addresses; every one given must match), errno.
    static func readDenyRule(_ r: inout TableReader, name: String) throws(PolicyError) -> AuditRule {
        guard let names = try syscallNames(&r, "syscalls"), !names.isEmpty else {
            throw r.invalid("syscalls", "a deny rule names the system calls it refuses (syscalls = [\"execve\"])")
        }
        let syscalls = Set(names)
        var errno = EPERM
        if let e = try r.string("errno") {
            guard let v = denyErrnos[e] else {
                throw r.invalid("errno", "expected one of \(denyErrnos.keys.sorted().joined(separator: ", "))")
            }
            errno = v
        }
        var rule = AuditRule(name: name, syscalls: syscalls, errno: errno)
        rule.beneath = try jailPaths(&r, "beneath", "a path", example: "/workspace/.git") ?? []
        rule.outside = try jailPaths(&r, "outside", "a path", example: "/usr") ?? []
        if let node = r.node("ports") {
            guard case .array(let items) = node.value else { throw r.invalid("ports", "expected an array of port numbers") }
            for item in items {
                guard case .integer(let v) = item.value, v >= 1, v <= 65535 else {
                    throw PolicyError(.invalidValue, file: r.file, line: item.position.line, key: r.qualified("ports"), "a port is a number from 1 to 65535")
                }
                rule.ports.insert(Int(v))
            }
        }
        if let items = try r.stringArray("addresses") {
            for (a, line) in items {
                guard let net = parseNetwork(a) else {
                    throw PolicyError(.invalidValue, file: r.file, line: line, key: r.qualified("addresses"),
                                      "\"\(a)\": an IPv4 address or network (\"169.254.169.254\", \"10.0.0.0/8\")")
                }
                rule.networks.append(net)
            }
        }
        guard !rule.beneath.isEmpty || !rule.outside.isEmpty || !rule.ports.isEmpty || !rule.networks.isEmpty else {
            throw PolicyError(.invalidValue, file: r.file, line: r.line, key: r.path,
                              "a deny rule needs what it matches: beneath, outside, ports or addresses")
        }
        func without(_ has: (AuditedSyscall) -> Bool) -> String? {
            syscalls.filter { !has(AuditedSyscall(rawValue: $0)!) }.sorted().first
        }
        if !rule.beneath.isEmpty || !rule.outside.isEmpty, let other = without(\.namesPaths) {
            let pathCalls = AuditedSyscall.allCases.filter(\.namesPaths).map(\.rawValue).sorted()
            throw r.invalid("syscalls", "\"\(other)\" names no path; beneath and outside apply to \(pathCalls.joined(separator: ", "))")
        }
        if !rule.ports.isEmpty || !rule.networks.isEmpty, let other = without(\.namesAddress) {
            throw r.invalid("syscalls", "\"\(other)\" has no address; ports and addresses apply to connect and bind")
        }
        return rule
    }

    /// "a.b.c.d" or "a.b.c.d/n".
    static func parseNetwork(_ text: String) -> (UInt32, Int)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var ip: UInt32 = 0
        for o in octets {
            guard let v = UInt32(o), v <= 255, o.count <= 3 else { return nil }
            ip = ip << 8 | v
        }
        var prefix = 32
        if parts.count == 2 {
            guard let p = Int(parts[1]), p >= 0, p <= 32 else { return nil }
            prefix = p
        }
        let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << (32 - UInt32(prefix))
        return (ip & mask, prefix)
    }
}

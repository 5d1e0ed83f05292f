/// `[audit]`: the system calls of a session's jail the supervisor sees
/// (seccomp user notification) and records as `syscall.audited` events.
extension Policy {
    public struct Audit: Sendable, Equatable {
        /// Gated calls, by the kernel's names ("execve", "openat").
        public var record: [String] = []
        /// Jail paths beneath which a path call is let through without a
        /// record ("/tmp", "/dev"): the supervisor still sees it.
        public var ignorePaths: [String] = []
        public init() {}

        public var isEnabled: Bool { !record.isEmpty }
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
}

extension PolicyLoader {
    static func readAudit(_ t: inout TableReader, into audit: inout Policy.Audit) throws(PolicyError) {
        if let items = try t.stringArray("record") {
            var names: [String] = []
            for (name, line) in items {
                guard AuditedSyscall(rawValue: name) != nil else {
                    throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified("record"),
                                      "\"\(name)\" is not a system call Levain audits; these are: \(AuditedSyscall.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if !names.contains(name) { names.append(name) }
            }
            audit.record = names
        }
        if let items = try t.stringArray("ignore_paths") {
            for (p, line) in items where !p.hasPrefix("/") || p.split(separator: "/").contains("..") || p.utf8.contains(0) {
                throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified("ignore_paths"),
                                  "\"\(p)\": an ignored path is an absolute jail path without \"..\" (\"/tmp\")")
            }
            audit.ignorePaths = items.map { $0.0.count > 1 && $0.0.hasSuffix("/") ? String($0.0.dropLast()) : $0.0 }
        }
    }
}

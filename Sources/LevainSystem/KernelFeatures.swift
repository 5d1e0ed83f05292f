#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// What the running kernel offers, probed with harmless system calls and
/// /proc reads. `levain doctor` prints it; `levain run` checks a policy
/// against it and refuses to run with less than the policy asks.
public struct KernelFeatures: Sendable, Equatable {
    public var kernelRelease: String
    public var userNamespaces: Bool
    public var maxUserNamespaces: Int?
    public var seccompFilter: Bool
    public var seccompActions: [String]
    public var seccompUserNotification: Bool { seccompActions.contains("user_notif") }
    /// 0 when Landlock is absent or disabled at boot.
    public var landlockABI: Int
    public var pidfd: Bool
    public var clone3: Bool
    public var openat2: Bool
    /// open_tree, move_mount and mount_setattr (5.12): the jail's binds need them.
    public var newMountAPI: Bool
    public var closeRange: Bool
    public var cgroupKill: Bool?

    /// Whether seccomp can notify a supervisor (SECCOMP_RET_USER_NOTIF,
    /// 5.0; the audit layer needs CONTINUE too, 5.5).
    public static func seccompUserNotification() -> Bool { seccompActions().contains("user_notif") }

    /// The seccomp return actions this kernel has ("kill_process", "user_notif", ...).
    static func seccompActions() -> [String] {
        readSmallFile("/proc/sys/kernel/seccomp/actions_avail")?.trimmed.split(separator: " ").map(String.init) ?? []
    }

    /// The Landlock ABI alone (one system call), for the run path, which
    /// probes the rest only to explain a failure.
    public static func landlockABI() -> Int { Int(lv_probe_landlock_abi()) }

    public static func probe() -> KernelFeatures {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let maxNS = readSmallFile("/proc/sys/user/max_user_namespaces").flatMap { Int($0.trimmed) }
        let actions = seccompActions()
        return KernelFeatures(
            kernelRelease: release,
            userNamespaces: (maxNS ?? 0) > 0 && access("/proc/self/ns/user", F_OK) == 0,
            maxUserNamespaces: maxNS,
            seccompFilter: lv_probe_seccomp_filter() == 1,
            seccompActions: actions,
            landlockABI: Int(lv_probe_landlock_abi()),
            pidfd: lv_probe_pidfd() == 1,
            clone3: lv_probe_clone3() == 1,
            openat2: lv_probe_openat2() == 1,
            newMountAPI: lv_probe_new_mount_api() == 1,
            closeRange: lv_probe_close_range() == 1,
            cgroupKill: nil
        )
    }
}

/// Reads a small text file (a /proc or /sys entry) whole; nil when absent.
public func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readSmallFileBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// At most about `limit` bytes of a file (a /proc or /sys file); nil when
/// it cannot be opened.
public func readSmallFileBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 8192)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

extension StringProtocol {
    fileprivate var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}

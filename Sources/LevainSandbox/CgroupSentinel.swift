#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// The process that removes cgroups Levain made if Levain dies without
/// removing them itself (see lv_sentinel_start). Register a directory when
/// it is made, forget it once removed; closing (or dying) releases the
/// sentinel, which then empties and removes whatever is still registered.
public final class CgroupSentinel: @unchecked Sendable {
    private let fd: Int32
    public let pid: pid_t

    /// Nil when the sentinel could not be started (fork failed); callers
    /// then remove their cgroups themselves, as always.
    public static func start(timeoutMillis: Int = 5000) -> CgroupSentinel? {
        var pid: pid_t = 0
        let fd = lv_sentinel_start(Int32(timeoutMillis), &pid)
        guard fd >= 0 else { return nil }
        return CgroupSentinel(fd: fd, pid: pid)
    }

    private init(fd: Int32, pid: pid_t) {
        self.fd = fd
        self.pid = pid
    }

    public func register(_ path: String) { send("+" + path + "\n") }
    public func forget(_ path: String) { send("-" + path + "\n") }

    // Each line is one write below PIPE_BUF: atomic, from any thread.
    private func send(_ line: String) {
        guard line.utf8.count < 512 else { return }
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }

    /// Lets the sentinel finish: it removes what is still registered (or
    /// finds it gone) and exits.
    public func close() {
        Glibc.close(fd)
    }
}

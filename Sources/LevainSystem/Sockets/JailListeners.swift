#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// Listening sockets inside a jail's network namespace, owned by the
/// supervisor.
///
/// The model gateway and the egress proxy answer on 127.0.0.1 inside the
/// jail, whose network namespace has nothing but loopback. Their sockets are
/// made here, by a short-lived thread of the supervisor that enters the
/// jail's network namespace (setns affects only the calling thread),
/// creates and binds them, and ends. The sockets stay in the jail's
/// namespace; the supervisor accepts on them. Nothing in the jail — the
/// harness included — holds, relays or can forge this traffic.
public enum JailListeners {
    public struct Failure: Error, CustomStringConvertible {
        public var step: String
        public var errno: Int32
        public var description: String { "\(step): \(String(cString: strerror(errno)))" }
    }

    private final class Job {
        let pidfd: Int32
        let ports: [Int]
        var fds: [Int32] = []
        var failure: Failure?
        init(pidfd: Int32, ports: [Int]) {
            self.pidfd = pidfd
            self.ports = ports
        }
    }

    /// One listening socket per port on 127.0.0.1 in the network namespace
    /// of the process behind `pidfd` (setns takes a pidfd since Linux 5.8).
    public static func make(pidfd: Int32, ports: [Int]) throws(Failure) -> [Int32] {
        let job = Job(pidfd: pidfd, ports: ports)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(job)
        let rc = pthread_create(&thread, nil, { arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
            JailListeners.work(job)
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw Failure(step: "pthread_create", errno: rc)
        }
        pthread_join(thread, nil)
        if let f = job.failure {
            for fd in job.fds { close(fd) }
            throw f
        }
        return job.fds
    }

    /// On its own thread: enter, make the sockets, and leave (the thread
    /// ends either way, so a failed return cannot leak the namespace).
    private static func work(_ job: Job) {
        guard lv_setns_net(job.pidfd) == 0 else {
            job.failure = Failure(step: "setns into the jail's network namespace", errno: errno)
            return
        }
        for port in job.ports {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { job.failure = Failure(step: "socket", errno: errno); return }
            job.fds.append(fd)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { job.failure = Failure(step: "bind 127.0.0.1:\(port) in the jail", errno: errno); return }
            guard listen(fd, 256) == 0 else { job.failure = Failure(step: "listen", errno: errno); return }
        }
    }
}

/// A pair of connected Unix sockets, close-on-exec.
public enum SocketPair {
    /// `type` is SOCK_STREAM (the protocol) or SOCK_SEQPACKET (descriptor
    /// passing, one message per send).
    public static func make(_ type: __socket_type) throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemError.syscall("socketpair")
        }
        return (fds[0], fds[1])
    }
}

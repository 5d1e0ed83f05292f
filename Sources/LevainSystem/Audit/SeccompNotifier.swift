#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import Synchronization

/// The supervisor's end of the audit layer: one thread that waits (epoll) on
/// the seccomp listeners of every audited jail, reads each notification's
/// caller and arguments, answers it (the call continues) and keeps an
/// `AuditedCall` for the log. No thread per jail, no descriptor of a
/// listener anywhere but here.
///
/// A jail hands its listener over a SOCK_SEQPACKET socket (`watch`): the
/// jail's setup sends it before the harness's exec, whose execve is itself
/// gated, so this thread must take it while the spawn is still waiting.
///
/// Bounded: at most `maxPending` calls wait for the log; beyond that a call
/// is still answered, and counted in a coalesced record (session, cgroup,
/// system call) instead of kept whole. A jail that floods notifications
/// slows itself (each of its calls waits for this thread), and the others
/// by its share of this thread's time.
public final class SeccompNotifier: @unchecked Sendable {
    public let maxPending: Int
    private let epfd: Int32
    private enum Entry { case handoff(AuditWatch), listener(AuditWatch) }
    private struct State {
        var entries: [Int32: Entry] = [:]
        var pending: [AuditedCall] = []
        var coalesced: [String: AuditedCall] = [:]
        var listeners: [String: Int] = [:]
        /// Listeners whose first call (the harness's own exec, made by the
        /// jail's setup right after it sent the listener) has been seen.
        var started: Set<Int32> = []
        /// Per session, where in `pending` its last record is (coalescing).
        var last: [String: Int] = [:]
    }
    private let state = Mutex(State())
    private let ready: @Sendable () -> Void

    /// `ready` is called (on the notifier's thread) when calls wait to be taken.
    public init(maxPending: Int = 8192, ready: @escaping @Sendable () -> Void) throws(SystemError) {
        self.maxPending = maxPending
        self.ready = ready
        epfd = lv_epoll_create()
        guard epfd >= 0 else { throw SystemError(.io, "epoll_create1: \(String(cString: strerror(errno)))") }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(self)
        let r = pthread_create(&thread, nil, { arg in
            let me = Unmanaged<SeccompNotifier>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box.toOpaque())
        guard r == 0 else {
            box.release()
            throw SystemError(.io, "cannot start the audit thread: \(String(cString: strerror(r)))")
        }
        pthread_detach(thread)
    }

    /// Takes over `socket` (one end of a SOCK_SEQPACKET pair whose other end
    /// the jail's setup sends its listener over). Closed once the listener
    /// arrived, or at EOF (the spawn failed).
    public func watch(handoff socket: Int32, _ watch: AuditWatch) throws(SystemError) {
        state.withLock { $0.entries[socket] = .handoff(watch) }
        guard add(socket) else {
            state.withLock { _ = $0.entries.removeValue(forKey: socket) }
            Glibc.close(socket)
            throw SystemError(.io, "epoll_ctl: \(String(cString: strerror(errno)))")
        }
    }

    /// Listeners open for a session (0 once all its jail's processes are gone).
    public func listenerCount(session: String) -> Int { state.withLock { $0.listeners[session] ?? 0 } }

    /// Everything waiting for the log, in the order the calls were received,
    /// then the coalesced counts.
    public func take() -> [AuditedCall] {
        state.withLock { s in
            var out = s.pending
            out.append(contentsOf: s.coalesced.values.sorted { $0.microseconds < $1.microseconds })
            s.pending = []
            s.coalesced = [:]
            s.last = [:]
            return out
        }
    }

    private func add(_ fd: Int32) -> Bool { lv_epoll_add(epfd, fd) == 0 }

    private func remove(_ fd: Int32) {
        _ = lv_epoll_del(epfd, fd)
        let entry = state.withLock { s -> Entry? in
            let e = s.entries.removeValue(forKey: fd)
            s.started.remove(fd)
            if case .listener(let w)? = e {
                s.listeners[w.session, default: 1] -= 1
                if s.listeners[w.session] == 0 { s.listeners[w.session] = nil }
            }
            return e
        }
        if entry != nil { Glibc.close(fd) }
    }

    private func loop() {
        var fds = [Int32](repeating: -1, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        while true {
            let n = lv_epoll_wait(epfd, &fds, &events, 64, -1)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            var any = false
            for i in 0..<Int(n) {
                let fd = fds[i]
                let flags = events[i]
                guard let entry = state.withLock({ $0.entries[fd] }) else { continue }
                switch entry {
                case .handoff(let watch):
                    receiveListener(fd, watch)
                case .listener(let watch):
                    if flags & LV_EPOLL_IN != 0 {
                        if handle(fd, watch) { any = true }
                    } else if flags & LV_EPOLL_HUP != 0 {
                        // Every process of the jail is gone.
                        remove(fd)
                    }
                }
            }
            if any { ready() }
        }
    }

    private func receiveListener(_ socket: Int32, _ watch: AuditWatch) {
        var label = [CChar](repeating: 0, count: 16)
        var fds: [Int32] = [-1]
        let got = lv_recv_descriptors(socket, &label, label.count, &fds, 1)
        remove(socket)
        guard got == 1, fds[0] >= 0 else { return }
        guard label.prefix(while: { $0 != 0 }).map({ UInt8(bitPattern: $0) }) == Array("audit".utf8) else {
            Glibc.close(fds[0])
            return
        }
        let listener = fds[0]
        state.withLock { s in
            s.entries[listener] = .listener(watch)
            s.listeners[watch.session, default: 0] += 1
        }
        if !add(listener) { remove(listener) }
    }

    /// One notification: read, answered, kept. True if a call was kept.
    private func handle(_ listener: Int32, _ watch: AuditWatch) -> Bool {
        var n = lv_notif()
        guard lv_notif_recv(listener, &n) == 0 else {
            // ENOENT: the caller died before we read it. Anything else:
            // the listener is broken; let its calls fail rather than hang.
            let e = errno
            if e != ENOENT && e != EINTR { remove(listener) }
            return false
        }
        let args = withUnsafeBytes(of: n.args) { Array($0.bindMemory(to: UInt64.self)) }
        let name = watch.names[AuditWatch.key(arch: n.arch, nr: n.nr)] ?? "syscall \(n.nr)"
        var call = AuditedCall(session: watch.session, microseconds: AuditedCall.now(), syscall: name,
                               hostPID: Int32(bitPattern: n.pid))
        var keep = true
        if let decoder = SyscallDecoder(pid: n.pid, arch: n.arch, nr: n.nr) {
            keep = decoder.decode(name, args, into: &call)
            decoder.close()
        } else {
            call.truncated = true
        }
        let who = SyscallDecoder.identity(call.hostPID)
        call.pid = who.pid
        // The parent for a new program (an exec): the other calls of the
        // process follow its exec's record (a status read less per call).
        if call.argv != nil, let parent = who.ppid {
            let p = SyscallDecoder.identity(parent)
            // The parent is in the jail when it is as deep in pid namespaces.
            call.ppid = p.nsDepth == who.nsDepth ? p.pid : 0
        }
        call.exe = SyscallDecoder.link("/proc/\(call.hostPID)/exe")

        call.cgroup = SyscallDecoder.cgroupLeaf(call.hostPID)
        // Only now, with everything read, is the caller known to be the one
        // that made this call (its pid not reused): it still waits on it.
        // Kept before the answer: once the call proceeds the process may
        // exit, and its run's end must find the call here.
        // A deny rule decides on what was read; the call then fails
        // without running, whatever its memory says afterwards.
        var error: Int32 = 0
        // The first call on a listener is the setup's exec of the harness
        // (nothing else of the jail exists yet): never refused.
        let first = state.withLock { $0.started.insert(listener).inserted }
        if keep, !first, let rule = watch.deny.first(where: { $0.matches(call) }) {
            error = rule.errno
            call.decision = "deny"
            call.rule = rule.name
        }
        let valid = lv_notif_id_valid(listener, n.id) == 1
        defer { _ = lv_notif_answer(listener, n.id, error) }
        // Refusals are always recorded; calls let through when `record`
        // names them and their paths are not ignored.
        guard valid, keep, error != 0 || (watch.record.contains(call.syscall) && !watch.ignores(call.paths)) else { return false }
        state.withLock { s in
            if watch.coalesce, let i = s.last[call.session], s.pending[i].isRepeated(by: call) {
                // The same call again from the same process: counted.
                s.pending[i].count += 1
            } else if s.pending.count < maxPending {
                s.pending.append(call)
                s.last[call.session] = s.pending.count - 1
            } else {
                let key = "\(call.cgroup ?? "")\u{0}\(call.syscall)\u{0}\(call.session)\u{0}\(call.rule ?? "")"
                if s.coalesced[key] != nil {
                    s.coalesced[key]!.count += 1
                } else {
                    var c = AuditedCall(session: call.session, microseconds: call.microseconds, syscall: call.syscall,
                                        hostPID: call.hostPID)
                    c.cgroup = call.cgroup
                    c.decision = call.decision
                    c.rule = call.rule
                    s.coalesced[key] = c
                }
            }
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainJSON
import LevainPolicy
import LevainSandbox
import LevainSessionLog
import LevainSystem
import Synchronization

/// `[audit]` for the sessions of a supervisor: the notifier thread that
/// answers every jail's gated calls, and the writer that turns what it kept
/// into `syscall.audited` events joined to their run (docs/AUDIT.md).
final class SyscallAudit: Sendable {
    let notifier: SeccompNotifier
    let log: SessionLog
    private let writer: Writer
    /// Per session: its tenant, and which run (and tool call) each run
    /// cgroup holds.
    private let sessions = Mutex<[String: (tenant: String, runs: [String: (run: String, call: String?)])]>([:])

    init(log: SessionLog) throws(SystemError) {
        let (stream, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let notifier = try SeccompNotifier(ready: { signal.yield() })
        self.notifier = notifier
        self.log = log
        writer = Writer()
        let writer = writer
        Task.detached { [weak self] in
            for await _ in stream {
                // A burst of calls goes into one commit: the writer waits a
                // little for more (a run's end and a session's close do not
                // wait: they flush).
                try? await Task.sleep(for: .milliseconds(20))
                guard let self else { return }
                await writer.drain(self)
            }
        }
    }

    /// A session's jail is about to be made with `audit`: its filter, and the
    /// socket end its setup sends the listener over (the caller puts it in
    /// the JailSpec and closes it after the spawn).
    func prepare(session: String, tenant: String, audit: Policy.Audit) throws(SupervisorError) -> (filter: BPFProgram, socket: Int32) {
        guard KernelFeatures.seccompUserNotification() else {
            throw SupervisorError(.spawnFailed, "the policy asks for [audit], and this kernel's seccomp has no user notification (levain doctor: seccomp user-notification no); remove [audit] or run on Linux 5.5 or later")
        }
        let filter: BPFProgram
        do { filter = try AuditFilter.compile(audit, file: "[audit]") } catch {
            throw SupervisorError(.invalid, "the policy's [audit]: \(error)", field: "policy")
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SupervisorError(.spawnFailed, "the audit socket: \(String(cString: strerror(errno)))")
        }
        let notifier = self.notifier
        sessions.withLock { s in
            // Sessions that ended without a close (failed, interrupted) are
            // dropped once their jails are gone, so this stays bounded.
            if s.count >= 1024 {
                for id in s.keys where id != session && notifier.listenerCount(session: id) == 0 { s[id] = nil }
            }
            if s[session] == nil { s[session] = (tenant, [:]) }
        }
        do {
            try notifier.watch(handoff: pair[0], AuditWatch(session: session, names: AuditFilter.names(audit), ignorePaths: audit.ignorePaths,
                                                          record: Set(audit.record), deny: audit.deny, coalesce: audit.coalesce))
        } catch {
            Glibc.close(pair[1])
            throw SupervisorError(.spawnFailed, "the audit thread: \(error)")
        }
        return (filter, pair[1])
    }

    /// The run a run cgroup of `session` holds (cgroup names are not reused
    /// within a session).
    func bind(session: String, cgroup: String, run: String, call: String?) {
        sessions.withLock { s in
            guard s[session] != nil else { return }
            if s[session]!.runs.count >= 4096 { s[session]!.runs.removeAll() }
            s[session]!.runs[cgroup] = (run, call)
        }
    }

    /// The session is gone for good (closed).
    func forget(session: String) {
        sessions.withLock { _ = $0.removeValue(forKey: session) }
    }

    /// Writes what the notifier kept, in order; returns once it is logged.
    /// A run's end calls it before `run.finished`, so that every call the
    /// run made is in the log before its end.
    func flush() async { await writer.drain(self) }

    func events(_ calls: [AuditedCall]) -> [NewEvent] {
        let known = sessions.withLock { $0 }
        return calls.map { c in
            var p: JSONObject = [AuditAttribute.syscall: .string(c.syscall), AuditAttribute.decision: .string(c.decision)]
            if let v = c.rule { p[Attribute.rule] = .string(v) }
            if let v = c.pid { p[AuditAttribute.pid] = .int(Int64(v)) }
            if let v = c.ppid { p[AuditAttribute.ppid] = .int(Int64(v)) }
            if let v = c.exe { p[AuditAttribute.exe] = .string(v) }
            if let v = c.paths.first { p[AuditAttribute.path] = .string(v) }
            if c.paths.count > 1 { p[AuditAttribute.to] = .string(c.paths[1]) }
            if let v = c.argv { p[AuditAttribute.argv] = .array(v.map { .string($0) }) }
            if let v = c.flags { p[AuditAttribute.flags] = .int(Int64(bitPattern: v)) }
            if let v = c.address { p[AuditAttribute.address] = .string(v) }
            if let v = c.fd { p[AuditAttribute.fd] = .int(Int64(v)) }
            if let v = c.target { p[AuditAttribute.target] = .int(v) }
            if let v = c.signal { p[AuditAttribute.signal] = .int(Int64(v)) }
            if let v = c.request { p[AuditAttribute.request] = .int(v) }
            if c.truncated { p[AuditAttribute.truncated] = true }
            if c.count != 1 { p[AuditAttribute.count] = .int(Int64(c.count)) }
            let session = known[c.session]
            let run = c.cgroup.flatMap { session?.runs[$0] }
            if let call = run?.call { p[Attribute.genAIToolCallId] = .string(call) }
            return NewEvent(sessionID: c.session, runID: run?.run, tenant: session?.tenant ?? "",
                            type: EventType.syscallAudited, payload: p,
                            time: LogTimestamp(microsecondsSinceEpoch: c.microseconds))
        }
    }

    /// One drain at a time, each after the one before it: the log gets the
    /// calls in the order the notifier received them.
    actor Writer {
        private var last: Task<Void, Never>?

        func drain(_ audit: SyscallAudit) async {
            let previous = last
            let task = Task {
                await previous?.value
                let calls = audit.notifier.take()
                guard !calls.isEmpty else { return }
                // In batches, each one durable commit.
                var events = audit.events(calls)[...]
                while !events.isEmpty {
                    let batch = Array(events.prefix(512))
                    events = events.dropFirst(batch.count)
                    do {
                        _ = try await audit.log.append(batch)
                    } catch {
                        // The log refused (a full disk, a broken file): the
                        // operator hears of it; the records are not kept.
                        var line = Array("levain serve: \(batch.count) syscall.audited records could not be logged: \(error)\n".utf8)
                        _ = write(2, &line, line.count)
                    }
                }
            }
            last = task
            await task.value
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainAPI
import LevainPolicy
import LevainProtocol
import LevainProtocolNIO
import LevainRuns
import LevainSandbox
import LevainSessionLog
import LevainSystem
import NIOCore
import Synchronization

/// Why a run attempt did not get its process started.
enum StartFailure: Error {
    /// The command itself: not found (127) or not executable (126). Final.
    case exec(code: Int32, message: String)
    /// Infrastructure: the jail, the harness, the cgroup. Retried.
    case infrastructure(String)
}

/// How a run attempt ended.
enum AttemptEnd: Sendable {
    case exited(ProcessOutcome, limitsHit: [String], usage: CgroupUsage?)
    case cancelled(ProcessOutcome?)
    case timedOut(ProcessOutcome?)
    /// The session failed under the run (violation, harness died) after it started.
    case sessionFailed(String)
}

/// A run cgroup made ahead, handed between threads.
struct SpareCgroup: @unchecked Sendable {
    var group: RunCgroup
    var fds: [Int32]
}

/// Whether an attempt's stdout and stderr have ended (the harness's empty
/// DATA, or its connection closing). Not the run's spools: a run's output
/// ends with the run, and an attempt whose start failed is followed by a
/// retry that writes on into the same spools.
final class AttemptStreams: Sendable {
    private struct State {
        var ended = [false, false]
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Each waiter's deadline; cancelled when the streams end first, so
        /// a run that drains at once leaves no sleeping task behind.
        var timers: [Int: Task<Void, Never>] = [:]
        var next = 0
    }
    private let state = Mutex(State())

    static let stdout = 0, stderr = 1

    func end(_ which: Int) {
        let (waiters, timers): ([CheckedContinuation<Void, Never>], [Task<Void, Never>]) = state.withLock { s in
            s.ended[which] = true
            guard !s.ended.contains(false) else { return ([], []) }
            defer { s.waiters = [:]; s.timers = [:] }
            return (Array(s.waiters.values), Array(s.timers.values))
        }
        for t in timers { t.cancel() }
        for w in waiters { w.resume() }
    }

    /// Waits until both streams ended or `timeout` seconds passed; which ended.
    func wait(timeout: Double) async -> [Bool] {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let id: Int? = state.withLock { s in
                if !s.ended.contains(false) { return nil }
                s.next += 1
                s.waiters[s.next] = c
                return s.next
            }
            guard let id else { c.resume(); return }
            let timer = Task {
                try? await Task.sleep(nanoseconds: UInt64(min(max(0, timeout), 1e9) * 1e9))
                self.state.withLock { s in
                    s.timers[id] = nil
                    return s.waiters.removeValue(forKey: id)
                }?.resume()
            }
            state.withLock { s in
                // Ended meanwhile: the waiter is already resumed.
                if s.waiters[id] != nil { s.timers[id] = timer } else { timer.cancel() }
            }
        }
        return state.withLock { $0.ended }
    }
}

/// One live run inside a session.
final class LiveRun: @unchecked Sendable {
    let state: RunState
    let cgroup: RunCgroup?
    let streams = AttemptStreams()
    private let lock = Mutex<(outcome: ProcessOutcome?, ended: AttemptEnd?, waiter: CheckedContinuation<AttemptEnd, Never>?)>((nil, nil, nil))

    init(state: RunState, cgroup: RunCgroup?) {
        self.state = state
        self.cgroup = cgroup
    }

    func finish(_ end: AttemptEnd) {
        let waiter = lock.withLock { s -> CheckedContinuation<AttemptEnd, Never>? in
            guard s.ended == nil else { return nil }
            s.ended = end
            let w = s.waiter
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: end)
    }

    private let timeoutFlag = Mutex(false)

    /// The run's wall-clock limit passed (set before its cgroup is killed).
    func markTimedOut() { timeoutFlag.withLock { $0 = true } }
    var timedOut: Bool { timeoutFlag.withLock { $0 } }

    func exited(_ outcome: ProcessOutcome) {
        lock.withLock { $0.outcome = outcome }
    }

    var outcome: ProcessOutcome? { lock.withLock { $0.outcome } }

    func wait() async -> AttemptEnd {
        await withCheckedContinuation { c in
            let done = lock.withLock { s -> AttemptEnd? in
                if let e = s.ended { return e }
                s.waiter = c
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }
}

/// A session's runs: started in its jail (through the harness), waited
/// for, signalled; their cgroups made ahead; the harness's events.
extension SessionHost {
    // MARK: runs

    /// Starts the run's process; returns once it is running (or failed to start).
    func start(_ run: RunState, attempt: Int) async throws(StartFailure) -> LiveRun {
        guard phase == .ready, let connection else { throw .infrastructure("the session is not ready (\(phase))") }
        // The run's own cgroup, inside the session's: the one made ahead
        // (after the previous run started), else a new one.
        var runGroup: RunCgroup? = nil
        var fds: [Int32] = []
        if cgroup != nil {
            if let spare = spareCgroup {
                spareCgroup = nil
                // Its placement descriptors are opened now, not kept open
                // while the session idles (four on cgroup v1: an idle
                // session held 13 descriptors, and 2,000 of them did not fit
                // in 20,000 open files).
                do throws(SystemError) {
                    (runGroup, fds) = (spare.group, spare.fds.isEmpty ? try spare.group.placementFileDescriptors() : spare.fds)
                } catch {
                    context.removeCgroup(spare.group)
                    throw .infrastructure("the run's cgroup: \(error)")
                }
            } else {
                do throws(SystemError) {
                    let made = try makeRunCgroup()
                    (runGroup, fds) = (made.group, made.fds)
                } catch {
                    throw .infrastructure("the run's cgroup: \(error)")
                }
            }
        }
        defer { refillSpareCgroupLater() }
        defer { for fd in fds { Glibc.close(fd) } }
        if !fds.isEmpty {
            let sent = fds.withUnsafeBufferPointer { lv_send_descriptors(descriptorFD, run.id, $0.baseAddress, $0.count) }
            guard sent == 0 else {
                if let g = runGroup { context.removeCgroup(g) }
                throw .infrastructure("sending the cgroup to the harness: \(String(cString: strerror(errno)))")
            }
        }
        run.mark("cgroup")
        let stdoutStream = nextStream, stderrStream = nextStream + 1
        let stdinStream: StreamID? = (run.spec.stdin != nil || run.spec.stdinStream) ? nextStream + 2 : nil
        nextStream += 3
        let out = run.stdout, err = run.stderr
        let liveRun = LiveRun(state: run, cgroup: runGroup)
        // The audit layer names a call's run by the cgroup its caller is in.
        if policy.audit.isEnabled, let leaf = runGroup?.paths.first?.split(separator: "/").last {
            context.audit?.bind(session: id, cgroup: String(leaf), run: run.id, call: run.toolCall)
        }
        // The streams' ends are this attempt's; the spools end with the run
        // (wait, finalize): a start that fails here, its connection closing,
        // leaves them open for the retry.
        let streams = liveRun.streams
        connection.receive(stream: stdoutStream, sink: { bytes in _ = bytes.withUnsafeBytes { out.append($0) } },
                           end: { streams.end(AttemptStreams.stdout) })
        connection.receive(stream: stderrStream, sink: { bytes in _ = bytes.withUnsafeBytes { err.append($0) } },
                           end: { streams.end(AttemptStreams.stderr) })
        live[run.id] = liveRun
        exits?.runStarted(run.id)
        let start = RunStart(
            run: LevainProtocol.RunID(run.id)!, argv: run.spec.argv, env: environment(for: run),
            cwd: run.spec.cwd ?? (policy.filesystem.workspace ? "/workspace" : "/"),
            stdin: stdinStream, stdout: stdoutStream, stderr: stderrStream, cgroup: !fds.isEmpty,
            rlimits: rlimits(for: run.spec), pty: run.spec.pty)
        let response: Response
        startingRuns.insert(run.id)
        do {
            response = try await connection.request(.runStart(start))
            startingRuns.remove(run.id)
        } catch {
            startingRuns.remove(run.id)
            live[run.id] = nil
            exits?.runEnded(run.id)
            connection.abandon(stream: stdoutStream)
            connection.abandon(stream: stderrStream)
            if let g = runGroup { context.removeCgroup(g) }
            throw .infrastructure("the harness: \(error)")
        }
        guard response.ok else {
            live[run.id] = nil
            exits?.runEnded(run.id)
            connection.abandon(stream: stdoutStream)
            connection.abandon(stream: stderrStream)
            if let g = runGroup { context.removeCgroup(g) }
            let code = response.error?.code ?? "EIO"
            let message = response.error?.message ?? "run.start failed"
            if code == "ENOENT" || code == "ENOTDIR" { throw .exec(code: 127, message: message) }
            // E2BIG: the kernel refused the arguments or environment as too
            // long; the same command would fail the same way on a retry.
            if code == "EACCES" || code == "ENOEXEC" || code == "EISDIR" || code == "EPERM" || code == "E2BIG" {
                throw .exec(code: 126, message: message)
            }
            if code == "EBADCWD" { throw .exec(code: 125, message: message) }
            throw .infrastructure("run.start: \(code): \(message)")
        }
        if let stdinStream {
            if let bytes = run.spec.stdin {
                Task {
                    try? await connection.send(bytes, on: stdinStream)
                    try? await connection.end(stream: stdinStream)
                }
            } else {
                run.setStdinSink { bytes in
                    if let bytes { try await connection.send(bytes, on: stdinStream) } else { try await connection.end(stream: stdinStream) }
                }
            }
        }
        // Queued before the session was paused: frozen as soon as it runs.
        if isPaused, let g = runGroup { try? g.writeFreezer(true) }
        // Cancel: the run's cgroup dies at once, without asking the harness.
        run.setCancelHandler { [weak liveRun] in
            liveRun?.cgroup?.kill(timeoutMillis: 500)
            if liveRun?.cgroup == nil { liveRun?.finish(.cancelled(nil)) }
        }
        return liveRun
    }

    /// A run's cgroup (a child of the session's, named by a counter: it is
    /// made before the run it will hold is known) and its placement fds.
    func makeRunCgroup() throws(SystemError) -> (group: RunCgroup, fds: [Int32]) {
        guard let cgroup else { throw SystemError(.unsupported, "the session has no cgroup") }
        runCgroupCounter += 1
        return try Self.makeRunCgroup(in: cgroup, name: "run-\(runCgroupCounter)", context: context)
    }

    static func makeRunCgroup(in cgroup: RunCgroup, name: String, context: SupervisorContext) throws(SystemError) -> (group: RunCgroup, fds: [Int32]) {
        let g = try context.makeChildCgroup(of: cgroup, name: name)
        do throws(SystemError) {
            return (g, try g.placementFileDescriptors())
        } catch {
            context.removeCgroup(g)
            throw error
        }
    }

    /// Makes the next run's cgroup off this actor (cgroupfs mkdirs take a
    /// fraction of a millisecond the actor should spend on events).
    func refillSpareCgroupLater() {
        guard let cgroup, spareCgroup == nil, !refillScheduled, phase == .ready else { return }
        refillScheduled = true
        runCgroupCounter += 1
        let name = "run-\(runCgroupCounter)", ctx = context
        Task.detached { [weak self] in
            let made = await ctx.blocking { () -> SpareCgroup? in
                guard let g = try? ctx.makeChildCgroup(of: cgroup, name: name) else { return nil }
                return SpareCgroup(group: g, fds: [])
            }
            await self?.setSpare(made.map { ($0.group, $0.fds) })
        }
    }

    func setSpare(_ made: (group: RunCgroup, fds: [Int32])?) {
        refillScheduled = false
        guard let made else { return }
        guard phase == .ready, spareCgroup == nil else {
            for fd in made.fds { Glibc.close(fd) }
            context.removeCgroup(made.group)
            return
        }
        spareCgroup = made
    }

    /// Drops the spare cgroup (the session is ending).
    func dropSpareCgroup() {
        guard let spare = spareCgroup else { return }
        spareCgroup = nil
        for fd in spare.fds { Glibc.close(fd) }
        context.removeCgroup(spare.group)
    }

    /// How long a finished run's output may take to arrive from the harness.
    static let outputDrainSeconds = 5.0

    /// Waits for the run's end: its exit, its timeout, a cancel, or the session's failure.
    func wait(_ liveRun: LiveRun, timeout: Double?) async -> AttemptEnd {
        let run = liveRun.state
        var timer: Task<Void, Never>? = nil
        if let timeout {
            timer = Task {
                try? await Task.sleep(nanoseconds: UInt64(min(max(0, timeout), 1e9) * 1e9))
                if Task.isCancelled { return }
                // Marked first: the exit the kill causes is a timeout's.
                liveRun.markTimedOut()
                liveRun.cgroup?.kill(timeoutMillis: 500)
                liveRun.finish(.timedOut(liveRun.outcome))
            }
        }
        let end = await liveRun.wait()
        run.mark("exit-event")
        timer?.cancel()
        run.setCancelHandler(nil)
        run.setStdinSink(nil)
        // Nothing of a finished run lingers: its leftovers die, which also
        // closes the output pipes they held.
        if let g = liveRun.cgroup {
            g.kill(timeoutMillis: 1000)
        }
        // Let the output streams drain: what the run wrote before it ended
        // is still on its way from the harness. Bounded: a harness that
        // never ends a stream (the run's processes are dead, so only the
        // harness can hold it open) is cut off, and the output marked
        // truncated, not passed off as whole.
        let ended = await liveRun.streams.wait(timeout: Self.outputDrainSeconds)
        run.mark("drained")
        run.stdout.finish(cut: !ended[AttemptStreams.stdout])
        run.stderr.finish(cut: !ended[AttemptStreams.stderr])
        live[run.id] = nil
        exits?.runEnded(run.id)
        var result = end
        if case .exited(let outcome, _, _) = end, let g = liveRun.cgroup {
            let usage = g.usage()
            var which: [String] = []
            if usage.oomKills > 0 { which.append("memory") }
            if usage.pidsLimitHits > 0 { which.append("pids") }
            if outcome.signal == SIGXCPU { which.append("cpu_time") }
            if outcome.signal == SIGXFSZ { which.append("file_size") }
            result = .exited(outcome, limitsHit: which, usage: usage)
        }
        // Empty now; its removal (rmdir in each hierarchy) is off the run's path.
        if let g = liveRun.cgroup {
            let ctx = context
            Task.detached { await ctx.blocking { ctx.removeCgroup(g) } }
        }
        return result
    }

    /// Sends a signal to a live run's process (the harness delivers it to
    /// the run's process group).
    func signal(run id: String, signal: Int32) async throws(SupervisorError) {
        try await ask(run: id, field: "signal") { .runSignal(RunSignal(run: $0, signal: signal)) }
    }

    /// A new size for a live run's terminal (409 for a run without one).
    func resize(run id: String, to size: TerminalSize) async throws(SupervisorError) {
        try await ask(run: id, field: "run") { .runResize(RunResize(run: $0, size: size)) }
    }

    /// A request about a live run to the harness; its refusal is a 409
    /// naming `field`.
    private func ask(run id: String, field: String, _ operation: (LevainProtocol.RunID) -> Operation) async throws(SupervisorError) {
        guard live[id] != nil, let connection, let runID = LevainProtocol.RunID(id) else {
            throw SupervisorError(.conflict, "run \(id) has no live process", field: "run")
        }
        let op = operation(runID)
        let response: Response
        do {
            response = try await connection.request(op)
        } catch {
            throw SupervisorError(.unavailable, "the session's harness: \(error)", cause: error)
        }
        guard response.ok else {
            throw SupervisorError(.conflict, "\(op.kind.rawValue): \(response.error?.code ?? "EIO"): \(response.error?.message ?? "failed")", field: field)
        }
    }

    /// The policy's variables, then where the gateway and the proxy are,
    /// then the run's own (a run may override anything).
    func environment(for run: RunState) -> [String] {
        let spec = run.spec
        var env = policy.environment.set
        for (k, v) in exits?.environment(run: run.id) ?? [] {
            env.removeAll { $0.0 == k }
            env.append((k, v))
        }
        // A terminal run says what terminal it has (unless told otherwise).
        if spec.pty != nil && !env.contains(where: { $0.0 == "TERM" }) && spec.env["TERM"] == nil {
            env.append(("TERM", "xterm-256color"))
        }
        for (k, v) in spec.env.sorted(by: { $0.key < $1.key }) {
            env.removeAll { $0.0 == k }
            env.append((k, v))
        }
        return env.map { "\($0.0)=\($0.1)" }
    }

    func rlimits(for spec: RunSpec) -> ResourceLimits {
        var r = ResourceLimits()
        r.core = LevainProtocol.ResourceLimit(soft: policy.limits.core, hard: policy.limits.core)
        if let v = spec.fileSize ?? policy.limits.fileSize { r.fsize = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        if let v = policy.limits.openFiles { r.nofile = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        if let v = spec.cpuTime ?? policy.limits.cpuTime { r.cpu = LevainProtocol.ResourceLimit(soft: v, hard: v + 1) }
        if let v = policy.limits.stack { r.stack = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        return r
    }

    func handle(_ event: Event) async {
        switch event {
        case .processExited(let e):
            guard let liveRun = live[e.run.description] else { return }
            let outcome = ProcessOutcome(code: e.code, signal: e.signal, userMicros: e.userMicros,
                                         systemMicros: e.systemMicros, maxRSSKilobytes: e.maxRSSKilobytes)
            liveRun.exited(outcome)
            if liveRun.state.cancelRequested {
                liveRun.finish(.cancelled(outcome))
            } else if liveRun.timedOut {
                liveRun.finish(.timedOut(outcome))
            } else {
                liveRun.finish(.exited(outcome, limitsHit: [], usage: nil))
            }
        case .processStarted:
            break
        case .harnessLog(let log):
            _ = try? await context.log.append(NewEvent(sessionID: id, tenant: tenant, type: EventType.harnessLog,
                                                      payload: ["level": .string(log.level.rawValue), "message": .string(log.message)]))
        }
    }

    func connectionEnded(_ end: HarnessEnd) async {
        // During the handshake open() is in charge: it records the end,
        // tears down and reports (a violation is not retried).
        guard phase == .ready else { return }
        let reason: String
        switch end {
        case .violation(let v):
            reason = "protocol violation: \(v)"
            _ = try? await context.log.record(
                [NewEvent(sessionID: id, tenant: tenant, type: EventType.protocolViolation,
                          payload: ["code": .string(v.code.rawValue), "message": .string(v.message), "phase": "session"])],
                and: [])
        case .closed:
            guard !closing else { return }
            reason = "the harness died"
            _ = try? await context.log.append(NewEvent(sessionID: id, tenant: tenant, type: EventType.harnessDied,
                                                      payload: ["phase": "session"]))
        }
        phase = .failed(reason)
        for (_, liveRun) in live { liveRun.finish(.sessionFailed(reason)) }
        await teardown()
        await context.sessionFailed(self, reason: reason)
    }
}

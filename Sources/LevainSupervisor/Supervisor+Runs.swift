#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainClock
import LevainJSON
import LevainPolicy
import LevainProtocol
import LevainProxy
import LevainRuns
import LevainSandbox
import LevainSessionLog
import LevainSystem

/// Runs: submitted, queued fairly, executed in their session's jail with
/// retries, finalized durably; read, cancelled and signalled.
extension Supervisor {
    // MARK: runs

    /// Queues a run; returns it and whether it is new (false: an earlier
    /// run with the same idempotency key, returned instead of a second one).
    /// `.written` when the caller tells no one the run was accepted and
    /// answers only with its end (`wait: true`): `run.queued` is then in
    /// the log before the run starts, made durable by the fsync of
    /// `run.finished`, so an exec waits for one fsync instead of two.
    public func submitRun(session id: String, _ spec: RunSpec, arrival: UInt64?,
                          durability: SessionLog.Durability) async throws(SupervisorError) -> (RunRecord, Bool) {
        guard isAccepting else { throw SupervisorError(.unavailable, "the supervisor is shutting down") }
        let tIn = RunState.tracing ? Monotonic.nanos() : 0
        // A retried submission returns the first run (whatever became of
        // the session since).
        if let key = spec.idempotencyKey, let existing = try? log.run(session: id, idempotencyKey: key) {
            return (existing, false)
        }
        try admit()
        // An open session's tenant is in memory; the log is read otherwise.
        let tenant: String
        if let host = hosts[id], await host.isReady {
            if host.isPaused { throw SessionHost.pausedError(id) }
            tenant = host.tenant
        } else {
            let session = try session(id)
            guard session.status != .closed else { throw SupervisorError(.conflict, "session \(id) is closed", field: "session") }
            guard session.kind == .session else {
                throw SupervisorError(.conflict, "session \(id) is a one-shot levain run's; runs go to sessions of levain serve", field: "session")
            }
            tenant = session.tenant
        }
        let tSession = RunState.tracing ? Monotonic.nanos() : 0
        let runID = LevainSandbox.RunID.make()
        let record = RunRecord(id: runID, sessionID: id, tenant: tenant, status: .queued, request: spec.stored,
                               idempotencyKey: spec.idempotencyKey, retryPolicy: spec.retry)
        let tLog = RunState.tracing ? Monotonic.nanos() : 0
        // Known in memory before the log write ends: a concurrent submit
        // with the same key finds the run in the log once it is written,
        // and must then find it live here too (to wait for it).
        let state = makeRunState(record, spec: spec)
        do {
            _ = try await log.record([RunEvents(sessionID: id, runID: runID, tenant: tenant).queued(spec.stored)],
                                     and: [.insertRun(record)], durability: durability)
        } catch where error.code == .duplicateIdempotencyKey {
            runs[runID] = nil
            if let key = spec.idempotencyKey, let existing = try? log.run(session: id, idempotencyKey: key) { return (existing, false) }
            throw SupervisorError(.internalError, "\(error)", cause: error)
        } catch {
            runs[runID] = nil
            throw logWriteError(error, "the session log")
        }
        let tLogged = RunState.tracing ? Monotonic.nanos() : 0
        if RunState.tracing {
            if let arrival { state.mark("http", at: arrival) }
            state.mark("actor", at: tIn)
            state.mark("session", at: tSession)
            state.mark("log", at: tLog)
            state.mark("logged", at: tLogged)
        }
        state.mark("queued")
        launch(state)
        return (record, true)
    }

    /// A run whose acceptance is durable before this returns.
    public func submitRun(session id: String, _ spec: RunSpec, arrival: UInt64? = nil) async throws(SupervisorError) -> (RunRecord, Bool) {
        try await submitRun(session: id, spec, arrival: arrival, durability: .durable)
    }

    func makeRunState(_ record: RunRecord, spec: RunSpec) -> RunState {
        // The run's directory is made with its first byte of output.
        let dir = config.stateDirectory + "/runs/" + record.id
        let state = RunState(record: record, spec: spec, outputDirectory: dir, maxOutput: config.maxOutputBytes)
        runs[record.id] = state
        return state
    }

    func launch(_ state: RunState) {
        let task = Task { [weak self] in
            guard let self else { return }
            await self.execute(state)
            await self.finished(state.id)
        }
        tasks[state.id] = task
        state.setCancelHandler { task.cancel() }
    }

    func finished(_ id: String) {
        tasks[id] = nil
        // Keep a bounded number of finished runs in memory (their output stays on disk).
        if runs.count > 4096 {
            for (rid, r) in runs where r.record.status.isTerminal { runs[rid] = nil; if runs.count <= 2048 { break } }
        }
    }

    /// A run from the queue to its end: a slot, its session, its process,
    /// retries of infrastructure failures with backoff, the record.
    func execute(_ run: RunState) async {
        run.mark("task")
        guard await slots.acquire(session: run.sessionID, tenant: run.tenant) else {
            await finalize(run, status: .cancelled, outcome: nil, limits: [], error: "cancelled while queued")
            return
        }
        defer { Task { [slots] in await slots.release(session: run.sessionID, tenant: run.tenant) } }
        var attempt = run.record.attempt
        var lastReason = ""
        var tries = 0
        attempts: for _ in 1...max(1, config.retryAttempts) {
            tries += 1
            if run.cancelRequested {
                await finalize(run, status: .cancelled, outcome: nil, limits: [], error: "cancelled before it started")
                return
            }
            let host: SessionHost
            do {
                host = try await self.host(for: run.sessionID)
            } catch {
                if error.code == .conflict || error.code == .notFound || error.code == .invalid {
                    await finalize(run, status: .error, outcome: nil, limits: [], error: error.message)
                    return
                }
                lastReason = error.message
                if !(await retryAfter(run, &attempt, reason: lastReason)) { break attempts }
                continue attempts
            }
            run.mark("slot+host")
            // At most 64 live runs per session (the protocol's limit).
            guard await host.runSlots.acquire() else {
                await finalize(run, status: .cancelled, outcome: nil, limits: [], error: "cancelled while queued")
                return
            }
            let sessionSlot = host.runSlots
            defer { Task { await sessionSlot.release() } }
            run.update { $0.status = .starting; $0.attempt = attempt }
            let liveRun: LiveRun
            do {
                liveRun = try await host.start(run, attempt: attempt)
            } catch {
                switch error {
                case .exec(let code, let message):
                    // No process of the command ran: no process.exited, but
                    // the exit status `levain run` would give (126, 127, 125).
                    await finalize(run, status: .failed, outcome: nil, limits: [], error: message, exitStatus: code)
                    return
                case .infrastructure(let reason):
                    lastReason = reason
                    if !(await retryAfter(run, &attempt, reason: reason)) { break attempts }
                    continue attempts
                }
            }
            run.mark("started")
            let started = LogTimestamp.now()
            run.update { $0.status = .running; $0.startedAt = started }
            // Not waited for, nor fsynced on its own: the process already
            // runs, and the run's later events are queued behind this one
            // (one writer, in order), so the durable write that reports the
            // run's end makes this durable too.
            log.enqueue(
                [RunEvents(sessionID: run.sessionID, runID: run.id, tenant: run.tenant).started(attempt: attempt, argv: run.spec.argv)],
                and: [.updateRun(RunUpdate(id: run.id, status: .running, startedAt: started, attempt: attempt))],
                durability: .written)
            run.mark("started-logged")
            let policyTimeout = host.policy.limits.timeout
            let end = await host.wait(liveRun, timeout: run.spec.timeout ?? policyTimeout)
            run.mark("ended")
            switch end {
            case .exited(let outcome, let limits, _):
                let ok = outcome.code == 0
                await finalize(run, status: ok ? .succeeded : .failed, outcome: outcome, limits: limits, error: nil)
            case .cancelled(let outcome):
                await finalize(run, status: .cancelled, outcome: outcome, limits: [], error: "cancelled")
            case .timedOut(let outcome):
                await finalize(run, status: .timedOut, outcome: outcome, limits: ["timeout"], error: "wall-clock timeout")
            case .sessionFailed(let reason):
                // It had started: retrying could run it twice.
                await finalize(run, status: .error, outcome: nil, limits: [], error: reason)
            }
            return
        }
        await finalize(run, status: .error, outcome: nil, limits: [], error: "gave up after \(tries) attempt(s): \(lastReason)")
    }

    func retryAfter(_ run: RunState, _ attempt: inout Int, reason: String) async -> Bool {
        guard attempt < run.record.attempt + config.retryAttempts - 1 else { return false }
        _ = try? await log.append(NewEvent(sessionID: run.sessionID, runID: run.id, tenant: run.tenant, type: EventType.runRetry,
                                           payload: ["attempt": JSONValue(attempt), "reason": .string(reason)]))
        await backoff(attempt)
        attempt += 1
        return true
    }

    func finalize(_ run: RunState, status: RunStatus, outcome: ProcessOutcome?, limits: [String], error: String?,
                          exitStatus startExit: Int32? = nil) async {
        // A run that never got a process has no output coming: end its
        // streams so readers following them stop.
        run.stdout.finish()
        run.stderr.finish()
        // Every audited call of the run before its end (its processes are
        // gone, so the notifier holds all of them).
        if let host = hosts[run.sessionID], host.policy.audit.isEnabled { await context.audit?.flush() }
        let finished = LogTimestamp.now()
        let writer = RunEvents(sessionID: run.sessionID, runID: run.id, tenant: run.tenant)
        var events: [NewEvent] = []
        if let o = outcome {
            events.append(writer.processExited(code: o.code, signal: o.signal, userMicros: o.userMicros, systemMicros: o.systemMicros,
                                               maxRSSKilobytes: o.maxRSSKilobytes))
        }
        for l in limits { events.append(writer.limitHit(l)) }
        var end = RunEvents.Finished(status: status, exitStatus: startExit ?? Self.exitStatus(status: status, outcome: outcome),
                                     hadProcess: outcome != nil, exitCode: outcome?.code, signal: outcome?.signal, error: error)
        end.stdoutBytes = run.stdout.length
        end.stderrBytes = run.stderr.length
        end.outputTruncated = run.stdout.isTruncated || run.stderr.isTruncated
        for (name, spool) in [("stdout", run.stdout), ("stderr", run.stderr)] {
            // Not kept: the state directory could not take it.
            if let loss = spool.loss { end.lost.append((name, loss.bytes, String(cString: strerror(loss.errno)))) }
        }
        if let started = run.record.startedAt {
            end.durationMillis = Double(finished.microsecondsSinceEpoch - started.microsecondsSinceEpoch) / 1e3
        }
        events.append(writer.finished(end))
        let code: Int32? = outcome?.code ?? startExit
        let signal: Int32? = outcome?.signal ?? (status == .timedOut || status == .cancelled ? SIGKILL : nil)
        // Durable before anyone is told: until the log takes it (a full
        // disk), the run reads as running, as the log says.
        guard await recordDurably(events, [.updateRun(RunUpdate(id: run.id, status: status, exitCode: code, signal: signal,
                                                                error: error, finishedAt: finished))]) else {
            run.releaseWaiters()
            run.wakeStdinWaiters()
            return
        }
        run.update {
            $0.status = status
            $0.exitCode = code
            $0.signal = signal
            $0.error = error
            $0.finishedAt = finished
        }
        run.mark("finalized")
        run.printMarks()
        run.wakeStdinWaiters()
    }

    /// The status `levain run` exits with for such an end.
    static func exitStatus(status: RunStatus, outcome: ProcessOutcome?) -> Int32 {
        APIJSON.exitStatus(status: status, code: outcome?.code, signal: outcome?.signal)
    }

    public func run(_ id: String) throws(SupervisorError) -> RunRecord {
        if let state = runs[id] { return state.record }
        guard let record = try? log.run(id: id) else { throw SupervisorError(.notFound, "no run \(id)", field: "run") }
        return record
    }

    public func runs(session: String?, status: RunStatus?) throws(SupervisorError) -> [RunRecord] {
        do { return try log.runs(session: session, status: status) } catch { throw SupervisorError(.internalError, "\(error)", cause: error) }
    }

    public func runState(_ id: String) throws(SupervisorError) -> RunState {
        if let state = runs[id] { return state }
        let record = try run(id)
        // In flight but not ours (a one-shot levain run): nothing here will
        // see it end.
        guard record.status.isTerminal else {
            throw SupervisorError(.conflict, "run \(id) is not this supervisor's live run (a one-shot levain run's); follow it with GET /v1/log/events?run=\(id)", field: "run")
        }
        // A run from an earlier supervisor: its output, finished, from disk.
        let spec = try RunSpec(record: record)
        let state = RunState(record: record, spec: spec, outputDirectory: config.stateDirectory + "/runs/" + id, maxOutput: config.maxOutputBytes)
        state.stdout.adoptExisting()
        state.stderr.adoptExisting()
        return state
    }

    public func cancelRun(_ id: String) async throws(SupervisorError) -> RunRecord {
        guard let state = runs[id] else {
            // Not one of this supervisor's live runs: an earlier one, or a
            // one-shot `levain run` (cancelled by signalling that process).
            let record = try run(id)
            guard record.status.isTerminal else {
                throw SupervisorError(.conflict, "run \(id) is not this supervisor's (a one-shot levain run's, or being recovered); it cannot be cancelled here", field: "run")
            }
            return record
        }
        guard state.record.status.isInFlight else { return state.record }
        state.requestCancel()
        _ = try? await log.append(NewEvent(sessionID: state.sessionID, runID: id, tenant: state.tenant, type: EventType.runCancelRequested, payload: [:]))
        return state.record
    }

    /// Sends `signal` to a running run's process.
    public func signalRun(_ id: String, signal: Int32) async throws(SupervisorError) -> RunRecord {
        let state = try runState(id)
        guard state.record.status == .running, let host = hosts[state.sessionID] else {
            throw SupervisorError(.conflict, "run \(id) is \(state.record.status.rawValue), not running", field: "run")
        }
        try await host.signal(run: id, signal: signal)
        return state.record
    }

    /// `POST /v1/runs/{id}/resize`: a running terminal run's new size.
    public func resizeRun(_ id: String, to size: TerminalSize) async throws(SupervisorError) -> RunRecord {
        let state = try runState(id)
        guard state.spec.pty != nil else {
            throw SupervisorError(.conflict, "run \(id) has no terminal: start it with \"pty\" to resize it", field: "run")
        }
        guard state.record.status == .running, let host = hosts[state.sessionID] else {
            throw SupervisorError(.conflict, "run \(id) is \(state.record.status.rawValue), not running", field: "run")
        }
        try await host.resize(run: id, to: size)
        return state.record
    }
}

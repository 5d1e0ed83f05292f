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
import LevainTools

/// The supervisor: sessions, the run queue, recovery, shutdown. The HTTP
/// API (APIServer) and the tests drive it through these methods.
public actor Supervisor {
    public let context: SupervisorContext
    nonisolated var config: SupervisorConfig { context.config }
    public nonisolated var log: SessionLog { context.log }
    var hosts: [String: SessionHost] = [:]
    /// Sessions being (re)opened, and the task doing it.
    private var opening: [String: Task<Result<SessionHost, SupervisorError>, Never>] = [:]
    var runs: [String: RunState] = [:]
    var tasks: [String: Task<Void, Never>] = [:]
    let slots: FairRunQueue
    var accepting = true
    /// Set once shutdown gave up waiting: a run's end that the log cannot
    /// take by then is left to recovery.
    var stopped = false
    /// Probes the log while its writes fail (Supervisor+LogHealth).
    var logProbe: Task<Void, Never>?
    /// What the log's verification said at start (nil while it runs, or
    /// when it could not read the log).
    public private(set) var startupVerify: VerifyReport?
    /// Whether that verification is still running.
    public private(set) var verifyingAtStart = false
    private var startupVerifyTask: Task<Void, Never>?
    /// Jails started ahead of the sessions that will take them (WarmPool.swift).
    var warm = WarmPools()

    private func finishStartupVerify(_ report: VerifyReport?) {
        startupVerify = report
        verifyingAtStart = false
    }

    public init(config: SupervisorConfig) throws(SupervisorError) {
        do {
            try Directories.make(config.stateDirectory, mode: 0o711)
        } catch {
            throw SupervisorError(.internalError, "state directory: \(error)", cause: error)
        }
        let log: SessionLog
        do {
            log = try SessionLog(path: config.logPath)
        } catch {
            throw SupervisorError(.internalError, "the session log \(config.logPath): \(error)", cause: error)
        }
        let exits: ExitsRuntime
        do {
            exits = try ExitsRuntime(config.proxy)
        } catch {
            try? log.close()
            throw error
        }
        context = SupervisorContext(config: config, log: log, exits: exits)
        for (tenant, _) in config.proxy.tenants {
            if let used = try? log.modelUsage(tenant: tenant).total {
                context.ledger.preload(.init(.tenant, tenant), UsageLedger.Totals(used))
            }
        }
        slots = FairRunQueue(limit: config.concurrency, perSession: config.queuePerSession, perTenant: config.queuePerTenant)
        context.supervisor = self
    }

    // MARK: start and recovery

    /// Verifies the log, records what a previous supervisor left in flight
    /// and requeues or fails it, marks its sessions interrupted (they can be
    /// reopened with their workspace).
    public func start() async throws(SupervisorError) {
        context.onSessionFailed { [weak self] host, reason in await self?.sessionFailed(host, reason: reason) }
        watchLogHealth()
        // The whole log is verified beside the start, not before it: the
        // check reads every event (seconds for a log of 100,000 runs), and a
        // supervisor back from a crash must not keep its clients waiting
        // that long. GET /v1/health says "verifying" until it is done.
        let sessionLog = log
        verifyingAtStart = true
        startupVerifyTask = Task.detached { [weak self] in
            let report = try? sessionLog.verify()
            if let report, !report.ok { Self.say("levain: the session log does not verify: \(report.description)") }
            if report == nil { Self.say("levain: the session log could not be verified at start") }
            await self?.finishStartupVerify(report)
        }
        let inFlight: [RunRecord]
        let openSessions: [SessionRecord]
        do {
            // Only a supervisor's own: a one-shot `levain run` may be running
            // beside it, writing to the same log.
            inFlight = try log.inFlightRuns().filter { (try? log.session(id: $0.sessionID))??.kind != .oneShot }
            openSessions = try log.sessions(status: .open).filter { $0.kind == .session }
        } catch {
            throw SupervisorError(.internalError, "reading the log: \(error)", cause: error)
        }
        for s in openSessions {
            try await recordRecovery(
                [NewEvent(sessionID: s.id, tenant: s.tenant, type: EventType.sessionInterrupted,
                          payload: ["reason": "the supervisor stopped without closing the session", "supervisor": .string(s.supervisor ?? "")])],
                [.updateSession(SessionUpdate(id: s.id, status: .interrupted))])
        }
        // What a killed supervisor left that its sentinel did not remove
        // (the sentinel was killed too, or never heard of it): no session of
        // ours has a jail yet, so every cgroup of a session of this log is
        // a leftover.
        // Warm jails of a killed supervisor: their cgroups are leftovers too.
        let leftoverWarm = await leftoverWarmJails()
        let swept = await context.blocking { [context] in
            context.sweepLeftoverCgroups { id in leftoverWarm.contains(id) || (try? sessionLog.session(id: id))??.kind == .session }
        }
        // Their processes are gone with their cgroups: now their workspaces.
        await removeLeftoverWarmWorkspaces()
        if swept > 0 { Self.say("levain: removed \(swept) cgroup(s) of this log's sessions left by an earlier supervisor") }
        for r in inFlight {
            // What was stored, read back exactly; a request that does not
            // read (a damaged record) is not retried: it fails, saying why.
            let stored = Result { () throws(SupervisorError) in try RunSpec(record: r) }
            let retry = r.retryPolicy == .retry && (try? stored.get()) != nil
            var changes: [StateChange] = []
            var payload: JSONObject = ["previous_status": .string(r.status.rawValue), "attempt": JSONValue(r.attempt),
                                       "action": .string(retry ? "retry" : "fail")]
            if retry {
                changes.append(.updateRun(RunUpdate(id: r.id, status: .queued, attempt: r.attempt + 1)))
            } else {
                var error = "the supervisor stopped while the run was \(r.status.rawValue)"
                if r.retryPolicy == .retry, case .failure(let e) = stored { error += "; not retried: \(e.message)" }
                changes.append(.updateRun(RunUpdate(id: r.id, status: .interrupted, error: error, finishedAt: .now())))
                payload["status"] = "interrupted"
            }
            try await recordRecovery([RunEvents(sessionID: r.sessionID, runID: r.id, tenant: r.tenant).interrupted(payload)],
                                     changes)
            if retry, case .success(let spec) = stored {
                var record = r
                record.status = .queued
                record.attempt = r.attempt + 1
                let state = makeRunState(record, spec: spec)
                launch(state)
            }
        }
    }

    /// Recovery's records are what every later answer about these sessions
    /// and runs rests on: a supervisor that cannot write them does not start.
    private func recordRecovery(_ events: [NewEvent], _ changes: [StateChange]) async throws(SupervisorError) {
        do {
            _ = try await log.record(events, and: changes)
        } catch {
            throw SupervisorError(.unavailable, "cannot record the recovery of what the previous supervisor left in flight: \(error)", cause: error)
        }
    }

    /// Starts the host tools (MCP servers in jails of their own) and
    /// registers their tools; returns what went wrong, one line a server.
    public func startHostTools() async -> [String] {
        await context.tools.hostTools.start(supervisor: self)
    }

    /// Sessions of the host tools' servers (shutdown does not wait for them).
    private var hostToolSessions: Set<String> = []
    func markHostToolSession(_ id: String) { hostToolSessions.insert(id) }

    // MARK: sessions

    public func createSession(_ spec: SessionSpec) async throws(SupervisorError) -> SessionRecord {
        try admit()
        guard hosts.count < config.maxSessions else {
            throw SupervisorError(.conflict, "\(config.maxSessions) sessions are open (supervisor.max_sessions); close one first")
        }
        if spec.harness != nil && getenv("LEVAIN_ALLOW_HARNESS_OVERRIDE") == nil {
            throw SupervisorError(.invalid, "a session's harness can be chosen only when the supervisor runs with LEVAIN_ALLOW_HARNESS_OVERRIDE=1 (tests)", field: "harness")
        }
        let policy = try resolvePolicy(spec)
        if let host = await takeWarmJail(spec, policy: policy) {
            return try await adoptWarmJail(host, spec)
        }
        let id = SessionID.make()
        // With a workspace_size, the workspace is an ext4 image (kept for the
        // session's life, whatever the policy says when it is reopened).
        let workspace = policy.filesystem.workspaceSize != nil ? WorkspaceImage.path(of: workspacePath(id)) : workspacePath(id)
        let record = try await recordOpened(id, spec, workspace: workspace, warm: false)
        let host = SessionHost(id: id, tenant: spec.tenant, spec: spec, policy: policy, workspace: workspace, context: context)
        hosts[id] = host
        // Requests for the new session while its jail starts wait for it.
        let task = Task { () -> Result<SessionHost, SupervisorError> in
            do throws(SupervisorError) {
                try await self.openWithRetries(host)
                return .success(host)
            } catch {
                return .failure(error)
            }
        }
        opening[id] = task
        let opened = await task.value
        opening[id] = nil
        do {
            _ = try opened.get()
        } catch {
            hosts[id] = nil
            _ = try? await log.record([NewEvent(sessionID: id, tenant: spec.tenant, type: EventType.sessionFailed, payload: ["reason": .string(error.message)])],
                                      and: [.updateSession(SessionUpdate(id: id, status: .failed, closedAt: .now()))])
            throw error
        }
        return record
    }

    /// `session.opened` and the session's row, durable (before the 201).
    func recordOpened(_ id: String, _ spec: SessionSpec, workspace: String, warm: Bool) async throws(SupervisorError) -> SessionRecord {
        let record = SessionRecord(id: id, tenant: spec.tenant, kind: .session, policy: spec.policy, labels: spec.labels,
                                   status: .open, workspace: workspace, limits: spec.storedLimits,
                                   supervisor: context.instanceID)
        var payload: JSONObject = ["policy": .string(spec.policy), "labels": .object(spec.labels.mapValues { .string($0) }),
                                   "limits": .object(spec.storedLimits), "workspace": .string(workspace)]
        if warm { payload["warm"] = true }
        do {
            _ = try await log.record([NewEvent(sessionID: id, tenant: spec.tenant, type: EventType.sessionOpened, payload: payload)],
                                     and: [.insertSession(record)])
        } catch {
            throw logWriteError(error, "the session log")
        }
        return record
    }

    private func openWithRetries(_ host: SessionHost) async throws(SupervisorError) {
        var last: SupervisorError? = nil
        for attempt in 1...config.retryAttempts {
            do {
                try await host.open()
                return
            } catch {
                last = error
                if error.code != .spawnFailed || attempt == config.retryAttempts { break }
                _ = try? await log.append(NewEvent(sessionID: host.id, tenant: host.tenant, type: EventType.sessionRetry,
                                                  payload: ["attempt": JSONValue(attempt), "reason": .string(error.message)]))
                await backoff(attempt)
            }
        }
        throw last ?? SupervisorError(.spawnFailed, "the session's jail did not start")
    }

    func backoff(_ attempt: Int) async {
        let seconds = config.retryBackoff * Double(1 << min(attempt - 1, 6))
        try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
    }

    func resolvePolicy(_ spec: SessionSpec) throws(SupervisorError) -> Policy {
        var policy: Policy
        do {
            policy = try PolicyLoader.load(spec.policy)
        } catch {
            throw SupervisorError(.invalid, "\(error)", field: "policy", cause: error)
        }
        if let m = spec.memory { policy.limits.memory = m }
        if let c = spec.cpus { policy.limits.cpus = c }
        if let p = spec.pids { policy.limits.pids = p }
        if let t = spec.timeout { policy.limits.timeout = t }
        return policy
    }

    func workspacePath(_ id: String) -> String { config.stateDirectory + "/workspaces/" + id }

    public func session(_ id: String) throws(SupervisorError) -> SessionRecord {
        guard SessionID.isValid(id), let record = try? log.session(id: id) else {
            throw SupervisorError(.notFound, "no session \(id)", field: "session")
        }
        return record
    }

    public func sessions(tenant: String?, status: SessionStatus?) throws(SupervisorError) -> [SessionRecord] {
        do { return try log.sessions(tenant: tenant, status: status) } catch { throw SupervisorError(.internalError, "\(error)", cause: error) }
    }

    public func closeSession(_ id: String) async throws(SupervisorError) -> SessionRecord {
        let record = try session(id)
        guard record.kind == .session else {
            throw SupervisorError(.conflict, "session \(id) is a one-shot levain run's; it ends with that run", field: "session")
        }
        if let host = hosts.removeValue(forKey: id) {
            await host.close()
            if host.policy.audit.isEnabled, let audit = context.audit {
                await audit.flush()
                audit.forget(session: id)
            }
        }
        if record.status != .closed {
            _ = try? await log.record([NewEvent(sessionID: id, tenant: record.tenant, type: EventType.sessionClosed, payload: [:])],
                                      and: [.updateSession(SessionUpdate(id: id, status: .closed, closedAt: .now()))])
        }
        return try session(id)
    }

    /// A new jail for a session that failed or was interrupted; same workspace.
    public func reopenSession(_ id: String) async throws(SupervisorError) -> SessionRecord {
        _ = try await host(for: id)
        return try session(id)
    }

    /// The session's live host, reopening it when it failed or was
    /// interrupted (not when it was closed).
    func host(for id: String) async throws(SupervisorError) -> SessionHost {
        if let host = hosts[id], await host.isReady { return host }
        // One (re)open at a time per session: a second caller waits for it.
        if let opening = opening[id] { return try await opening.value.get() }
        let task = Task { () -> Result<SessionHost, SupervisorError> in
            do throws(SupervisorError) {
                return .success(try await self.reopen(id))
            } catch {
                return .failure(error)
            }
        }
        opening[id] = task
        let result = await task.value
        opening[id] = nil
        return try result.get()
    }

    private func reopen(_ id: String) async throws(SupervisorError) -> SessionHost {
        let record = try session(id)
        guard record.kind == .session else {
            throw SupervisorError(.conflict, "session \(id) is a one-shot levain run's; it has no jail to reopen", field: "session")
        }
        guard record.status != .closed else { throw SupervisorError(.conflict, "session \(id) is closed", field: "session") }
        try admit()
        var spec = try SessionSpec(record: record)
        if let old = hosts[id] {
            spec.harness = old.spec.harness
            // The failed jail must be gone first: the new one takes the
            // same cgroup name.
            await old.waitTornDown()
        }
        let policy = try resolvePolicy(spec)
        let host = SessionHost(id: id, tenant: record.tenant, spec: spec, policy: policy, workspace: record.workspace ?? workspacePath(id), context: context)
        hosts[id] = host
        do {
            try await openWithRetries(host)
        } catch {
            hosts[id] = nil
            throw error
        }
        do {
            _ = try await log.record([NewEvent(sessionID: id, tenant: record.tenant, type: EventType.sessionReopened, payload: ["supervisor": .string(context.instanceID)])],
                                     and: [.updateSession(SessionUpdate(id: id, status: .open, supervisor: context.instanceID))])
        } catch {
            // Not recorded: the client is not told it is open.
            if hosts[id] === host { hosts[id] = nil }
            await host.close()
            throw logWriteError(error, "recording the reopened session")
        }
        return host
    }

    /// `failed` is the host whose jail failed: only that one is dropped. A
    /// reopen may already have put a new host of the session in its place,
    /// which must stay tracked (and the session stays open).
    func sessionFailed(_ failed: SessionHost, reason: String) async {
        let id = failed.id
        guard let host = hosts[id], host === failed else { return }
        hosts[id] = nil
        _ = try? await log.record([NewEvent(sessionID: id, tenant: host.tenant, type: EventType.sessionFailed, payload: ["reason": .string(reason)])],
                                  and: [.updateSession(SessionUpdate(id: id, status: .failed))])
    }

    // MARK: files

    func host(ready id: String) async throws(SupervisorError) -> SessionHost {
        try await host(for: id)
    }

    // MARK: shutdown

    /// Stops accepting; lets running runs finish for up to `grace`
    /// seconds; then cancels what is left, closes the sessions (marked
    /// interrupted, so a next supervisor can reopen them) and the log.
    /// With `closeLog: false` the log stays open for the API's last
    /// answers; `closeLog()` closes it after them.
    public func shutdown(grace: Double, closeLog: Bool = true) async {
        accepting = false
        await closeWarmPools()
        let deadline = Monotonic.nanos() + UInt64(min(max(0, grace), 1e9) * 1e9)
        // The host tools' servers run until they are stopped: not waited for.
        while Monotonic.nanos() < deadline
                && runs.values.contains(where: { $0.record.status.isInFlight && !hostToolSessions.contains($0.sessionID) }) {
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        for (id, state) in runs where state.record.status.isInFlight {
            state.requestCancel()
            _ = try? await log.append(NewEvent(sessionID: state.sessionID, runID: id, tenant: state.tenant, type: EventType.runInterrupted,
                                               payload: ["reason": "supervisor shutdown", "action": "cancel"]))
        }
        // A run's end waits for the log (Supervisor+LogHealth); when it
        // cannot be written, recovery at the next start takes over.
        let giveUp = Task { [weak self] in
            try? await Task.sleep(nanoseconds: 5_000_000_000)
            await self?.markStopped()
        }
        for (_, task) in tasks { await task.value }
        giveUp.cancel()
        logProbe?.cancel()
        await context.tools.hostTools.stop(supervisor: self)
        for (id, host) in hosts {
            await host.close()
            _ = try? await log.record([NewEvent(sessionID: id, tenant: host.tenant, type: EventType.sessionInterrupted, payload: ["reason": "supervisor shutdown"])],
                                      and: [.updateSession(SessionUpdate(id: id, status: .interrupted))])
        }
        hosts = [:]
        await startupVerifyTask?.value
        if closeLog { self.closeLog() }
    }

    func markStopped() { stopped = true }

    public func closeLog() { try? log.close() }

    public var isAccepting: Bool { accepting }
    public var sessionCount: Int { hosts.count }
    public func slotsInUse() async -> (running: Int, waiting: Int) { (await slots.running, await slots.waiters) }
}

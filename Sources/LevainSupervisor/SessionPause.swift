import LevainAPI
import LevainJSON
import LevainSessionLog
import LevainSystem

/// Pausing a session: every live run's cgroup is frozen with the kernel's
/// freezer (v1 freezer.state, v2 cgroup.freeze), so its processes take no
/// CPU and do not advance; the harness (PID 1) is not frozen, so the
/// session's files stay readable and writable and its heartbeats go on.
/// New runs are refused while paused (409, `resume` first); a run queued
/// before the pause, or starting while it is made, is frozen as soon as its
/// process has started (never before: the harness waits for a starting
/// process's exec, and must not wait on a frozen one). Wall-clock limits
/// keep counting: a run whose timeout passes while paused is killed
/// (SIGKILL ends frozen processes). In memory only: a supervisor restart
/// ends the jail anyway.
extension SessionHost {
    nonisolated var isPaused: Bool { pausedFlag.withLock { $0 } }

    static func pausedError(_ id: String) -> SupervisorError {
        SupervisorError(.conflict, "session \(id) is paused: resume it first (POST /v1/sessions/\(id)/resume)", field: "session")
    }

    /// Pauses or resumes, one change at a time (in the order asked), and
    /// records the change with `record` (the number of runs) in that order.
    /// Returns whether anything changed.
    func setPaused(_ paused: Bool, record: @escaping @Sendable (Int) async -> Void) async throws(SupervisorError) -> Bool {
        let previous = pauseChain
        let work = Task { () -> Result<Bool, SupervisorError> in
            await previous?.value
            do throws(SupervisorError) {
                return .success(try await self.applyPaused(paused, record: record))
            } catch {
                return .failure(error)
            }
        }
        pauseChain = Task { _ = await work.value }
        return try await work.value.get()
    }

    private func applyPaused(_ paused: Bool, record: @Sendable (Int) async -> Void) async throws(SupervisorError) -> Bool {
        guard phase == .ready else { throw SupervisorError(.conflict, "session \(id) is not running (\(phase))", field: "session") }
        guard let cgroup, cgroup.canFreeze else {
            throw SupervisorError(.unavailable, "pausing needs the cgroup freezer (v2 cgroup.freeze, or a mounted v1 freezer hierarchy), which this machine lacks")
        }
        let ctx = context
        if paused {
            if isPaused { return false }
            // From here a run that finishes starting freezes itself.
            pausedFlag.withLock { $0 = true }
            let ids = live.keys.filter { !startingRuns.contains($0) }.sorted()
            let groups = ids.compactMap { live[$0]?.cgroup }
            let failures = await ctx.blocking { RunCgroup.setFrozen(groups, true) }
            guard failures.isEmpty else {
                // All or nothing: a half-paused session is not paused.
                pausedFlag.withLock { $0 = false }
                let all = live.values.compactMap(\.cgroup)
                _ = await ctx.blocking { RunCgroup.setFrozen(all, false) }
                throw SupervisorError(.internalError, "could not pause session \(id): " + failures.map { "run \(ids[$0.0]): \($0.1)" }.joined(separator: "; "))
            }
            await record(groups.count)
            return true
        }
        // Resume thaws every live run (also when not paused: a retry after
        // a failed resume); it is recorded only when the session was paused.
        let wasPaused = isPaused
        pausedFlag.withLock { $0 = false }
        let ids = live.keys.sorted()
        let groups = ids.compactMap { live[$0]?.cgroup }
        let failures = await ctx.blocking { RunCgroup.setFrozen(groups, false) }
        guard failures.isEmpty else {
            throw SupervisorError(.internalError, "could not thaw every run of session \(id) (resume again): "
                                  + failures.map { "run \(ids[$0.0]): \($0.1)" }.joined(separator: "; "))
        }
        if wasPaused { await record(groups.count) }
        return wasPaused
    }
}

extension Supervisor {
    /// `POST /v1/sessions/{id}/pause` and `/resume`.
    public func setPaused(_ id: String, _ paused: Bool) async throws(SupervisorError) -> SessionRecord {
        let record = try session(id)
        guard record.status == .open, let host = hosts[id], await host.isReady else {
            throw SupervisorError(.conflict, "session \(id) is \(record.status.rawValue) and has no running jail to \(paused ? "pause" : "resume")", field: "session")
        }
        let log = self.log
        _ = try await host.setPaused(paused) { runs in
            _ = try? await log.append(NewEvent(sessionID: id, tenant: record.tenant,
                                               type: paused ? EventType.sessionPaused : EventType.sessionResumed,
                                               payload: ["runs": JSONValue(runs)]))
        }
        return record
    }

    func isPaused(_ id: String) -> Bool { hosts[id]?.isPaused ?? false }
}

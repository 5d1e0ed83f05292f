import LevainAPI
import LevainJSON
import LevainSessionLog
import LevainSystem

/// Pausing a session: every live run's cgroup is frozen with the kernel's
/// freezer (v1 freezer.state, v2 cgroup.freeze), so its processes take no
/// CPU and do not advance; the harness (PID 1) is not frozen, so the
/// session's files stay readable and writable and its heartbeats go on.
/// New runs are refused while paused (409, `resume` first); a run queued
/// before the pause is frozen as soon as it starts. Wall-clock limits keep
/// counting: a run whose timeout passes while paused is killed (SIGKILL
/// ends frozen processes). In memory only: a supervisor restart ends the
/// jail anyway.
extension SessionHost {
    nonisolated var isPaused: Bool { pausedFlag.withLock { $0 } }

    static func pausedError(_ id: String) -> SupervisorError {
        SupervisorError(.conflict, "session \(id) is paused: resume it first (POST /v1/sessions/\(id)/resume)", field: "session")
    }

    /// Freezes (or thaws) every live run; returns how many were changed.
    /// Changing to the state the session is in already changes nothing.
    func setPaused(_ paused: Bool) throws(SupervisorError) -> (changed: Bool, runs: Int) {
        guard phase == .ready else { throw SupervisorError(.conflict, "session \(id) is not running (\(phase))", field: "session") }
        if isPaused == paused { return (false, 0) }
        guard let cgroup, cgroup.canFreeze else {
            throw SupervisorError(.unavailable, "pausing needs the cgroup freezer (v2 cgroup.freeze, or a mounted v1 freezer hierarchy), which this machine lacks")
        }
        var changed = 0
        var failures: [String] = []
        for (runID, liveRun) in live {
            guard let g = liveRun.cgroup else { continue }
            do throws(SystemError) {
                if try g.setFrozen(paused) { changed += 1 } else { failures.append("\(runID): the kernel did not report it \(paused ? "frozen" : "thawed") within 1 s") }
            } catch {
                failures.append("\(runID): \(error)")
            }
        }
        if !failures.isEmpty && paused {
            // All or nothing: a half-paused session is not paused.
            for liveRun in live.values { _ = try? liveRun.cgroup?.setFrozen(false) }
            throw SupervisorError(.internalError, "could not pause session \(id): " + failures.joined(separator: "; "))
        }
        pausedFlag.withLock { $0 = paused }
        return (true, changed)
    }
}

extension Supervisor {
    /// `POST /v1/sessions/{id}/pause` and `/resume`.
    public func setPaused(_ id: String, _ paused: Bool) async throws(SupervisorError) -> SessionRecord {
        let record = try session(id)
        guard record.status == .open, let host = hosts[id], await host.isReady else {
            throw SupervisorError(.conflict, "session \(id) is \(record.status.rawValue) and has no running jail to \(paused ? "pause" : "resume")", field: "session")
        }
        let (changed, runs) = try await host.setPaused(paused)
        if changed {
            _ = try? await log.append(NewEvent(sessionID: id, tenant: record.tenant,
                                               type: paused ? EventType.sessionPaused : EventType.sessionResumed,
                                               payload: ["runs": JSONValue(runs)]))
        }
        return record
    }

    func isPaused(_ id: String) -> Bool { hosts[id]?.isPaused ?? false }
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import LevainClock
import LevainJSON
import LevainSandbox
import LevainSessionLog
import Synchronization

/// The session log records of a standalone `levain run`: a session of kind
/// "one-shot" holding the one run, with the same events a supervisor's run
/// gets (session.opened, run.queued, run.started, process.exited,
/// limit.hit, run.finished, session.closed).
///
/// The log is opened and the opening events are committed while the jail
/// is being built (on another thread), so the run does not wait for SQLite;
/// the closing events are committed, durably, before `levain run` exits.
/// A log that cannot be written does not stop the run: the reason goes to
/// stderr (and the exit status stays the command's).
final class OneShotLog: Sendable {
    let sessionID: String
    let runID: String
    private let opening: Task<DirectWriter?, Never>
    private let warning = Warning()

    final class Warning: Sendable {
        let text = Mutex<String?>(nil)
        func set(_ s: String) { text.withLock { $0 = s } }
        var value: String? { text.withLock { $0 } }
    }

    init(statePath: String, runID: String, policy: String, argv: [String], env: [String], cwd: String?,
         timeout: String?, workspace: String?) {
        let sessionID = RunID.randomID(prefix: "s-")
        self.sessionID = sessionID
        self.runID = runID
        let warning = self.warning
        opening = Task.detached(priority: .userInitiated) {
            do {
                let t0 = Monotonic.nanos()
                let path = statePath + "/log.sqlite"
                // The direct writer (SQLite's C API: no GRDB start-up); a
                // log that does not exist yet is made by SessionLog first.
                let log = try OneShotLog.openWriter(path)
                let t1 = Monotonic.nanos()
                defer {
                    if getenv("LEVAIN_TIMINGS") != nil {
                        printError("one-shot log: opened in \(Double(t1 - t0) / 1e6) ms, first events durable after \(Double(Monotonic.nanos() - t1) / 1e6) ms")
                    }
                }
                let now = LogTimestamp.now()
                var request: JSONObject = ["argv": JSONValue(argv)]
                if !env.isEmpty { request["env_keys"] = JSONValue(env.map { String($0.prefix { $0 != "=" }) }) }
                if let cwd { request["cwd"] = .string(cwd) }
                if let timeout { request["timeout"] = .string(timeout) }
                let session = SessionRecord(id: sessionID, kind: .oneShot, policy: policy, status: .open,
                                            workspace: workspace, createdAt: now)
                let run = RunRecord(id: runID, sessionID: sessionID, status: .running, request: request,
                                    createdAt: now, startedAt: now)
                var opened: JSONObject = ["kind": "one-shot", "policy": .string(policy)]
                opened["workspace"] = workspace.map { .string($0) } ?? .null
                try log.record([
                    NewEvent(sessionID: sessionID, type: EventType.sessionOpened, payload: opened, time: now),
                    RunEvents(sessionID: sessionID, runID: runID, time: now).queued(request),
                    RunEvents(sessionID: sessionID, runID: runID, time: now).started(attempt: 1),
                ], and: [.insertSession(session), .insertRun(run)])
                return log
            } catch {
                warning.set("the session log in \(statePath) was not written: \(error)")
                return nil
            }
        }
    }

    static func openWriter(_ path: String) throws(SessionLogError) -> DirectWriter {
        do {
            return try DirectWriter(path: path)
        } catch {
            guard error.code == .logNotFound || error.code == .notASessionLog else { throw error }
            try SessionLog(path: path, singleConnection: true).close()
            return try DirectWriter(path: path)
        }
    }

    /// Records the end of the run and waits until it is on disk.
    func finish(outcome: RunOutcome?, error: String?) {
        let opening = self.opening
        let sessionID = self.sessionID, runID = self.runID
        let warning = self.warning
        let done = DispatchSemaphore(value: 0)
        Task.detached(priority: .userInitiated) {
            defer { done.signal() }
            guard let log = await opening.value else { return }
            let now = LogTimestamp.now()
            let writer = RunEvents(sessionID: sessionID, runID: runID, time: now)
            var events: [NewEvent] = []
            let finished: RunEvents.Finished
            var exitCode: Int32? = nil, signal: Int32? = nil
            if let outcome {
                let r = outcome.report
                exitCode = r.exit.code
                signal = r.exit.signal
                events.append(writer.processExited(code: exitCode, signal: signal, userMicros: UInt64(max(0, r.cpu.userMs * 1000)),
                                                   systemMicros: UInt64(max(0, r.cpu.systemMs * 1000)),
                                                   maxRSSKilobytes: r.memory.peakBytes.map { $0 / 1024 }))
                for l in r.limits.which where l != "timeout" { events.append(writer.limitHit(l)) }
                let status: RunStatus
                var failure: String? = nil
                if r.limits.which.contains("timeout") {
                    status = .timedOut
                } else if let e = r.error, !e.isEmpty, r.exit.status >= 125 {
                    status = .failed
                    failure = e
                } else {
                    status = r.exit.status == 0 ? .succeeded : .failed
                }
                finished = RunEvents.Finished(status: status, exitStatus: outcome.exitStatus, hadProcess: true, exitCode: exitCode,
                                              signal: signal, error: failure, durationMillis: r.wallTimeMs)
            } else {
                finished = RunEvents.Finished(status: .error, exitStatus: LevainExit.error, hadProcess: false, error: error ?? "levain failed")
            }
            let status = finished.status
            events.append(writer.finished(finished))
            events.append(NewEvent(sessionID: sessionID, type: EventType.sessionClosed, payload: [:], time: now))
            do {
                try log.record(events, and: [
                    .updateRun(RunUpdate(id: runID, status: status, exitCode: exitCode, signal: signal,
                                         error: error ?? finished.error, finishedAt: now)),
                    .updateSession(SessionUpdate(id: sessionID, status: .closed, closedAt: now)),
                ])
            } catch {
                warning.set("the end of run \(runID) was not written to the session log: \(error)")
            }
        }
        let waitStart = Monotonic.nanos()
        done.wait()
        if getenv("LEVAIN_TIMINGS") != nil {
            printError("one-shot log: waited \(Double(Monotonic.nanos() - waitStart) / 1e6) ms for the last events to be durable")
        }
        if let w = warning.value { printError(w) }
    }
}

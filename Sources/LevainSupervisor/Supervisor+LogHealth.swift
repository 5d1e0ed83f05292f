#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainSessionLog
import LevainSystem

/// What the supervisor does when its log cannot be written (a full disk, an
/// I/O error): a client is told a state only once the log holds it, so while
/// writes fail no new work is accepted (503, saying why), the end of a run
/// is kept in memory and written once the log can take it (until then the
/// run reads as still running, as the log says), and the operator is told
/// on standard error when writes start failing and when they work again.
extension Supervisor {
    /// Refuses new work while shutting down or while the log cannot be written.
    func admit() throws(SupervisorError) {
        guard isAccepting else { throw SupervisorError(.unavailable, "the supervisor is shutting down") }
        if let failure = log.writeFailure {
            throw Self.logUnwritable(failure)
        }
    }

    static func logUnwritable(_ failure: LogWriteFailure) -> SupervisorError {
        SupervisorError(.unavailable, """
            the session log cannot be written (\(failure.message)); the supervisor accepts no new work \
            until it can write again (free space in its state directory)
            """)
    }

    /// A write failure of a request that told nobody anything yet: the
    /// client gets 503 when the log cannot be written, 500 otherwise.
    func logWriteError(_ error: SessionLogError, _ what: String) -> SupervisorError {
        if let failure = log.writeFailure { return Self.logUnwritable(failure) }
        return SupervisorError(.internalError, "\(what): \(error)", cause: error)
    }

    /// Says on standard error when writes begin to fail and when they work
    /// again, and probes the log (a one-page write) every second while they
    /// fail, so that work resumes once there is room even if nothing else
    /// is waiting to be written.
    func watchLogHealth() {
        log.observeWriteHealth { failure in
            if let failure {
                Self.say("levain: CANNOT WRITE THE SESSION LOG: \(failure.message). Accepting no new work until it can write again; runs that end meanwhile are recorded then.")
            } else {
                Self.say("levain: the session log is writable again; accepting work.")
            }
        }
        let log = self.log
        logProbe = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                if log.writeFailure != nil { log.probeWrite() }
            }
        }
    }

    static func say(_ line: String) {
        let text = line + "\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
    }

    /// Records a state a client will be told (a run's end): retried until
    /// the log takes it. Returns false only when the supervisor stopped
    /// first; the log then still holds the earlier state, and recovery at
    /// the next start treats the run as in flight.
    func recordDurably(_ events: [NewEvent], _ changes: [StateChange]) async -> Bool {
        var delay: UInt64 = 100_000_000
        while true {
            do {
                _ = try await log.record(events, and: changes)
                return true
            } catch where log.writeFailure == nil && !Self.isTransient(error) {
                // Rejected on its own (not the log failing): retrying cannot help.
                Self.say("levain: the session log refused a record (\(error)); the run's state stays as last recorded")
                return false
            } catch {
                if stopped { return false }
                try? await Task.sleep(nanoseconds: delay)
                delay = min(delay * 2, 2_000_000_000)
            }
        }
    }

    private static func isTransient(_ error: SessionLogError) -> Bool {
        error.code == .database || error.code == .busy
    }
}

import LevainClock
import Synchronization

/// Whether the log's writer can write: set by the group committer from the
/// outcome of every transaction (a request rejected on its own, such as a
/// duplicate idempotency key, says nothing about it) and by `probeWrite`.
///
/// The supervisor reads it to stop accepting work while the log cannot
/// record it (a full disk, an I/O error), and to start again once it can.
public struct LogWriteFailure: Sendable, Equatable, CustomStringConvertible {
    /// Why the last transaction failed.
    public var message: String
    /// When writes began to fail (monotonic nanoseconds).
    public var sinceNanos: UInt64
    /// Transactions that failed since then.
    public var failures: Int

    public var description: String { message }
}

final class WriteHealth: Sendable {
    private struct State {
        var failure: LogWriteFailure?
        var observer: (@Sendable (LogWriteFailure?) -> Void)?
    }

    private let state = Mutex(State())

    var failure: LogWriteFailure? { state.withLock { $0.failure } }

    func observe(_ observer: @escaping @Sendable (LogWriteFailure?) -> Void) {
        state.withLock { $0.observer = observer }
    }

    func succeeded() {
        let notify = state.withLock { s -> (@Sendable (LogWriteFailure?) -> Void)? in
            guard s.failure != nil else { return nil }
            s.failure = nil
            return s.observer
        }
        notify?(nil)
    }

    func failed(_ error: SessionLogError) {
        let (notify, now) = state.withLock { s -> ((@Sendable (LogWriteFailure?) -> Void)?, LogWriteFailure) in
            if var f = s.failure {
                f.failures += 1
                f.message = error.description
                s.failure = f
                return (nil, f)
            }
            let f = LogWriteFailure(message: error.description, sinceNanos: Monotonic.nanos(), failures: 1)
            s.failure = f
            return (s.observer, f)
        }
        notify?(now)
    }
}

extension SessionLog {
    /// Set while the log's writes fail (every transaction since the first
    /// failure failed); nil when the last one committed.
    public var writeFailure: LogWriteFailure? { health.failure }

    /// Called on each change between writable (nil) and failing, from
    /// whichever thread noticed it.
    public func observeWriteHealth(_ observer: @escaping @Sendable (LogWriteFailure?) -> Void) {
        health.observe(observer)
    }

    /// A real, small write (the database header's user_version, one page
    /// into the WAL, fsynced): whether the log can be written now. Used to
    /// learn that a full disk has room again when no other write is due.
    /// Updates `writeFailure`.
    @discardableResult
    public func probeWrite() -> Bool {
        guard let committer else { return false }
        do {
            try pool.writeWithoutTransaction { db in
                let current = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                try db.execute(sql: "PRAGMA user_version = \((current + 1) & 0x3fff_ffff)")
            }
            health.succeeded()
            return true
        } catch {
            health.failed(SessionLogError.wrap(error, "cannot write to the session log"))
            return false
        }
    }
}

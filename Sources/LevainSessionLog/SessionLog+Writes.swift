import LevainJSON
import Synchronization
extension SessionLog {
    /// Appends one event. Returns once it is durable (committed, WAL fsynced).
    @discardableResult
    public func append(_ event: NewEvent) async throws(SessionLogError) -> LoggedEvent {
        let logged = try await record([event], and: [])
        return logged[0]
    }

    /// Appends events in order, atomically. Returns once they are durable.
    @discardableResult
    public func append(_ events: [NewEvent]) async throws(SessionLogError) -> [LoggedEvent] {
        try await record(events, and: [])
    }

    /// Applies `changes` (first) and appends `events` (then) in one
    /// transaction: all or nothing, durable when this returns. Use it so that
    /// a state change and the event recording it can never be split by a
    /// crash, e.g. `.updateRun(status: .succeeded)` with `run.finished`.
    /// `.written` returns once committed, without waiting for the fsync
    /// (see `Durability`).
    @discardableResult
    public func record(_ events: [NewEvent], and changes: [StateChange],
                       durability: Durability = .durable) async throws(SessionLogError) -> [LoggedEvent] {
        guard let committer else {
            throw SessionLogError(.readOnly, "the session log at \(path) is open read-only")
        }
        if events.isEmpty && changes.isEmpty { return [] }
        var prepared: [PreparedEvent] = []
        prepared.reserveCapacity(events.count)
        for event in events {
            prepared.append(try Self.prepare(event))
        }
        for change in changes {
            try Self.validate(change)
        }
        return try await committer.submit(events: prepared, changes: changes, durability: durability)
    }

    /// Queues `record(_:and:)` without waiting: the write is ordered with
    /// every write queued after it (the same writer, first in first out), so
    /// a later durable write implies this one is durable too. `value()`
    /// waits for it when the caller needs to know.
    @discardableResult
    public func enqueue(_ events: [NewEvent], and changes: [StateChange],
                        durability: Durability = .durable) -> PendingRecord {
        let pending = PendingRecord()
        guard let committer else {
            pending.complete(.failure(SessionLogError(.readOnly, "the session log at \(path) is open read-only")))
            return pending
        }
        do throws(SessionLogError) {
            var prepared: [PreparedEvent] = []
            for event in events { prepared.append(try Self.prepare(event)) }
            for change in changes { try Self.validate(change) }
            committer.enqueue(events: prepared, changes: changes, durability: durability) { pending.complete($0) }
        } catch {
            pending.complete(.failure(error))
        }
        return pending
    }

    /// Inserts a session. `.duplicateID` if the id is taken.
    public func insertSession(_ session: SessionRecord) async throws(SessionLogError) {
        try await record([], and: [.insertSession(session)])
    }

    /// Updates a session; nil arguments leave the column as it is.
    /// `.unknownSession` if there is no such session.
    public func updateSession(id: String, status: SessionStatus? = nil, closedAt: LogTimestamp? = nil,
                              supervisor: String? = nil, workspace: String? = nil) async throws(SessionLogError) {
        try await record([], and: [.updateSession(SessionUpdate(
            id: id, status: status, closedAt: closedAt, supervisor: supervisor, workspace: workspace))])
    }

    /// Inserts a run. `.duplicateIdempotencyKey` (with `existingRunID`) if the
    /// session already has a run with this key: return that run instead.
    public func insertRun(_ run: RunRecord) async throws(SessionLogError) {
        try await record([], and: [.insertRun(run)])
    }

    /// Updates a run; nil arguments leave the column as it is.
    /// `.unknownRun` if there is no such run.
    public func updateRun(id: String, status: RunStatus? = nil, exitCode: Int32? = nil, signal: Int32? = nil,
                          error: String? = nil, startedAt: LogTimestamp? = nil, finishedAt: LogTimestamp? = nil,
                          attempt: Int? = nil) async throws(SessionLogError) {
        try await record([], and: [.updateRun(RunUpdate(
            id: id, status: status, exitCode: exitCode, signal: signal, error: error,
            startedAt: startedAt, finishedAt: finishedAt, attempt: attempt))])
    }

    // MARK: - Validation (in the caller's task, off the writer)

    static func prepare(_ event: NewEvent) throws(SessionLogError) -> PreparedEvent {
        try checkID(event.sessionID, "session id")
        if let runID = event.runID { try checkID(runID, "run id") }
        try checkText(event.tenant, "tenant")
        try checkID(event.type, "event type")
        return PreparedEvent(
            sessionID: event.sessionID, runID: event.runID, tenant: event.tenant,
            time: event.time.rfc3339, type: event.type, payload: event.payload.encodedJSON())
    }

    static func validate(_ change: StateChange) throws(SessionLogError) {
        switch change {
        case .insertSession(let s):
            try checkID(s.id, "session id")
            try checkText(s.tenant, "tenant")
            try checkText(s.policy, "policy")
            try checkText(s.workspace ?? "", "workspace")
            try checkText(s.supervisor ?? "", "supervisor")
        case .updateSession(let u):
            try checkID(u.id, "session id")
            try checkText(u.workspace ?? "", "workspace")
            try checkText(u.supervisor ?? "", "supervisor")
        case .insertRun(let r):
            try checkID(r.id, "run id")
            try checkID(r.sessionID, "session id")
            try checkText(r.tenant, "tenant")
            if let key = r.idempotencyKey { try checkID(key, "idempotency key") }
            try checkText(r.error ?? "", "error")
            guard r.attempt >= 1 else { throw SessionLogError(.invalidArgument, "run \(r.id): attempt must be >= 1") }
        case .updateRun(let u):
            try checkID(u.id, "run id")
            try checkText(u.error ?? "", "error")
            if let attempt = u.attempt, attempt < 1 {
                throw SessionLogError(.invalidArgument, "run \(u.id): attempt must be >= 1")
            }
        }
    }

    /// Ids are non-empty and NUL-free (SQLite text is read back as a C string).
    private static func checkID(_ value: String, _ what: String) throws(SessionLogError) {
        guard !value.isEmpty else { throw SessionLogError(.invalidArgument, "empty \(what)") }
        try checkText(value, what)
    }

    private static func checkText(_ value: String, _ what: String) throws(SessionLogError) {
        guard !value.utf8.contains(0) else { throw SessionLogError(.invalidArgument, "NUL character in \(what)") }
    }
}

/// A write queued with `SessionLog.enqueue`.
public final class PendingRecord: Sendable {
    private struct State {
        var result: Result<[LoggedEvent], SessionLogError>?
        var waiters: [CheckedContinuation<Result<[LoggedEvent], SessionLogError>, Never>] = []
    }

    private let state = Mutex(State())

    func complete(_ result: Result<[LoggedEvent], any Error>) {
        let r: Result<[LoggedEvent], SessionLogError> = result.mapError { SessionLogError.wrap($0, "cannot write to the session log") }
        let waiters = state.withLock { s in
            s.result = r
            let w = s.waiters
            s.waiters = []
            return w
        }
        for w in waiters { w.resume(returning: r) }
    }

    /// Waits until the write is durable (or failed).
    @discardableResult
    public func value() async throws(SessionLogError) -> [LoggedEvent] {
        let r = await withCheckedContinuation { (c: CheckedContinuation<Result<[LoggedEvent], SessionLogError>, Never>) in
            let done = state.withLock { s -> Result<[LoggedEvent], SessionLogError>? in
                if let r = s.result { return r }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
        return try r.get()
    }
}

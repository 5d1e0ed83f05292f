import Dispatch
import GRDB
import LevainClock
import Synchronization

/// An event ready for the writer: payload encoded, time formatted, ids
/// checked, all in the caller's task so the writer only hashes and inserts.
struct PreparedEvent: Sendable {
    var sessionID: String
    var runID: String?
    var tenant: String
    var time: String
    var type: String
    var payload: String
}

/// Group commit. Callers queue write requests; one writer loop, running on
/// GRDB's writer queue, takes everything queued, writes it in ONE
/// `BEGIN IMMEDIATE` transaction (one fsync), and only then resumes every
/// caller. Requests are applied in queue order, so events appended one after
/// the other by a task keep their order in their session.
///
/// A request that fails (a duplicate idempotency key, an unknown session) is
/// rolled back alone, through its own savepoint (a single-event request
/// needs none: SQLite undoes a failed statement), and the rest of the batch
/// commits. A failure of the transaction itself (I/O error, busy timeout)
/// fails every request in it.
///
/// Two refinements, both measured (benchmarks/log_appends.md): chain heads
/// are cached across transactions while `PRAGMA data_version` says no other
/// connection wrote, and after a commit the writer lingers up to 200 µs for
/// the callers it just resumed, so concurrent writers share one fsync
/// instead of alternating in two half-size batches.
final class GroupCommitter: Sendable {
    private struct Request: Sendable {
        var events: [PreparedEvent]
        var changes: [StateChange]
        var durability: SessionLog.Durability
        var complete: @Sendable (Result<[LoggedEvent], any Error>) -> Void
    }

    private struct State: Sendable {
        var queue: [Request] = []
        var writerActive = false
        /// Set while the writer lingers: wake it when the queue reaches this.
        var lingerTarget: Int?
        /// The wakeup semaphore was (or is about to be) signalled.
        var lingerSignalled = false
        var closed = false
        var statistics = SessionLog.Statistics()
    }

    /// Bounds one transaction (its latency and the WAL growth); a request is
    /// never split, so a single larger request still goes through whole.
    static let maximumEventsPerTransaction = 8192

    /// Chain heads (last seq and hash per session) kept across transactions.
    /// Only valid while no other connection has written: `version` is the
    /// writer connection's `PRAGMA data_version` when they were last right,
    /// and that value changes whenever another connection (another process
    /// included) commits. Only touched on the writer queue.
    private struct HeadCache: Sendable {
        var heads: [String: ChainHead] = [:]
        var version: Int?
    }

    /// Heads of this many sessions at most are kept between transactions.
    static let maximumCachedHeads = 65_536

    private let pool: any DatabaseWriter
    private let state = Mutex(State())
    private let headCache = Mutex(HeadCache())
    private let wakeup = DispatchSemaphore(value: 0)

    private let health: WriteHealth?

    init(pool: any DatabaseWriter, health: WriteHealth? = nil) {
        self.pool = pool
        self.health = health
    }

    var statistics: SessionLog.Statistics { state.withLock { $0.statistics } }

    func close() {
        state.withLock { $0.closed = true }
    }

    func submit(events: [PreparedEvent], changes: [StateChange],
                durability: SessionLog.Durability) async throws(SessionLogError) -> [LoggedEvent] {
        do {
            return try await withCheckedThrowingContinuation { continuation in
                enqueue(events: events, changes: changes, durability: durability) { continuation.resume(with: $0) }
            }
        } catch {
            throw SessionLogError.wrap(error, "cannot write to the session log")
        }
    }

    /// Queues a request now (in order with every other request) and calls
    /// `complete` once it is committed (and, if `.durable`, fsynced) or failed.
    func enqueue(events: [PreparedEvent], changes: [StateChange], durability: SessionLog.Durability = .durable,
                 complete: @escaping @Sendable (Result<[LoggedEvent], any Error>) -> Void) {
        let request = Request(events: events, changes: changes, durability: durability, complete: complete)
        enum Action { case rejected, queued, wakeWriter, startWriter }
        let action: Action = state.withLock { s in
            if s.closed { return .rejected }
            s.queue.append(request)
            if s.writerActive {
                if let target = s.lingerTarget, s.queue.count >= target {
                    s.lingerTarget = nil
                    s.lingerSignalled = true
                    return .wakeWriter
                }
                return .queued
            }
            s.writerActive = true
            return .startWriter
        }
        switch action {
        case .rejected:
            complete(.failure(SessionLogError(.closed, "the session log is closed")))
        case .queued:
            break
        case .wakeWriter:
            wakeup.signal()
        case .startWriter:
            pool.asyncWriteWithoutTransaction { db in self.drain(db) }
        }
    }

    /// The longest the writer waits for callers it just resumed to come back.
    static let maximumLinger: Double = 0.000_2

    /// The writer loop: runs until the queue is empty.
    private func drain(_ db: Database) {
        var synchronous = Synchronous.unknown
        var lastBatch = 0
        var arrivedDuringLast = 0
        var lastCommitSeconds = 0.0
        while true {
            if lastBatch > 1 {
                // Callers resumed by the last commit usually append again
                // within tens of microseconds. Without waiting for them, N
                // concurrent writers settle into two alternating half-size
                // batches (one commits while the other refills): twice the
                // fsyncs. Wait briefly for everyone instead.
                linger(until: lastBatch + arrivedDuringLast,
                       seconds: min(Self.maximumLinger, lastCommitSeconds / 2))
            }
            // The queue looks empty: the connection goes back to FULL before
            // the writer stops, so whatever else writes through it later
            // (the health probe) is fsynced as it says.
            if synchronous == .normal, state.withLock({ $0.queue.isEmpty }) {
                _ = setSynchronous(.full, &synchronous, [], db)
            }
            let batch: [Request] = state.withLock { s in
                if s.queue.isEmpty {
                    s.writerActive = false
                    return []
                }
                var count = 0
                var events = 0
                while count < s.queue.count {
                    let next = s.queue[count].events.count
                    if count > 0, events + next > Self.maximumEventsPerTransaction { break }
                    events += next
                    count += 1
                }
                let batch = Array(s.queue.prefix(count))
                s.queue.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }

            // One fsync for the batch if any request in it needs one; it
            // also makes every `.written` commit before it durable (they
            // are earlier frames of the same WAL file).
            let sync = batch.contains { $0.durability == .durable }
            let started = Monotonic.seconds()
            let outcome = setSynchronous(sync ? .full : .normal, &synchronous, batch, db)
                ?? commit(batch, db)
            lastCommitSeconds = Monotonic.seconds() - started
            lastBatch = batch.count
            arrivedDuringLast = state.withLock { s in
                switch outcome.committed {
                case true:
                    s.statistics.transactions += 1
                    if sync { s.statistics.syncedTransactions += 1 }
                    s.statistics.events += outcome.events
                    s.statistics.changes += outcome.changes
                    s.statistics.requests += outcome.requests
                    s.statistics.largestTransaction = max(s.statistics.largestTransaction, outcome.events)
                case false:
                    s.statistics.failedTransactions += 1
                }
                return s.queue.count
            }
            // Told before the callers are resumed: a caller that sees its
            // write fail finds the log marked failing.
            if outcome.committed {
                health?.succeeded()
            } else if case .failure(let error)? = outcome.results.first {
                health?.failed(SessionLogError.wrap(error, "cannot commit to the session log"))
            }
            for (request, result) in zip(batch, outcome.results) {
                request.complete(result)
            }
        }
    }

    /// The writer connection's `PRAGMA synchronous`, as last set here.
    private enum Synchronous { case unknown, normal, full }

    /// Sets the writer's synchronous level for the next commit: FULL fsyncs
    /// the WAL at commit, NORMAL only writes it (a crash of this process
    /// loses nothing; a power loss before the next FULL commit may). Nil
    /// when set; a failed outcome for the whole batch otherwise (the batch
    /// is not written: a `.durable` request must never commit unsynced).
    private func setSynchronous(_ wanted: Synchronous, _ current: inout Synchronous,
                                _ batch: [Request], _ db: Database) -> Outcome? {
        guard wanted != current else { return nil }
        do {
            // Prepared once per connection: a waited exec switches up to
            // four times.
            try db.cachedStatement(sql: wanted == .full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL").execute()
            current = wanted
            return nil
        } catch {
            current = .unknown
            let failure = SessionLogError.wrap(error, "cannot set the session log's synchronous level")
            return Outcome(results: batch.map { _ in .failure(failure) }, committed: false)
        }
    }

    /// Blocks the writer until `target` requests are queued or `seconds` pass.
    private func linger(until target: Int, seconds: Double) {
        let wait = state.withLock { s in
            if s.queue.count >= target || s.closed { return false }
            s.lingerTarget = target
            s.lingerSignalled = false
            return true
        }
        guard wait else { return }
        let result = wakeup.wait(timeout: .now() + .nanoseconds(Int(seconds * 1e9)))
        let consume = state.withLock { s in
            // Timed out while a caller was signalling: take that signal now
            // so the next linger does not return early.
            let pending = result == .timedOut && s.lingerSignalled
            s.lingerTarget = nil
            s.lingerSignalled = false
            return pending
        }
        if consume { wakeup.wait() }
    }

    private struct Outcome {
        var results: [Result<[LoggedEvent], any Error>]
        var committed: Bool
        var events = 0
        var changes = 0
        var requests = 0
    }

    /// Forgets the cached chain heads (after a write outside the committer).
    func invalidateHeads() {
        headCache.withLock { $0 = HeadCache() }
    }

    /// The chain head of a session.
    private struct ChainHead: Sendable {
        var seq: Int64
        var hash: String
        var hashBytes: [UInt8]
    }

    private func commit(_ batch: [Request], _ db: Database) -> Outcome {
        var results = [Result<[LoggedEvent], any Error>](
            repeating: .failure(SessionLogError(.database, "not written")), count: batch.count)
        var outcome = Outcome(results: [], committed: false)
        var cache = headCache.withLock { cache in
            let taken = cache
            cache = HeadCache()
            return taken
        }
        do {
            try db.inTransaction(.immediate) {
                // We hold the write lock now. Heads cached from our earlier
                // transactions are still right only if no other connection
                // committed since; otherwise they are read again, inside this
                // transaction, so another process's appends are always seen.
                let version = try Int.fetchOne(db.cachedStatement(sql: "PRAGMA data_version"))
                if version == nil || version != cache.version {
                    cache.heads.removeAll(keepingCapacity: true)
                }
                cache.version = version
                var heads = cache.heads
                defer { cache.heads = heads }
                for (index, request) in batch.enumerated() {
                    var undo: [(String, ChainHead?)] = []
                    var logged: [LoggedEvent] = []
                    logged.reserveCapacity(request.events.count)
                    do {
                        if request.changes.isEmpty && request.events.count == 1 {
                            // The common case needs no savepoint: a failed
                            // statement is rolled back by SQLite by itself.
                            logged.append(try Self.insert(request.events[0], db, &heads, &undo))
                        } else {
                            try db.inSavepoint {
                                for change in request.changes {
                                    try Self.apply(change, db)
                                }
                                for event in request.events {
                                    logged.append(try Self.insert(event, db, &heads, &undo))
                                }
                                return .commit
                            }
                        }
                        results[index] = .success(logged)
                        outcome.events += logged.count
                        outcome.changes += request.changes.count
                        outcome.requests += 1
                    } catch let error where Self.isRequestError(error) {
                        for (session, head) in undo.reversed() { heads[session] = head }
                        results[index] = .failure(SessionLogError.wrap(error, "write rejected"))
                    }
                }
                return .commit
            }
            outcome.committed = true
            outcome.results = results
            if cache.heads.count > Self.maximumCachedHeads { cache = HeadCache() }
        } catch {
            // Rolled back: what we cached during it is wrong.
            cache = HeadCache()
            let failure = SessionLogError.wrap(error, "cannot commit to the session log")
            outcome = Outcome(results: batch.map { _ in .failure(failure) }, committed: false)
        }
        headCache.withLock { $0 = cache }
        return outcome
    }

    /// Errors that concern one request only; anything else aborts the batch.
    private static func isRequestError(_ error: any Error) -> Bool {
        if let error = error as? SessionLogError {
            // Ours (no SQLite code), or a constraint we translated.
            return error.sqliteCode == nil || error.code == .duplicateID
        }
        if let error = error as? DatabaseError {
            return error.resultCode == .SQLITE_CONSTRAINT
        }
        return false
    }

    // MARK: - Events

    static let headSQL = "SELECT seq, hash FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1"
    static let sessionExistsSQL = "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)"
    static let insertSQL = """
        INSERT INTO events (session_id, seq, run_id, tenant, time, type, payload, prev_hash, hash)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    private static func insert(_ event: PreparedEvent, _ db: Database,
                               _ heads: inout [String: ChainHead],
                               _ undo: inout [(String, ChainHead?)]) throws -> LoggedEvent {
        let head: ChainHead
        if let cached = heads[event.sessionID] {
            head = cached
        } else if let row = try Row.fetchOne(db.cachedStatement(sql: headSQL), arguments: [event.sessionID]) {
            let hash = try row.decode(String.self, atIndex: 1)
            guard let bytes = EventHash.bytes(fromHex: hash) else {
                throw SessionLogError(.corrupt, """
                    the last event of session \(event.sessionID) has a malformed hash; \
                    the chain cannot be extended (run `levain log verify`)
                    """)
            }
            head = ChainHead(seq: try row.decode(Int64.self, atIndex: 0), hash: hash, hashBytes: bytes)
        } else {
            let exists = try Bool.fetchOne(db.cachedStatement(sql: sessionExistsSQL), arguments: [event.sessionID])
            guard exists == true else {
                throw SessionLogError(.unknownSession, "no session \(event.sessionID) in the session log")
            }
            head = ChainHead(seq: 0, hash: EventHash.genesis, hashBytes: [UInt8](repeating: 0, count: 32))
        }

        let seq = head.seq + 1
        let digest = EventHash.digest(
            sessionID: event.sessionID.utf8, seq: seq, runID: event.runID?.utf8, tenant: event.tenant.utf8,
            time: event.time.utf8, type: event.type.utf8, payload: event.payload.utf8, prevHash: head.hashBytes)
        let hash = EventHash.hex(digest)
        try db.cachedStatement(sql: insertSQL).execute(arguments: [
            event.sessionID, seq, event.runID, event.tenant, event.time, event.type, event.payload,
            head.hash, hash,
        ])
        undo.append((event.sessionID, heads[event.sessionID]))
        heads[event.sessionID] = ChainHead(seq: seq, hash: hash, hashBytes: digest)
        return LoggedEvent(
            id: db.lastInsertedRowID, sessionID: event.sessionID, seq: seq, runID: event.runID,
            tenant: event.tenant, time: event.time, type: event.type, payloadJSON: event.payload,
            prevHash: head.hash, hash: hash)
    }

    // MARK: - State changes

    private static func apply(_ change: StateChange, _ db: Database) throws {
        let (sql, arguments) = StateSQL.statement(for: change)
        switch change {
        case .insertSession(let s):
            do {
                try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(arguments.map(\.databaseValue)))
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw SessionLogError(.duplicateID, "session \(s.id) already exists", underlying: error)
            }
        case .updateSession(let u):
            try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(arguments.map(\.databaseValue)))
            guard db.changesCount > 0 else {
                throw SessionLogError(.unknownSession, "no session \(u.id) in the session log")
            }
        case .insertRun(let r):
            if let key = r.idempotencyKey, let existing = try String.fetchOne(db.cachedStatement(sql: StateSQL.runByKey), arguments: [r.sessionID, key]) {
                throw SessionLogError(
                    .duplicateIdempotencyKey,
                    "session \(r.sessionID) already has run \(existing) for idempotency key \(key)",
                    existingRunID: existing)
            }
            let sessionExists = try Bool.fetchOne(db.cachedStatement(sql: sessionExistsSQL), arguments: [r.sessionID])
            guard sessionExists == true else {
                throw SessionLogError(.unknownSession, "no session \(r.sessionID) in the session log")
            }
            do {
                try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(arguments.map(\.databaseValue)))
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw SessionLogError(.duplicateID, "run \(r.id) already exists", underlying: error)
            }
        case .updateRun(let u):
            try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(arguments.map(\.databaseValue)))
            guard db.changesCount > 0 else {
                throw SessionLogError(.unknownRun, "no run \(u.id) in the session log")
            }
        }
    }
}

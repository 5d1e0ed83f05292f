import GRDB
import LevainJSON

extension SessionLog {
    // MARK: - Events

    /// The events of a session in `seq` order, after `afterSeq`.
    public func events(session: String, afterSeq: Int64 = 0, limit: Int? = nil) throws(SessionLogError) -> [LoggedEvent] {
        try read("cannot read the events of session \(session)") { db in
            try Self.fetchEvents(db, sql: """
                SELECT \(Self.eventColumns) FROM events
                WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?
                """, arguments: [session, afterSeq, limit ?? -1])
        }
    }

    /// The events of a run, in global order.
    public func events(run: String) throws(SessionLogError) -> [LoggedEvent] {
        try read("cannot read the events of run \(run)") { db in
            try Self.fetchEvents(db, sql: """
                SELECT \(Self.eventColumns) FROM events WHERE run_id = ? ORDER BY id
                """, arguments: [run])
        }
    }

    /// Events of every session in global order after `afterID` (for tailing:
    /// pass the last id seen).
    public func events(afterID: Int64, limit: Int = 1000) throws(SessionLogError) -> [LoggedEvent] {
        try read("cannot read events") { db in
            try Self.fetchEvents(db, sql: """
                SELECT \(Self.eventColumns) FROM events WHERE id > ? ORDER BY id LIMIT ?
                """, arguments: [afterID, limit])
        }
    }

    /// The newest event of a session (its chain head), if any.
    public func lastEvent(session: String) throws(SessionLogError) -> LoggedEvent? {
        try read("cannot read the events of session \(session)") { db in
            try Self.fetchEvents(db, sql: """
                SELECT \(Self.eventColumns) FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1
                """, arguments: [session]).first
        }
    }

    /// The largest event id, 0 for an empty log.
    public func lastEventID() throws(SessionLogError) -> Int64 {
        try read("cannot read events") { db in
            try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM events") ?? 0
        }
    }

    // MARK: - Sessions

    /// Sessions, oldest first, optionally filtered.
    public func sessions(tenant: String? = nil, status: SessionStatus? = nil) throws(SessionLogError) -> [SessionRecord] {
        try read("cannot read sessions") { db in
            var sql = "SELECT \(Self.sessionColumns) FROM sessions"
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let tenant {
                conditions.append("tenant = ?")
                arguments += [tenant]
            }
            if let status {
                conditions.append("status = ?")
                arguments += [status.rawValue]
            }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY created_at, id"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.session(from:))
        }
    }

    public func session(id: String) throws(SessionLogError) -> SessionRecord? {
        try read("cannot read session \(id)") { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.sessionColumns) FROM sessions WHERE id = ?", arguments: [id])
                .map(Self.session(from:))
        }
    }

    // MARK: - Runs

    /// Runs, oldest first, optionally of one session and one status.
    public func runs(session: String? = nil, status: RunStatus? = nil) throws(SessionLogError) -> [RunRecord] {
        try read("cannot read runs") { db in
            var sql = "SELECT \(Self.runColumns) FROM runs"
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let session {
                conditions.append("session_id = ?")
                arguments += [session]
            }
            if let status {
                conditions.append("status = ?")
                arguments += [status.rawValue]
            }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY created_at, id"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.run(from:))
        }
    }

    public func run(id: String) throws(SessionLogError) -> RunRecord? {
        try read("cannot read run \(id)") { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.runColumns) FROM runs WHERE id = ?", arguments: [id])
                .map(Self.run(from:))
        }
    }

    /// The run of `session` holding `idempotencyKey`, if any.
    public func run(session: String, idempotencyKey: String) throws(SessionLogError) -> RunRecord? {
        try read("cannot read runs of session \(session)") { db in
            try Row.fetchOne(db, sql: """
                SELECT \(Self.runColumns) FROM runs WHERE session_id = ? AND idempotency_key = ?
                """, arguments: [session, idempotencyKey]).map(Self.run(from:))
        }
    }

    /// Runs that are queued, starting or running: what a restarted
    /// supervisor must recover (retry or fail per `retryPolicy`).
    public func inFlightRuns() throws(SessionLogError) -> [RunRecord] {
        try read("cannot read runs") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.runColumns) FROM runs
                WHERE status IN ('queued', 'starting', 'running') ORDER BY created_at, id
                """).map(Self.run(from:))
        }
    }

    // MARK: - Plumbing

    func read<T>(_ context: @autoclosure () -> String,
                 _ body: (Database) throws -> T) throws(SessionLogError) -> T {
        try mapErrors(context()) { try pool.read(body) }
    }

    static let eventColumns = "id, session_id, seq, run_id, tenant, time, type, payload, prev_hash, hash"

    static func fetchEvents(_ db: Database, sql: String, arguments: StatementArguments) throws -> [LoggedEvent] {
        try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map(event(from:))
    }

    static func event(from row: Row) throws -> LoggedEvent {
        LoggedEvent(
            id: try row.decode(Int64.self, atIndex: 0),
            sessionID: try row.decode(String.self, atIndex: 1),
            seq: try row.decode(Int64.self, atIndex: 2),
            runID: try row.decode(String?.self, atIndex: 3),
            tenant: try row.decode(String.self, atIndex: 4),
            time: try row.decode(String.self, atIndex: 5),
            type: try row.decode(String.self, atIndex: 6),
            payloadJSON: try row.decode(String.self, atIndex: 7),
            prevHash: try row.decode(String.self, atIndex: 8),
            hash: try row.decode(String.self, atIndex: 9))
    }

    static let sessionColumns =
        "id, tenant, kind, policy, labels, status, workspace, limits, created_at, closed_at, supervisor"

    static func session(from row: Row) throws -> SessionRecord {
        let id = try row.decode(String.self, atIndex: 0)
        func malformed(_ what: String) -> SessionLogError {
            SessionLogError(.malformedRow, "session \(id): \(what)")
        }
        let kindText = try row.decode(String.self, atIndex: 2)
        guard let kind = SessionKind(rawValue: kindText) else { throw malformed("unknown kind '\(kindText)'") }
        let statusText = try row.decode(String.self, atIndex: 5)
        guard let status = SessionStatus(rawValue: statusText) else { throw malformed("unknown status '\(statusText)'") }
        var labels: [String: String] = [:]
        for (key, value) in try JSONValue.parseObject(try row.decode(String.self, atIndex: 4)) {
            guard case .string(let s) = value else { throw malformed("label \(key) is not a string") }
            labels[key] = s
        }
        return SessionRecord(
            id: id,
            tenant: try row.decode(String.self, atIndex: 1),
            kind: kind,
            policy: try row.decode(String.self, atIndex: 3),
            labels: labels,
            status: status,
            workspace: try row.decode(String?.self, atIndex: 6),
            limits: try JSONValue.parseObject(try row.decode(String.self, atIndex: 7)),
            createdAt: try time(row, 8, malformed),
            closedAt: try optionalTime(row, 9, malformed),
            supervisor: try row.decode(String?.self, atIndex: 10))
    }

    static let runColumns = """
        id, session_id, tenant, status, request, idempotency_key, attempt, exit_code, signal, error, \
        created_at, started_at, finished_at, retry_policy
        """

    static func run(from row: Row) throws -> RunRecord {
        let id = try row.decode(String.self, atIndex: 0)
        func malformed(_ what: String) -> SessionLogError {
            SessionLogError(.malformedRow, "run \(id): \(what)")
        }
        let statusText = try row.decode(String.self, atIndex: 3)
        guard let status = RunStatus(rawValue: statusText) else { throw malformed("unknown status '\(statusText)'") }
        let retryText = try row.decode(String.self, atIndex: 13)
        guard let retry = RetryPolicy(rawValue: retryText) else { throw malformed("unknown retry policy '\(retryText)'") }
        return RunRecord(
            id: id,
            sessionID: try row.decode(String.self, atIndex: 1),
            tenant: try row.decode(String.self, atIndex: 2),
            status: status,
            request: try JSONValue.parseObject(try row.decode(String.self, atIndex: 4)),
            idempotencyKey: try row.decode(String?.self, atIndex: 5),
            attempt: try row.decode(Int.self, atIndex: 6),
            exitCode: try row.decode(Int32?.self, atIndex: 7),
            signal: try row.decode(Int32?.self, atIndex: 8),
            error: try row.decode(String?.self, atIndex: 9),
            createdAt: try time(row, 10, malformed),
            startedAt: try optionalTime(row, 11, malformed),
            finishedAt: try optionalTime(row, 12, malformed),
            retryPolicy: retry)
    }

    private static func time(_ row: Row, _ index: Int, _ malformed: (String) -> SessionLogError) throws -> LogTimestamp {
        let text = try row.decode(String.self, atIndex: index)
        guard let time = LogTimestamp(rfc3339: text) else { throw malformed("bad time '\(text)'") }
        return time
    }

    private static func optionalTime(_ row: Row, _ index: Int,
                                     _ malformed: (String) -> SessionLogError) throws -> LogTimestamp? {
        guard let text = try row.decode(String?.self, atIndex: index) else { return nil }
        guard let time = LogTimestamp(rfc3339: text) else { throw malformed("bad time '\(text)'") }
        return time
    }
}

#if canImport(Glibc)
import Glibc
#endif
import GRDBSQLite

/// A short-lived writer that appends to an existing session log through
/// SQLite's C API: for a one-shot `levain run`, which records a handful of
/// events and exits. It writes exactly what `SessionLog.record(_:and:)`
/// writes (the same SQL, the same hash chain, `synchronous=FULL`, one
/// transaction per call), without GRDB's pool, migrator and dispatch
/// queues, whose start-up costs milliseconds a jail start does not have.
///
/// It opens only a log whose schema is in place; `.notASessionLog` (or
/// `.logNotFound`) tells the caller to create it with `SessionLog` first.
/// Events of a session must all come through one writer (it reads the
/// chain's head from the table inside each transaction, so another writer
/// appending to the same session meanwhile is not a problem, only slower).
public final class DirectWriter: @unchecked Sendable {
    private var db: OpaquePointer?
    public let path: String

    public init(path: String) throws(SessionLogError) {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else { throw SessionLogError(.logNotFound, "no session log at \(path)") }
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        db = handle
        guard rc == SQLITE_OK, handle != nil else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            close()
            throw SessionLogError(.openFailed, "cannot open the session log at \(path): \(message)")
        }
        sqlite3_busy_timeout(handle, Int32(SessionLog.busyTimeout * 1000))
        do throws(SessionLogError) {
            try execute("PRAGMA foreign_keys = ON")
            try execute("PRAGMA synchronous = FULL")
            guard try queryText("PRAGMA journal_mode")?.lowercased() == "wal" else {
                throw SessionLogError(.notASessionLog, "\(path) is not in WAL mode")
            }
            // The schema: every migration the library knows has been applied.
            let applied = try queryText("SELECT group_concat(identifier) FROM grdb_migrations") ?? ""
            guard applied == Schema.migrationIdentifiers.joined(separator: ",") else {
                throw SessionLogError(.notASessionLog, "\(path) has schema migrations [\(applied)], not [\(Schema.migrationIdentifiers.joined(separator: ","))]")
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    public func close() {
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    /// Applies `changes`, then appends `events`, in one durable transaction.
    public func record(_ events: [NewEvent], and changes: [StateChange]) throws(SessionLogError) {
        var prepared: [PreparedEvent] = []
        for event in events { prepared.append(try SessionLog.prepare(event)) }
        for change in changes { try SessionLog.validate(change) }
        try execute("BEGIN IMMEDIATE")
        do throws(SessionLogError) {
            for change in changes {
                let (sql, values) = StateSQL.statement(for: change)
                try run(sql, values)
                if sqlite3_changes(db) == 0 {
                    throw SessionLogError(.database, "the change \(change) touched no row")
                }
            }
            var heads: [String: (seq: Int64, hash: String, bytes: [UInt8])] = [:]
            for event in prepared {
                let head: (seq: Int64, hash: String, bytes: [UInt8])
                if let cached = heads[event.sessionID] {
                    head = cached
                } else if let row = try queryHead(event.sessionID) {
                    guard let bytes = EventHash.bytes(fromHex: row.hash) else {
                        throw SessionLogError(.corrupt, "the last event of session \(event.sessionID) has a malformed hash")
                    }
                    head = (row.seq, row.hash, bytes)
                } else {
                    head = (0, EventHash.genesis, [UInt8](repeating: 0, count: 32))
                }
                let seq = head.seq + 1
                let digest = EventHash.digest(
                    sessionID: event.sessionID.utf8, seq: seq, runID: event.runID?.utf8, tenant: event.tenant.utf8,
                    time: event.time.utf8, type: event.type.utf8, payload: event.payload.utf8, prevHash: head.bytes)
                let hash = EventHash.hex(digest)
                try run(GroupCommitter.insertSQL, [
                    .text(event.sessionID), .int(seq), StateSQL.Value(event.runID), .text(event.tenant), .text(event.time),
                    .text(event.type), .text(event.payload), .text(head.hash), .text(hash),
                ])
                heads[event.sessionID] = (seq, hash, digest)
            }
            try execute("COMMIT")
        } catch {
            _ = sqlite3_exec(db, "ROLLBACK", nil, nil, nil)
            throw error
        }
    }

    // MARK: SQLite

    private func failure(_ what: String) -> SessionLogError {
        let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
        return SessionLogError(.database, "\(what): \(message)")
    }

    private func execute(_ sql: String) throws(SessionLogError) {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw failure(sql) }
    }

    private func prepare(_ sql: String) throws(SessionLogError) -> OpaquePointer {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else { throw failure("preparing \(sql)") }
        return stmt
    }

    private func bind(_ stmt: OpaquePointer, _ values: [StateSQL.Value]) {
        // SQLITE_TRANSIENT: SQLite copies the text.
        let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
        for (i, v) in values.enumerated() {
            let index = Int32(i + 1)
            switch v {
            case .text(let s): sqlite3_bind_text(stmt, index, s, -1, transient)
            case .int(let n): sqlite3_bind_int64(stmt, index, n)
            case .null: sqlite3_bind_null(stmt, index)
            }
        }
    }

    private func run(_ sql: String, _ values: [StateSQL.Value]) throws(SessionLogError) {
        let stmt = try prepare(sql)
        defer { sqlite3_finalize(stmt) }
        bind(stmt, values)
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_DONE else {
            if rc == SQLITE_CONSTRAINT { throw SessionLogError(.duplicateID, "\(failure("constraint"))") }
            throw failure(sql)
        }
    }

    private func queryText(_ sql: String) throws(SessionLogError) -> String? {
        let stmt = try prepare(sql)
        defer { sqlite3_finalize(stmt) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_ROW else {
            if rc == SQLITE_DONE { return nil }
            throw failure(sql)
        }
        guard let text = sqlite3_column_text(stmt, 0) else { return nil }
        return String(cString: text)
    }

    private func queryHead(_ session: String) throws(SessionLogError) -> (seq: Int64, hash: String)? {
        let stmt = try prepare(GroupCommitter.headSQL)
        defer { sqlite3_finalize(stmt) }
        bind(stmt, [.text(session)])
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_ROW else {
            if rc == SQLITE_DONE { return nil }
            throw failure("reading the head of session \(session)")
        }
        let seq = sqlite3_column_int64(stmt, 0)
        guard let text = sqlite3_column_text(stmt, 1) else { return nil }
        return (seq, String(cString: text))
    }
}

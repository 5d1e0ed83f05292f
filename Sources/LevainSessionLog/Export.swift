import GRDB

extension SessionLog {
    /// Writes events as JSON Lines: one object per event with every column
    /// (`id, session_id, seq, run_id, tenant, time, type, payload, prev_hash,
    /// hash`), no trailing newline in the string passed to `write`.
    /// `payload` is the stored text as a JSON string, so an export can be
    /// re-hashed byte for byte (`jq '.payload | fromjson'` to read it).
    ///
    /// One session in seq order, or every event in global (id) order. The
    /// export reads one consistent snapshot; `write` runs inside it, so keep
    /// it to I/O.
    public func exportJSONL(session: String? = nil, to write: (String) throws -> Void) throws(SessionLogError) {
        try read("cannot export the session log at \(path)") { db in
            let sql: String
            let arguments: StatementArguments
            if let session {
                sql = "SELECT \(Self.eventColumns) FROM events WHERE session_id = ? ORDER BY seq"
                arguments = [session]
            } else {
                sql = "SELECT \(Self.eventColumns) FROM events ORDER BY id"
                arguments = []
            }
            let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
            while let row = try rows.next() {
                try write(try Self.event(from: row).exportJSON())
            }
        }
    }
}

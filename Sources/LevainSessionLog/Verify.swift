import FoundationEssentials
import GRDB

/// The result of `SessionLog.verify`.
public struct VerifyReport: Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: Sendable, Equatable {
            /// The stored hash is not the hash of the stored columns.
            case hashMismatch(stored: String, computed: String)
            /// `prev_hash` is not the hash of the previous event (or not 64
            /// zeros for seq 1).
            case prevHashMismatch(expected: String, found: String)
            /// A seq is missing (a deleted event) or the first seq is not 1.
            case seqGap(expected: Int64, found: Int64)
            /// The event's id is lower than the previous event's of the
            /// session: rows were reordered.
            case outOfOrder(previousID: Int64)
            /// A hash column that is not 64 lowercase hex digits.
            case malformed(String)
        }

        public var sessionID: String
        public var seq: Int64
        public var eventID: Int64
        public var kind: Kind

        public var description: String {
            let at = "session \(sessionID) seq \(seq) (event id \(eventID))"
            switch kind {
            case .hashMismatch(let stored, let computed):
                return "\(at): hash mismatch: the contents hash to \(computed), the stored hash is \(stored)"
            case .prevHashMismatch(let expected, let found):
                return "\(at): prev_hash is \(found), the previous event's hash is \(expected)"
            case .seqGap(let expected, let found):
                return "\(at): gap in seq: expected \(expected), found \(found) (events deleted)"
            case .outOfOrder(let previousID):
                return "\(at): id \(eventID) comes after id \(previousID) in seq order (rows reordered)"
            case .malformed(let what):
                return "\(at): \(what)"
            }
        }
    }

    /// Sessions walked (sessions with at least one event).
    public var sessionsChecked = 0
    /// Events read.
    public var eventsChecked = 0
    /// The first bad event of each bad session, in session id order.
    public var problems: [Problem] = []
    /// What `PRAGMA quick_check` reported, when the whole log was verified
    /// (empty when it said "ok").
    public var integrityErrors: [String] = []

    public var ok: Bool { problems.isEmpty && integrityErrors.isEmpty }

    public var description: String {
        var lines = ["\(ok ? "OK" : "FAILED"): \(eventsChecked) events in \(sessionsChecked) sessions checked, "
                     + "\(problems.count) bad sessions"]
        lines += problems.map(\.description)
        lines += integrityErrors.map { "sqlite integrity: \($0)" }
        return lines.joined(separator: "\n")
    }
}

extension SessionLog {
    /// Walks every session's events (or one session's) in seq order,
    /// recomputing each hash from the bytes stored in the file and checking
    /// the links; for the whole log also runs SQLite's `quick_check`.
    /// A database SQLite itself finds corrupt throws `.corrupt`.
    public func verify(session: String? = nil) throws(SessionLogError) -> VerifyReport {
        try read("cannot verify the session log at \(path)") { db in
            var report = VerifyReport()
            // NOT INDEXED: read every column from the table rows themselves,
            // never from a copy in the (session_id, seq) index.
            var sql = """
                SELECT id, seq, CAST(session_id AS BLOB), run_id IS NULL, CAST(run_id AS BLOB),
                       CAST(tenant AS BLOB), CAST(time AS BLOB), CAST(type AS BLOB), CAST(payload AS BLOB),
                       CAST(prev_hash AS BLOB), CAST(hash AS BLOB)
                FROM events NOT INDEXED
                """
            var arguments: StatementArguments = []
            if let session {
                sql += " WHERE session_id = ?"
                arguments = [session]
            }
            sql += " ORDER BY session_id, seq"

            var walker = ChainWalker()
            let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
            while let row = try rows.next() {
                report.eventsChecked += 1
                if let problem = try walker.check(row) {
                    report.problems.append(problem)
                }
            }
            report.sessionsChecked = walker.sessions

            if let session, report.sessionsChecked == 0 {
                let exists = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)",
                                               arguments: [session]) ?? false
                if !exists {
                    throw SessionLogError(.unknownSession, "no session \(session) in the session log")
                }
            }
            if session == nil {
                let results = try String.fetchAll(db, sql: "PRAGMA quick_check")
                if results != ["ok"] { report.integrityErrors = results }
            }
            return report
        }
    }
}

/// Per-session state of the walk (rows arrive ordered by session, seq).
private struct ChainWalker {
    var sessions = 0
    private var currentSession: Data?
    private var expectedSeq: Int64 = 1
    private var previousHash = Data(EventHash.genesis.utf8)
    private var previousID: Int64 = .min
    private var failed = false

    private static let zeros = [UInt8](repeating: 0, count: 32)

    mutating func check(_ row: Row) throws -> VerifyReport.Problem? {
        let id = try row.decode(Int64.self, atIndex: 0)
        let seq = try row.decode(Int64.self, atIndex: 1)
        let sessionID = try row.decode(Data.self, atIndex: 2)
        if sessionID != currentSession {
            currentSession = sessionID
            sessions += 1
            expectedSeq = 1
            previousHash = Data(EventHash.genesis.utf8)
            previousID = .min
            failed = false
        }
        // Only the first bad event of a session is reported: after it the
        // chain has no trustworthy anchor.
        if failed { return nil }

        func problem(_ kind: VerifyReport.Problem.Kind) -> VerifyReport.Problem {
            failed = true
            return VerifyReport.Problem(sessionID: String(decoding: sessionID, as: UTF8.self),
                                        seq: seq, eventID: id, kind: kind)
        }

        if seq != expectedSeq {
            return problem(.seqGap(expected: expectedSeq, found: seq))
        }
        let runIsNull = try row.decode(Bool.self, atIndex: 3)
        let runID = runIsNull ? nil : try row.decode(Data.self, atIndex: 4)
        let prevHashText = try row.decode(Data.self, atIndex: 9)
        let hashText = try row.decode(Data.self, atIndex: 10)
        guard let prevHashBytes = EventHash.bytes(fromHex: prevHashText) else {
            return problem(.malformed("prev_hash is not 64 lowercase hex digits"))
        }
        guard EventHash.bytes(fromHex: hashText) != nil else {
            return problem(.malformed("hash is not 64 lowercase hex digits"))
        }
        let computed = EventHash.hex(EventHash.digest(
            sessionID: sessionID, seq: seq, runID: runID,
            tenant: try row.decode(Data.self, atIndex: 5),
            time: try row.decode(Data.self, atIndex: 6),
            type: try row.decode(Data.self, atIndex: 7),
            payload: try row.decode(Data.self, atIndex: 8),
            prevHash: prevHashBytes))
        if !hashText.elementsEqual(computed.utf8) {
            return problem(.hashMismatch(stored: String(decoding: hashText, as: UTF8.self), computed: computed))
        }
        if prevHashText != previousHash {
            return problem(.prevHashMismatch(expected: String(decoding: previousHash, as: UTF8.self),
                                             found: String(decoding: prevHashText, as: UTF8.self)))
        }
        if id <= previousID {
            return problem(.outOfOrder(previousID: previousID))
        }
        expectedSeq += 1
        previousHash = hashText
        previousID = id
        return nil
    }
}

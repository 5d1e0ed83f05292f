import GRDB
import LevainJSON

/// The SQL of the state tables' changes, shared by the group committer
/// (GRDB) and the direct writer (SQLite's C API).
enum StateSQL {
    /// A bound value, for either path.
    enum Value {
        case text(String)
        case int(Int64)
        case null

        init(_ s: String?) { self = s.map { .text($0) } ?? .null }
        init(_ i: Int32?) { self = i.map { .int(Int64($0)) } ?? .null }
        init(_ i: Int?) { self = i.map { .int(Int64($0)) } ?? .null }

        var databaseValue: DatabaseValue {
            switch self {
            case .text(let s): s.databaseValue
            case .int(let i): i.databaseValue
            case .null: .null
            }
        }
    }

    static let runByKey = "SELECT id FROM runs WHERE session_id = ? AND idempotency_key = ?"

    static func statement(for change: StateChange) -> (String, [Value]) {
        switch change {
        case .insertSession(let s):
            return ("""
                INSERT INTO sessions (id, tenant, kind, policy, labels, status, workspace, limits,
                                      created_at, closed_at, supervisor)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [
                    .text(s.id), .text(s.tenant), .text(s.kind.rawValue), .text(s.policy), .text(JSONValue(s.labels).encoded()),
                    .text(s.status.rawValue), Value(s.workspace), .text(s.limits.encodedJSON()), .text(s.createdAt.rfc3339),
                    Value(s.closedAt?.rfc3339), Value(s.supervisor),
                ])
        case .updateSession(let u):
            return ("""
                UPDATE sessions SET status = COALESCE(?, status), closed_at = COALESCE(?, closed_at),
                    supervisor = COALESCE(?, supervisor), workspace = COALESCE(?, workspace)
                WHERE id = ?
                """, [Value(u.status?.rawValue), Value(u.closedAt?.rfc3339), Value(u.supervisor), Value(u.workspace), .text(u.id)])
        case .insertRun(let r):
            return ("""
                INSERT INTO runs (id, session_id, tenant, status, request, idempotency_key, attempt,
                                  exit_code, signal, error, created_at, started_at, finished_at, retry_policy)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [
                    .text(r.id), .text(r.sessionID), .text(r.tenant), .text(r.status.rawValue), .text(r.request.encodedJSON()),
                    Value(r.idempotencyKey), .int(Int64(r.attempt)), Value(r.exitCode), Value(r.signal), Value(r.error),
                    .text(r.createdAt.rfc3339), Value(r.startedAt?.rfc3339), Value(r.finishedAt?.rfc3339), .text(r.retryPolicy.rawValue),
                ])
        case .updateRun(let u):
            return ("""
                UPDATE runs SET status = COALESCE(?, status), exit_code = COALESCE(?, exit_code),
                    signal = COALESCE(?, signal), error = COALESCE(?, error),
                    started_at = COALESCE(?, started_at), finished_at = COALESCE(?, finished_at),
                    attempt = COALESCE(?, attempt)
                WHERE id = ?
                """, [
                    Value(u.status?.rawValue), Value(u.exitCode), Value(u.signal), Value(u.error), Value(u.startedAt?.rfc3339),
                    Value(u.finishedAt?.rfc3339), Value(u.attempt), .text(u.id),
                ])
        }
    }
}

import LevainJSON
import LevainSessionLog

/// The API's JSON shapes of the log's records (docs/API.md); the CLI uses
/// them too when it reads the log file directly, so both print the same.
public enum APIJSON {
    /// `GET /v1/usage` and `levain usage --json`.
    public static func usage(_ total: ModelUsage, rows: [ModelUsageRow], by: String) -> JSONValue {
        func one(_ u: ModelUsage) -> JSONObject {
            ["requests": .int(u.requests), "input_tokens": .int(u.inputTokens), "output_tokens": .int(u.outputTokens),
             "tokens": .int(u.tokens), "cost": .double(u.cost)]
        }
        return .object(["total": .object(one(total)), "by": .string(by),
                        "rows": .array(rows.map { r in var o = one(r.usage); o["key"] = .string(r.key); return .object(o) })])
    }

    public static func session(_ s: SessionRecord) -> JSONValue {
        var o: JSONObject = [
            "id": .string(s.id), "tenant": .string(s.tenant), "kind": .string(s.kind.rawValue), "policy": .string(s.policy),
            "labels": .object(s.labels.mapValues { .string($0) }), "status": .string(s.status.rawValue),
            "limits": .object(s.limits), "created_at": .string(s.createdAt.rfc3339),
        ]
        o["workspace"] = s.workspace.map { .string($0) } ?? .null
        o["closed_at"] = s.closedAt.map { .string($0.rfc3339) } ?? .null
        return .object(o)
    }

    public static func run(_ r: RunRecord) -> JSONValue {
        var o: JSONObject = [
            "id": .string(r.id), "session": .string(r.sessionID), "tenant": .string(r.tenant), "status": .string(r.status.rawValue),
            "request": .object(r.request), "attempt": JSONValue(r.attempt), "created_at": .string(r.createdAt.rfc3339),
            "retry": .string(r.retryPolicy.rawValue),
        ]
        o["idempotency_key"] = r.idempotencyKey.map { .string($0) } ?? .null
        o["exit_code"] = r.exitCode.map { JSONValue($0) } ?? .null
        o["signal"] = r.signal.map { JSONValue($0) } ?? .null
        o["error"] = r.error.map { .string($0) } ?? .null
        o["started_at"] = r.startedAt.map { .string($0.rfc3339) } ?? .null
        o["finished_at"] = r.finishedAt.map { .string($0.rfc3339) } ?? .null
        if r.status.isTerminal {
            o["exit_status"] = JSONValue(exitStatus(status: r.status, code: r.exitCode, signal: r.signal))
        } else {
            o["exit_status"] = .null
        }
        return .object(o)
    }

    public static func event(_ e: LoggedEvent) -> JSONValue {
        var o: JSONObject = [
            "id": .int(e.id), "session": .string(e.sessionID), "seq": .int(e.seq), "tenant": .string(e.tenant),
            "time": .string(e.time), "type": .string(e.type), "payload": .object((try? JSONValue.parseObject(e.payloadJSON)) ?? [:]),
            "prev_hash": .string(e.prevHash), "hash": .string(e.hash),
        ]
        o["run"] = e.runID.map { .string($0) } ?? .null
        return .object(o)
    }

    public static func verify(_ r: VerifyReport) -> JSONValue {
        var o: JSONObject = ["ok": .bool(r.ok), "problems": .array(r.problems.map { .string($0.description) }),
                             "sessions_checked": JSONValue(r.sessionsChecked), "events_checked": JSONValue(r.eventsChecked),
                             "integrity_errors": .array(r.integrityErrors.map { .string($0) }), "report": .string(r.description)]
        if let first = r.problems.first {
            o["first_bad_event"] = ["session": .string(first.sessionID), "seq": .int(first.seq), "id": .int(first.eventID)]
        }
        return .object(o)
    }

    /// The status `levain run` exits with for a run that ended so: the
    /// process's code, 128 + its signal, 137 for a cancelled or timed-out
    /// run the kernel did not report, 125 for anything else.
    public static func exitStatus(status: RunStatus, code: Int32?, signal: Int32?) -> Int32 {
        if let code { return code }
        if let signal { return 128 + signal }
        switch status {
        case .cancelled, .timedOut: return 128 + 9
        default: return 125
        }
    }
}

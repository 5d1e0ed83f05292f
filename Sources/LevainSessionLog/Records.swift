import LevainJSON
/// An event to append. `seq`, `prev_hash` and `hash` are assigned by the log.
public struct NewEvent: Sendable, Equatable {
    public var sessionID: String
    public var runID: String?
    public var tenant: String
    public var type: String
    public var payload: JSONObject
    public var time: LogTimestamp

    public init(sessionID: String, runID: String? = nil, tenant: String = "", type: String,
                payload: JSONObject = [:], time: LogTimestamp = .now()) {
        self.sessionID = sessionID
        self.runID = runID
        self.tenant = tenant
        self.type = type
        self.payload = payload
        self.time = time
    }
}

/// A stored event, every column as it is in the database.
public struct LoggedEvent: Sendable, Equatable {
    /// Global order across sessions (the SQLite rowid).
    public var id: Int64
    public var sessionID: String
    /// 1, 2, 3, ... within the session.
    public var seq: Int64
    public var runID: String?
    public var tenant: String
    /// RFC 3339 UTC text, exactly as hashed.
    public var time: String
    public var type: String
    /// The payload text exactly as stored and hashed.
    public var payloadJSON: String
    public var prevHash: String
    public var hash: String

    public init(id: Int64, sessionID: String, seq: Int64, runID: String?, tenant: String, time: String,
                type: String, payloadJSON: String, prevHash: String, hash: String) {
        self.id = id
        self.sessionID = sessionID
        self.seq = seq
        self.runID = runID
        self.tenant = tenant
        self.time = time
        self.type = type
        self.payloadJSON = payloadJSON
        self.prevHash = prevHash
        self.hash = hash
    }

    /// The payload parsed (throws if the stored text is not a JSON object,
    /// which only a tampered log can produce).
    public var payload: JSONObject {
        get throws(SessionLogError) {
            do { return try JSONValue.parseObject(payloadJSON) } catch { throw SessionLogError(error) }
        }
    }

    public var timestamp: LogTimestamp? { LogTimestamp(rfc3339: time) }

    /// The event as one JSON object with every column (the export format;
    /// `payload` is the stored text as a JSON string, so the line can be
    /// re-hashed byte for byte).
    public func exportJSON() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(256 + payloadJSON.utf8.count)
        func key(_ k: String, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            JSONText.writeString(k, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        out.append(UInt8(ascii: "{"))
        key("id", first: true); out.append(contentsOf: String(id).utf8)
        key("session_id"); JSONText.writeString(sessionID, to: &out)
        key("seq"); out.append(contentsOf: String(seq).utf8)
        key("run_id")
        if let runID { JSONText.writeString(runID, to: &out) } else { out.append(contentsOf: "null".utf8) }
        key("tenant"); JSONText.writeString(tenant, to: &out)
        key("time"); JSONText.writeString(time, to: &out)
        key("type"); JSONText.writeString(type, to: &out)
        key("payload"); JSONText.writeString(payloadJSON, to: &out)
        key("prev_hash"); JSONText.writeString(prevHash, to: &out)
        key("hash"); JSONText.writeString(hash, to: &out)
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

public enum SessionKind: String, Sendable, Codable, CaseIterable {
    /// A long-lived session served by `levain serve`.
    case session
    /// The single run of `levain run`.
    case oneShot = "one-shot"
}

public enum SessionStatus: String, Sendable, Codable, CaseIterable {
    case open, closed, failed, interrupted
}

public struct SessionRecord: Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var kind: SessionKind
    /// The policy name or path the session runs under.
    public var policy: String
    public var labels: [String: String]
    public var status: SessionStatus
    public var workspace: String?
    public var limits: JSONObject
    public var createdAt: LogTimestamp
    public var closedAt: LogTimestamp?
    /// The supervisor instance that owns the session (for recovery).
    public var supervisor: String?

    public init(id: String, tenant: String = "", kind: SessionKind = .session, policy: String,
                labels: [String: String] = [:], status: SessionStatus = .open, workspace: String? = nil,
                limits: JSONObject = [:], createdAt: LogTimestamp = .now(), closedAt: LogTimestamp? = nil,
                supervisor: String? = nil) {
        self.id = id
        self.tenant = tenant
        self.kind = kind
        self.policy = policy
        self.labels = labels
        self.status = status
        self.workspace = workspace
        self.limits = limits
        self.createdAt = createdAt
        self.closedAt = closedAt
        self.supervisor = supervisor
    }
}

public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case queued, starting, running, succeeded, failed, cancelled
    case timedOut = "timed_out"
    case interrupted, error

    /// queued, starting or running: what recovery looks at after a restart.
    public var isInFlight: Bool { self == .queued || self == .starting || self == .running }
    public var isTerminal: Bool { !isInFlight }
}

/// What recovery does with a run found in flight after a supervisor restart.
public enum RetryPolicy: String, Sendable, Codable, CaseIterable {
    case retry, fail
}

public struct RunRecord: Sendable, Equatable {
    public var id: String
    public var sessionID: String
    public var tenant: String
    public var status: RunStatus
    /// What was asked: argv, env, cwd, timeout, ...
    public var request: JSONObject
    public var idempotencyKey: String?
    public var attempt: Int
    public var exitCode: Int32?
    public var signal: Int32?
    public var error: String?
    public var createdAt: LogTimestamp
    public var startedAt: LogTimestamp?
    public var finishedAt: LogTimestamp?
    public var retryPolicy: RetryPolicy

    public init(id: String, sessionID: String, tenant: String = "", status: RunStatus = .queued,
                request: JSONObject, idempotencyKey: String? = nil, attempt: Int = 1,
                exitCode: Int32? = nil, signal: Int32? = nil, error: String? = nil,
                createdAt: LogTimestamp = .now(), startedAt: LogTimestamp? = nil,
                finishedAt: LogTimestamp? = nil, retryPolicy: RetryPolicy = .fail) {
        self.id = id
        self.sessionID = sessionID
        self.tenant = tenant
        self.status = status
        self.request = request
        self.idempotencyKey = idempotencyKey
        self.attempt = attempt
        self.exitCode = exitCode
        self.signal = signal
        self.error = error
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.retryPolicy = retryPolicy
    }
}

/// Changes to a session row; nil fields are left as they are.
public struct SessionUpdate: Sendable, Equatable {
    public var id: String
    public var status: SessionStatus?
    public var closedAt: LogTimestamp?
    public var supervisor: String?
    public var workspace: String?

    public init(id: String, status: SessionStatus? = nil, closedAt: LogTimestamp? = nil,
                supervisor: String? = nil, workspace: String? = nil) {
        self.id = id
        self.status = status
        self.closedAt = closedAt
        self.supervisor = supervisor
        self.workspace = workspace
    }
}

/// Changes to a run row; nil fields are left as they are.
public struct RunUpdate: Sendable, Equatable {
    public var id: String
    public var status: RunStatus?
    public var exitCode: Int32?
    public var signal: Int32?
    public var error: String?
    public var startedAt: LogTimestamp?
    public var finishedAt: LogTimestamp?
    public var attempt: Int?

    public init(id: String, status: RunStatus? = nil, exitCode: Int32? = nil, signal: Int32? = nil,
                error: String? = nil, startedAt: LogTimestamp? = nil, finishedAt: LogTimestamp? = nil,
                attempt: Int? = nil) {
        self.id = id
        self.status = status
        self.exitCode = exitCode
        self.signal = signal
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.attempt = attempt
    }
}

/// A state-table change, committed in the same transaction as the events
/// passed with it to `SessionLog.record(_:and:)`.
public enum StateChange: Sendable, Equatable {
    case insertSession(SessionRecord)
    case updateSession(SessionUpdate)
    case insertRun(RunRecord)
    case updateRun(RunUpdate)
}

import LevainJSON
import LevainPolicy
import LevainSessionLog

/// What a session is made from (`POST /v1/sessions`).
///
/// The request body (`init(request:defaultPolicy:)` / `request`) and the
/// stored form (`init(record:)` from the session record's policy, tenant,
/// labels and `limits`, whose object is `storedLimits`): each read and
/// written here only.
public struct SessionSpec: Sendable, Equatable {
    public var policy: String
    public var tenant = ""
    public var labels: [String: String] = [:]
    public var memory: UInt64?
    public var cpus: Double?
    public var pids: Int?
    /// Default per-run wall-clock limit, in seconds.
    public var timeout: Double?
    public var binds: [Policy.Bind] = []
    /// A different harness binary (only when the supervisor allows it: tests).
    public var harness: String?

    public init(policy: String) { self.policy = policy }

    // MARK: the request body

    public init(request o: JSONObject, defaultPolicy: String) throws(APIError) {
        try Fields(o, allowed: ["policy", "tenant", "labels", "limits", "binds", "harness"]).check()
        self.init(policy: try Fields.string(o, "policy") ?? defaultPolicy)
        tenant = try Fields.string(o, "tenant") ?? ""
        guard tenant.utf8.count <= 128 else { throw APIError(.invalid, "tenant is longer than 128 bytes", field: "tenant") }
        if let labels = o["labels"] {
            guard let obj = labels.objectValue else { throw APIError(.invalid, "labels must be an object of strings", field: "labels") }
            for (k, v) in obj {
                guard let s = v.stringValue else { throw APIError(.invalid, "labels.\(k) must be a string", field: "labels.\(k)") }
                self.labels[k] = s
            }
        }
        if let limits = o["limits"] {
            guard let l = limits.objectValue else { throw APIError(.invalid, "limits must be an object", field: "limits") }
            try Fields(l, allowed: ["memory", "cpus", "pids", "timeout"], prefix: "limits.").check()
            if let m = l["memory"] {
                // At most what the stored form (a JSON integer) holds.
                if let s = m.stringValue, let v = Quantity.parseSize(s), v >= 4 << 20, v <= UInt64(Int64.max) { memory = v }
                else if let i = m.intValue, i >= 4 << 20 { memory = UInt64(i) }
                else { throw APIError(.invalid, "limits.memory must be a size of at least 4M (\"256M\" or bytes)", field: "limits.memory") }
            }
            if let c = l["cpus"] {
                guard let v = c.doubleValue, v >= 0.01, v <= 4096 else {
                    throw APIError(.invalid, "limits.cpus must be a number of cores between 0.01 and 4096", field: "limits.cpus")
                }
                cpus = v
            }
            if let p = l["pids"] {
                guard let v = p.intValue, v >= 1, v <= 4_194_304 else {
                    throw APIError(.invalid, "limits.pids must be a whole number, 1 or more", field: "limits.pids")
                }
                pids = Int(v)
            }
            if let t = l["timeout"] {
                guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v > 0, v < 1e7 else {
                    throw APIError(.invalid, "limits.timeout must be seconds (under 10^7) or a duration like \"30s\"", field: "limits.timeout")
                }
                timeout = v
            }
        }
        if let binds = o["binds"] {
            guard let b = binds.objectValue else { throw APIError(.invalid, "binds must be {\"ro\": [...], \"rw\": [...]}", field: "binds") }
            try Fields(b, allowed: ["ro", "rw"], prefix: "binds.").check()
            for (key, writable) in [("ro", false), ("rw", true)] {
                guard let list = b[key] else { continue }
                guard let items = list.arrayValue?.compactMap(\.stringValue), items.count == list.arrayValue?.count else {
                    throw APIError(.invalid, "binds.\(key) must be an array of \"HOST[:JAIL]\" strings", field: "binds.\(key)")
                }
                for item in items {
                    do throws(PolicyError) {
                        self.binds.append(try PolicyLoader.parseBind(item, writable: writable, optional: false, file: "binds", line: nil, key: "binds.\(key)"))
                    } catch {
                        throw APIError(.invalid, error.message, field: "binds.\(key)", cause: error)
                    }
                }
            }
        }
        harness = try Fields.string(o, "harness")
    }

    /// The request body for this spec (what `init(request:defaultPolicy:)`
    /// reads back). An empty policy is left out: the supervisor's default.
    public var request: JSONObject {
        var o: JSONObject = [:]
        if !policy.isEmpty { o["policy"] = .string(policy) }
        if !tenant.isEmpty { o["tenant"] = .string(tenant) }
        if !labels.isEmpty { o["labels"] = .object(labels.mapValues { .string($0) }) }
        var limits = storedLimits
        limits["binds"] = nil
        if !limits.isEmpty { o["limits"] = .object(limits) }
        if !binds.isEmpty {
            var b: JSONObject = [:]
            for (key, writable) in [("ro", false), ("rw", true)] {
                let list = binds.filter { $0.writable == writable }.map { JSONValue.string($0.host + ":" + $0.jail) }
                if !list.isEmpty { b[key] = .array(list) }
            }
            o["binds"] = .object(b)
        }
        if let harness { o["harness"] = .string(harness) }
        return o
    }

    // MARK: the stored form

    /// The session record's `limits`: its limits and binds (the binds as
    /// given, so a reopened session gets the same ones whatever its policy
    /// says by then).
    public var storedLimits: JSONObject {
        var o: JSONObject = [:]
        if let memory { o["memory"] = .int(Int64(memory)) }
        if let cpus { o["cpus"] = .double(cpus) }
        if let pids { o["pids"] = JSONValue(pids) }
        if let timeout { o["timeout"] = .double(timeout) }
        if !binds.isEmpty {
            o["binds"] = .array(binds.map { ["host": .string($0.host), "jail": .string($0.jail), "mode": .string($0.writable ? "rw" : "ro")] })
        }
        return o
    }

    /// The spec of a session the log holds (to reopen it). The harness is
    /// not stored: a reopen keeps the one its live host had.
    public init(record: SessionRecord) throws(APIError) {
        self.init(policy: record.policy)
        tenant = record.tenant
        labels = record.labels
        let l = record.limits
        func bad(_ key: String) -> APIError {
            APIError(.internalError, "session \(record.id) has a stored limits.\(key) the log cannot describe", field: "limits." + key)
        }
        if let m = l["memory"] { guard let v = m.intValue, v > 0 else { throw bad("memory") }; memory = UInt64(v) }
        if let c = l["cpus"] { guard let v = c.doubleValue else { throw bad("cpus") }; cpus = v }
        if let p = l["pids"] { guard let v = p.intValue, v > 0 else { throw bad("pids") }; pids = Int(v) }
        if let t = l["timeout"] { guard let v = t.doubleValue else { throw bad("timeout") }; timeout = v }
        if let list = l["binds"] {
            guard let items = list.arrayValue else { throw bad("binds") }
            for b in items {
                guard let host = b["host"]?.stringValue, let jail = b["jail"]?.stringValue else {
                    throw APIError(.internalError, "session \(record.id) has a bind the log cannot describe: \(b)", field: "limits.binds")
                }
                binds.append(Policy.Bind(host: host, jail: jail, writable: b["mode"]?.stringValue == "rw"))
            }
        }
    }
}

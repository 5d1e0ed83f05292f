import LevainJSON
import LevainSessionLog
import LevainSystem

/// `POST /v1/sessions/{id}/runs`: a run and whether to answer at its end.
public struct RunRequest: Sendable, Equatable {
    public var spec: RunSpec
    /// Answer when the run has ended instead of when it is queued.
    public var wait: Bool
    /// With `wait`: each stream of at most this many bytes comes in the
    /// answer (`stdout_base64`, `stderr_base64`), saving a request per stream.
    public var inlineOutput: Int?

    /// The most `inline_output` may ask for.
    public static let maxInlineOutput = 1 << 20

    public init(spec: RunSpec, wait: Bool = false, inlineOutput: Int? = nil) {
        self.spec = spec
        self.wait = wait
        self.inlineOutput = inlineOutput
    }

    public init(json o: JSONObject) throws(APIError) {
        spec = try RunSpec(request: o)
        wait = try Fields.bool(o, "wait") ?? false
        if let v = o["inline_output"], !v.isNull {
            guard let n = v.intValue, (0...Int64(Self.maxInlineOutput)).contains(n) else {
                throw APIError(.invalid, "inline_output must be a whole number of bytes from 0 to \(Self.maxInlineOutput)", field: "inline_output")
            }
            guard wait else {
                throw APIError(.invalid, "inline_output needs \"wait\": true (the output comes with the finished run)", field: "inline_output")
            }
            inlineOutput = Int(n)
        }
    }

    public var json: JSONObject {
        var o = spec.request
        if wait { o["wait"] = true }
        if let inlineOutput { o["inline_output"] = .int(Int64(inlineOutput)) }
        return o
    }
}

/// `POST /v1/runs/{id}/signal`: a number 1-64 or a name ("TERM", "SIGINT").
public struct SignalRequest: Sendable, Equatable {
    public var signal: Int32

    public init(signal: Int32) { self.signal = signal }

    public init(json o: JSONObject) throws(APIError) {
        try Fields(o, allowed: ["signal"]).check()
        if let n = o["signal"]?.intValue, (1...64).contains(n) {
            signal = Int32(n)
        } else if let name = o["signal"]?.stringValue, let n = SignalNames.number(name) {
            signal = n
        } else {
            throw APIError(.invalid, "signal must be a number 1-64 or a name like \"TERM\" or \"SIGINT\"", field: "signal")
        }
    }

    public var json: JSONObject { ["signal": .int(Int64(signal))] }
}

/// `POST /v1/approvals/{id}`: allow or deny a tool call that waits.
public struct ApprovalDecisionRequest: Sendable, Equatable {
    public var allow: Bool
    public var reason: String
    /// Who decided (self-declared; at most 128 characters are kept).
    public var by: String

    public init(allow: Bool, reason: String = "", by: String = "api") {
        self.allow = allow
        self.reason = reason
        self.by = by
    }

    public init(json o: JSONObject) throws(APIError) {
        try Fields(o, allowed: ["decision", "reason", "by"]).check()
        guard let d = o["decision"]?.stringValue, d == "allow" || d == "deny" else {
            throw APIError(.invalid, "decision must be \"allow\" or \"deny\"", field: "decision")
        }
        allow = d == "allow"
        reason = o["reason"]?.stringValue ?? ""
        guard reason.utf8.count <= 4096 else { throw APIError(.invalid, "reason is at most 4 KiB", field: "reason") }
        by = String((o["by"]?.stringValue ?? "api").prefix(128))
    }

    public var decision: String { allow ? "allow" : "deny" }

    public var json: JSONObject { ["decision": .string(decision), "reason": .string(reason), "by": .string(by)] }
}

/// `POST /v1/sessions/{id}/agent-runs`: an agent file's text and the input.
/// The agent file itself is read by the supervisor (LevainAgent's AgentSpec),
/// which names its file, line and key.
public struct AgentRunRequest: Sendable, Equatable {
    /// The agent file (TOML), as text.
    public var agent: String
    /// The name its errors are reported under.
    public var agentFile: String
    public var input: String
    public var wait: Bool

    public init(agent: String, agentFile: String = "agent.toml", input: String, wait: Bool = false) {
        self.agent = agent
        self.agentFile = agentFile
        self.input = input
        self.wait = wait
    }

    public init(json o: JSONObject) throws(APIError) {
        try Fields(o, allowed: ["agent", "agent_file", "input", "wait"]).check()
        guard let text = o["agent"]?.stringValue else {
            throw APIError(.invalid, "agent must be the text of an agent file (TOML)", field: "agent")
        }
        guard let input = o["input"]?.stringValue else { throw APIError(.invalid, "input must be a string", field: "input") }
        self.init(agent: text, agentFile: o["agent_file"]?.stringValue ?? "agent.toml", input: input, wait: o["wait"]?.boolValue == true)
    }

    public var json: JSONObject {
        var o: JSONObject = ["agent": .string(agent), "agent_file": .string(agentFile), "input": .string(input)]
        if wait { o["wait"] = true }
        return o
    }
}

/// `POST /v1/sessions/{id}/mkdir`: a directory in the workspace.
public struct MkdirRequest: Sendable, Equatable {
    public var path: String
    /// Also the missing directories above it; an existing directory is then no error.
    public var parents: Bool
    /// Permission bits (decimal in JSON, as the file write's `mode`); default 0755.
    public var mode: UInt32

    public init(path: String, parents: Bool = false, mode: UInt32 = 0o755) {
        self.path = path
        self.parents = parents
        self.mode = mode
    }

    public init(json o: JSONObject) throws(APIError) {
        try Fields(o, allowed: ["path", "parents", "mode"]).check()
        path = try WorkspacePath.checkStrict(o["path"], field: "path")
        parents = try Fields.bool(o, "parents") ?? false
        if let m = o["mode"], m != .null {
            guard let v = m.intValue, (0...0o7777).contains(v) else {
                throw APIError(.invalid, "mode must be a whole number from 0 to 4095 (the permission bits in decimal: 493 = 0755)", field: "mode")
            }
            mode = UInt32(v)
        } else {
            mode = 0o755
        }
    }

    public var json: JSONObject { ["path": .string(path), "parents": .bool(parents), "mode": .int(Int64(mode))] }
}

/// `POST /v1/sessions/{id}/rename`: moves a file or directory within the workspace.
public struct RenameRequest: Sendable, Equatable {
    public var path: String
    public var to: String

    public init(path: String, to: String) {
        self.path = path
        self.to = to
    }

    public init(json o: JSONObject) throws(APIError) {
        try Fields(o, allowed: ["path", "to"]).check()
        path = try WorkspacePath.checkStrict(o["path"], field: "path")
        to = try WorkspacePath.checkStrict(o["to"], field: "to")
    }

    public var json: JSONObject { ["path": .string(path), "to": .string(to)] }
}

import LevainJSON
import LevainPolicy
import LevainProtocol
import LevainSessionLog

/// What a client asks a run to do (`POST /v1/sessions/{id}/runs`).
///
/// Three forms, each with one reader and one writer here:
/// - the request body (`init(request:)` / `request`), what clients send;
/// - the stored form (`init(stored:idempotencyKey:retry:)` / `stored`), the
///   run's `request` column and its `run.queued` payload, which recovery
///   reads back exactly (stdin's content is not kept: only its size);
/// - the value itself, which the supervisor runs.
public struct RunSpec: Sendable, Equatable {
    public var argv: [String]
    /// Added to (and over) the policy's environment.
    public var env: [String: String] = [:]
    public var cwd: String?
    /// Bytes for the run's stdin, all at once; nil and no `stdinStream`:
    /// /dev/null.
    public var stdin: [UInt8]?
    /// Stdin comes through `PUT /v1/runs/{id}/stdin` instead.
    public var stdinStream = false
    /// Wall-clock limit in seconds; nil: the policy's.
    public var timeout: Double?
    /// CPU-time limit in seconds (RLIMIT_CPU); nil: the policy's.
    public var cpuTime: UInt64?
    /// Largest file the run may write, in bytes (RLIMIT_FSIZE); nil: the policy's.
    public var fileSize: UInt64?
    public var idempotencyKey: String?
    /// What recovery does with the run when a supervisor restart
    /// interrupts it.
    public var retry: RetryPolicy = .fail
    /// The run's stdin, stdout and stderr are a new pseudo-terminal of this
    /// size (its output all on stdout).
    public var pty: TerminalSize?

    public init(argv: [String]) { self.argv = argv }

    static let requestFields: Set<String> = ["argv", "command", "stdin", "stdin_base64", "stdin_stream", "env", "cwd", "timeout",
                                             "cpu_time", "file_size", "idempotency_key", "retry", "wait", "pty",
                                             "inline_output"]

    /// The size of `"pty": true`.
    public static let defaultTerminal = TerminalSize(rows: 24, cols: 80)

    /// `pty` of a body: true (24×80), `{"rows": R, "cols": C}` (1 to 10,000
    /// each), false or null (none).
    public static func terminalSize(_ value: JSONValue?, field: String = "pty") throws(APIError) -> TerminalSize? {
        switch value {
        case nil, .null?, .bool(false)?: return nil
        case .bool(true)?: return defaultTerminal
        case .object(let o)?:
            try Fields(o, allowed: ["rows", "cols"], prefix: field + ".").check()
            return try size(o, field: field)
        default:
            throw APIError(.invalid, "\(field) must be true, false or {\"rows\": R, \"cols\": C}", field: field)
        }
    }

    /// `rows` and `cols` of an object, each a whole number from 1 to 10,000.
    public static func size(_ o: JSONObject, field: String? = nil) throws(APIError) -> TerminalSize {
        func side(_ key: String) throws(APIError) -> Int {
            let name = field.map { $0 + "." + key } ?? key
            guard let v = o[key]?.intValue, ProtocolLimits.terminalSide.contains(Int(v)) else {
                throw APIError(.invalid, "\(name) must be a whole number from 1 to \(ProtocolLimits.terminalSide.upperBound) (a terminal of 0 rows or columns shows nothing)",
                               field: name)
            }
            return Int(v)
        }
        return TerminalSize(rows: try side("rows"), cols: try side("cols"))
    }

    // MARK: the request body

    /// Reads and checks a request body; the error names the first field at fault.
    public init(request o: JSONObject) throws(APIError) {
        try Fields(o, allowed: Self.requestFields).check()
        var argv: [String]
        if let a = o["argv"] {
            let arr: [JSONValue] = a.arrayValue ?? []
            let strings: [String] = arr.compactMap { $0.stringValue }
            guard !arr.isEmpty, strings.count == arr.count else {
                throw APIError(.invalid, "argv must be a non-empty array of strings", field: "argv")
            }
            argv = strings
            guard o["command"] == nil else { throw APIError(.invalid, "give argv or command, not both", field: "command") }
        } else if let c = try Fields.string(o, "command") {
            guard !c.isEmpty else { throw APIError(.invalid, "command is empty", field: "command") }
            argv = ["/bin/sh", "-c", c]
        } else {
            throw APIError(.invalid, "a run needs argv (an array) or command (a shell command line)", field: "argv")
        }
        try Self.checkArgv(argv)
        self.init(argv: argv)
        if let s = try Fields.string(o, "stdin") { stdin = Array(s.utf8) }
        if o["stdin"].map({ !$0.isNull }) == true && o["stdin_base64"].map({ !$0.isNull }) == true {
            throw APIError(.invalid, "give stdin or stdin_base64, not both", field: "stdin_base64")
        }
        if let b = try Fields.string(o, "stdin_base64") {
            guard let bytes = Base64.decode(b) else { throw APIError(.invalid, "stdin_base64 is not valid base64", field: "stdin_base64") }
            stdin = bytes
        }
        stdinStream = try Fields.bool(o, "stdin_stream") ?? false
        if stdinStream && stdin != nil {
            throw APIError(.invalid, "stdin_stream and stdin cannot both be given", field: "stdin_stream")
        }
        if let env = o["env"] {
            guard let e = env.objectValue else { throw APIError(.invalid, "env must be an object of strings", field: "env") }
            for (k, v) in e {
                guard PolicyLoader.isValidEnvName(k), k.utf8.count <= ProtocolLimits.maxEnvKeyBytes else { throw APIError(.invalid, "env key \(k) is not a valid variable name", field: "env.\(k)") }
                guard let s = v.stringValue else { throw APIError(.invalid, "env.\(k) must be a string", field: "env.\(k)") }
                self.env[k] = s
            }
            try Self.checkEnv(self.env)
        }
        if let cwd = try Fields.string(o, "cwd") {
            try Self.checkCwd(cwd)
            self.cwd = cwd
        }
        if let t = o["timeout"] {
            guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v > 0, v < 1e7 else {
                throw APIError(.invalid, "timeout must be a positive number of seconds or a duration like \"30s\"", field: "timeout")
            }
            timeout = v
        }
        if let t = o["cpu_time"] {
            guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v >= 1, v < 1e9 else {
                throw APIError(.invalid, "cpu_time must be at least 1 second (a number or a duration like \"10s\")", field: "cpu_time")
            }
            cpuTime = UInt64(v.rounded(.up))
        }
        if let f = o["file_size"] {
            guard let v = f.intValue.flatMap({ $0 >= 0 ? UInt64($0) : nil }) ?? f.stringValue.flatMap(Quantity.parseSize),
                  v <= UInt64(Int64.max) else {
                throw APIError(.invalid, "file_size must be a size (\"100M\" or bytes)", field: "file_size")
            }
            fileSize = v
        }
        if let k = try Fields.string(o, "idempotency_key") {
            guard !k.isEmpty, k.utf8.count <= 256 else { throw APIError(.invalid, "idempotency_key must be 1-256 bytes", field: "idempotency_key") }
            idempotencyKey = k
        }
        if let r = try Fields.string(o, "retry") {
            guard let p = RetryPolicy(rawValue: r) else { throw APIError(.invalid, "retry must be \"fail\" or \"retry\"", field: "retry") }
            retry = p
            if p == .retry && (stdin != nil || stdinStream) {
                throw APIError(.invalid, "a run with stdin cannot be retried after a restart (its stdin is not kept): use retry \"fail\"", field: "retry")
            }
        }
        pty = try Self.terminalSize(o["pty"])
        _ = try Fields.bool(o, "wait")
    }

    /// The request body for this spec (what `init(request:)` reads back).
    public var request: JSONObject {
        var o = storedCommon
        if let stdin {
            if let text = String(validating: stdin, as: UTF8.self) { o["stdin"] = .string(text) } else { o["stdin_base64"] = .string(Base64.encode(stdin)) }
        }
        if let idempotencyKey { o["idempotency_key"] = .string(idempotencyKey) }
        if retry != .fail { o["retry"] = .string(retry.rawValue) }
        return o
    }

    // MARK: the stored form

    /// The request as stored with the run (stdin's content is not: only its
    /// size). The idempotency key and the retry policy are the run record's
    /// own columns.
    public var stored: JSONObject {
        var o = storedCommon
        if let stdin { o["stdin_bytes"] = JSONValue(stdin.count) }
        return o
    }

    private var storedCommon: JSONObject {
        var o: JSONObject = ["argv": JSONValue(argv)]
        if !env.isEmpty { o["env"] = .object(env.mapValues { .string($0) }) }
        if let cwd { o["cwd"] = .string(cwd) }
        if stdinStream { o["stdin_stream"] = true }
        if let timeout { o["timeout"] = .double(timeout) }
        if let cpuTime { o["cpu_time"] = .int(Int64(cpuTime)) }
        if let fileSize { o["file_size"] = .int(Int64(fileSize)) }
        if let pty { o["pty"] = ["rows": JSONValue(pty.rows), "cols": JSONValue(pty.cols)] }
        return o
    }

    /// Reads a stored request back. A stored run was checked when it was
    /// submitted, so anything that does not read is a damaged or foreign
    /// record: refused with the field, never replaced by a guess. Two other
    /// writers store a run's request in the same log: an agent run's record
    /// carries its agent too (`agent`, not the spec's), and a one-shot
    /// `levain run` stores `env_keys` (the names only: the values are not
    /// kept) and its `--timeout` as given ("30s", or seconds).
    public init(stored o: JSONObject, idempotencyKey: String? = nil, retry: RetryPolicy = .fail) throws(APIError) {
        do {
            try Fields(o, allowed: ["argv", "env", "cwd", "stdin_bytes", "stdin_stream", "timeout", "cpu_time", "file_size", "agent",
                                    "env_keys", "pty"],
                       prefix: "request.").check()
        } catch {
            // The log's record, not the client's request: the supervisor's fault.
            throw APIError(.internalError, "the stored request of this run has an \(error.message)", field: error.field, cause: error)
        }
        func bad(_ key: String, _ what: String) -> APIError {
            APIError(.internalError, "the stored request of this run has a bad \(key) (\(what))", field: "request." + key)
        }
        guard let list = o["argv"]?.arrayValue else { throw bad("argv", "not an array") }
        let argv = list.compactMap(\.stringValue)
        guard !argv.isEmpty, argv.count == list.count else { throw bad("argv", "not a non-empty array of strings") }
        self.init(argv: argv)
        if let e = o["env"] {
            guard let obj = e.objectValue else { throw bad("env", "not an object") }
            for (k, v) in obj {
                guard let s = v.stringValue else { throw bad("env", "\(k) is not a string") }
                env[k] = s
            }
        }
        if let c = o["cwd"] {
            guard let s = c.stringValue else { throw bad("cwd", "not a string") }
            cwd = s
        }
        if let s = o["stdin_stream"] {
            guard let b = s.boolValue else { throw bad("stdin_stream", "not a boolean") }
            stdinStream = b
        }
        if let t = o["timeout"], t.stringValue != "off" {  // a one-shot's `--timeout off`: no limit
            guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v > 0 else {
                throw bad("timeout", "not a positive number of seconds or a duration")
            }
            timeout = v
        }
        if let keys = o["env_keys"] {
            guard let list = keys.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else { throw bad("env_keys", "not an array of strings") }
        }
        if let t = o["cpu_time"] {
            guard let v = t.intValue, v > 0 else { throw bad("cpu_time", "not a positive whole number") }
            cpuTime = UInt64(v)
        }
        if let f = o["file_size"] {
            guard let v = f.intValue, v >= 0 else { throw bad("file_size", "not a whole number") }
            fileSize = UInt64(v)
        }
        if let n = o["stdin_bytes"], n.intValue == nil { throw bad("stdin_bytes", "not a whole number") }
        if let p = o["pty"] {
            do throws(APIError) {
                guard case .object(let size) = p else { throw bad("pty", "not an object") }
                pty = try Self.size(size, field: "pty")
            } catch {
                throw bad("pty", error.message)
            }
        }
        self.idempotencyKey = idempotencyKey
        self.retry = retry
    }

    /// The spec of a run the log holds: its stored request and its columns.
    public init(record: RunRecord) throws(APIError) {
        try self.init(stored: record.request, idempotencyKey: record.idempotencyKey, retry: record.retryPolicy)
    }


    // MARK: checks shared by every writer of a spec

    /// The protocol's bounds on argv: elements, NUL bytes, sizes.
    public static func checkArgv(_ argv: [String]) throws(APIError) {
        guard argv.count <= ProtocolLimits.maxArgvElements, argv.allSatisfy({ !$0.utf8.contains(0) }) else {
            throw APIError(.invalid, "argv has more than \(ProtocolLimits.maxArgvElements) elements or a NUL byte", field: "argv")
        }
        guard argv.allSatisfy({ $0.utf8.count <= ProtocolLimits.maxArgumentBytes }),
              argv.reduce(0, { $0 + $1.utf8.count + 1 }) <= ProtocolLimits.maxArgvTotalBytes else {
            throw APIError(.invalid, "argv is too large: at most \(ProtocolLimits.maxArgumentBytes) bytes per element and \(ProtocolLimits.maxArgvTotalBytes) in all", field: "argv")
        }
    }

    /// Variable names, NUL bytes, and the half of the protocol's env bounds
    /// a run may add to its policy's.
    public static func checkEnv(_ env: [String: String]) throws(APIError) {
        for (k, v) in env.sorted(by: { $0.key < $1.key }) {
            guard PolicyLoader.isValidEnvName(k), k.utf8.count <= ProtocolLimits.maxEnvKeyBytes else { throw APIError(.invalid, "env key \(k) is not a valid variable name", field: "env.\(k)") }
            guard !v.utf8.contains(0) else { throw APIError(.invalid, "env.\(k) must be a string", field: "env.\(k)") }
        }
        guard env.count <= ProtocolLimits.maxEnvEntries / 2,
              env.reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 }) <= ProtocolLimits.maxEnvTotalBytes / 2 else {
            throw APIError(.invalid, "env is too large: at most \(ProtocolLimits.maxEnvEntries / 2) entries and \(ProtocolLimits.maxEnvTotalBytes / 2) bytes", field: "env")
        }
    }

    public static func checkCwd(_ cwd: String) throws(APIError) {
        guard cwd.hasPrefix("/"), !cwd.utf8.contains(0) else { throw APIError(.invalid, "cwd must be an absolute path in the jail", field: "cwd") }
    }
}

import LevainJSON

/// The tools of Levain's MCP server (`levain mcp`, and `/mcp` on the
/// daemon): each a call of the control API, so what an MCP client may do is
/// exactly what its API credentials allow.
enum ControlTool: String, CaseIterable, Sendable {
    case createSession = "create_session"
    case listSessions = "list_sessions"
    case closeSession = "close_session"
    case pauseSession = "pause_session"
    case resumeSession = "resume_session"
    case exec
    case startProcess = "start_process"
    case pollProcess = "poll_process"
    case writeStdin = "write_stdin"
    case signalProcess = "signal_process"
    case cancelProcess = "cancel_process"
    case readFile = "read_file"
    case writeFile = "write_file"
    case listFiles = "list_files"
    case statFile = "stat_file"

    var description: String {
        switch self {
        case .createSession:
            "Open a Levain session: an isolated jail (namespaces, seccomp, cgroups) with a /workspace that keeps files between commands. Returns the session; pass its id to the other tools."
        case .listSessions: "List sessions, newest first (optionally by status: open, closed, failed, interrupted)."
        case .closeSession: "Close a session: its processes are killed and its jail removed."
        case .pauseSession:
            "Pause a session: every running process in it is frozen (cgroup freezer) until resumed; files stay readable and writable; new commands are refused until resume_session. Timeouts keep counting."
        case .resumeSession: "Resume a paused session's processes."
        case .exec:
            "Run a command in a session and wait for it to end. `command` is a shell line (/bin/sh -c), or give `argv`. Output is streamed as progress notifications when the call has a progress token; the result has the exit code, stdout and stderr (the first max_output_bytes of each; the rest through poll_process with offsets)."
        case .startProcess:
            "Start a long-running command in a session without waiting (a server, a REPL). With stdin: true its stdin stays open for write_stdin. Returns the run id for poll_process, write_stdin, signal_process and cancel_process."
        case .pollProcess:
            "A started process's status and its output from the given byte offsets (optionally waiting up to `wait` seconds for it to end first). Returns the next offsets to poll from."
        case .writeStdin: "Write text to a started process's stdin (it must have been started with stdin: true); eof: true closes it."
        case .signalProcess: "Send a signal (TERM, INT, KILL, HUP, USR1, ... or a number) to a started process's process group."
        case .cancelProcess: "Kill a process and everything it started (its whole cgroup), at once."
        case .readFile: "Read a file in a session's jail (a path relative to /workspace, or absolute under /workspace or /tmp). Text, or base64 for bytes that are not UTF-8."
        case .writeFile: "Write a file in a session's jail (created or replaced; parent directories made). content is text, or base64 with encoding: base64."
        case .listFiles: "List a directory in a session's jail (default /workspace)."
        case .statFile: "Type, size, mode and modification time of a path in a session's jail."
        }
    }

    /// Whether the tool changes nothing (MCP's readOnlyHint).
    var readOnly: Bool {
        switch self {
        case .listSessions, .pollProcess, .readFile, .listFiles, .statFile: true
        default: false
        }
    }

    private static func string(_ d: String) -> JSONValue { ["type": "string", "description": .string(d)] }
    private static let session = string("The session id (s-...), from create_session or list_sessions.")
    private static let run = string("The run id (r-...), from start_process or exec.")
    private static let path = string("A path in the jail: relative to /workspace, or absolute under /workspace or /tmp.")
    private static let runFields: JSONObject = [
        "session": session,
        "command": string("A shell command line, run as /bin/sh -c COMMAND."),
        "argv": ["type": "array", "items": ["type": "string"], "description": "The command and its arguments (instead of command)."],
        "cwd": string("Working directory in the jail (default /workspace)."),
        "env": ["type": "object", "additionalProperties": ["type": "string"], "description": "Environment variables added for this command."],
        "timeout": ["type": ["number", "string"], "description": "Wall-clock limit: seconds, or a duration such as \"90s\" or \"10m\" (default: the session's)."],
    ]

    /// The tool's input schema (JSON Schema), the keys `Arguments` accepts.
    var inputSchema: JSONValue {
        var properties: JSONObject
        var required: [String]
        switch self {
        case .createSession:
            properties = [
                "policy": Self.string("A built-in policy name (default: the supervisor's default) or a policy file on the supervisor's host."),
                "tenant": Self.string("Tenant the session's usage counts against."),
                "labels": ["type": "object", "additionalProperties": ["type": "string"]],
                "memory": ["type": ["integer", "string"], "description": "Memory limit: bytes or a size such as \"512M\"."],
                "cpus": ["type": "number", "description": "CPU limit in cores."],
                "pids": ["type": "integer", "description": "Process limit."],
                "timeout": ["type": ["number", "string"], "description": "Default wall-clock limit of each command."],
            ]
            required = []
        case .listSessions:
            properties = ["status": ["type": "string", "enum": ["open", "closed", "failed", "interrupted"]], "tenant": Self.string("Only this tenant's.")]
            required = []
        case .closeSession, .pauseSession, .resumeSession:
            properties = ["session": Self.session]
            required = ["session"]
        case .exec:
            properties = Self.runFields
            properties["stdin"] = Self.string("Text given to the command's stdin, then end of file.")
            properties["max_output_bytes"] = ["type": "integer", "minimum": 0, "maximum": JSONValue(ControlLimits.maxOutputBytes),
                                              "description": "How much of each of stdout and stderr the result carries (default 262144)."]
            required = ["session"]
        case .startProcess:
            properties = Self.runFields
            properties["stdin"] = ["type": "boolean", "description": "Keep stdin open for write_stdin (default: /dev/null)."]
            required = ["session"]
        case .pollProcess:
            properties = [
                "run": Self.run,
                "stdout_offset": ["type": "integer", "minimum": 0, "description": "Byte offset to read stdout from (the previous poll's next offset)."],
                "stderr_offset": ["type": "integer", "minimum": 0],
                "wait": ["type": "number", "minimum": 0, "maximum": .double(ControlLimits.maxPollWait), "description": "Seconds to wait for the process to end first (default 0)."],
                "max_output_bytes": ["type": "integer", "minimum": 0, "maximum": JSONValue(ControlLimits.maxOutputBytes)],
            ]
            required = ["run"]
        case .writeStdin:
            properties = ["run": Self.run, "data": Self.string("Text to write (UTF-8)."), "eof": ["type": "boolean", "description": "Close stdin after data."]]
            required = ["run"]
        case .signalProcess:
            properties = ["run": Self.run, "signal": ["type": ["string", "integer"], "description": "TERM, INT, KILL, HUP, QUIT, USR1, USR2, ... or 1-64."]]
            required = ["run", "signal"]
        case .cancelProcess:
            properties = ["run": Self.run]
            required = ["run"]
        case .readFile, .statFile:
            properties = ["session": Self.session, "path": Self.path]
            required = ["session", "path"]
        case .writeFile:
            properties = ["session": Self.session, "path": Self.path, "content": Self.string("The file's content."),
                          "encoding": ["type": "string", "enum": ["utf-8", "base64"], "description": "How content is written (default utf-8)."]]
            required = ["session", "path", "content"]
        case .listFiles:
            properties = ["session": Self.session, "path": Self.path]
            required = ["session"]
        }
        return ["type": "object", "properties": .object(properties), "required": .array(required.map { .string($0) }),
                "additionalProperties": false]
    }

    /// The argument names the tool accepts.
    var keys: Set<String> { Set(inputSchema["properties"]?.objectValue?.keys ?? [:].keys) }
}

/// What one tool call may cost the server that answers it.
public enum ControlLimits {
    /// Output a result carries per stream at most (4 MiB), and by default (256 KiB).
    public static let maxOutputBytes = 4 << 20
    public static let defaultOutputBytes = 256 << 10
    /// The largest file `read_file` returns (8 MiB).
    public static let maxFileBytes = 8 << 20
    /// The longest `poll_process` waits (60 s).
    public static let maxPollWait = 60.0
    /// Open stdin pipes of one server, and bytes waiting in one of them.
    public static let maxStdinPipes = 64
    public static let maxStdinBacklog = 8 << 20
    /// The largest progress notification's text (16 KiB).
    public static let progressChunk = 16 << 10
}

/// A tool call that failed: the message the client reads (as a tool error,
/// `isError: true`, not a protocol error).
struct ToolFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A call's arguments, read strictly: unknown keys and wrong types are
/// refused, naming the key and the tool.
struct Arguments {
    let tool: ControlTool
    let values: JSONObject

    init(_ tool: ControlTool, _ values: JSONObject) throws(ToolFailure) {
        let unknown = Set(values.keys).subtracting(tool.keys)
        if !unknown.isEmpty {
            throw ToolFailure("\(tool.rawValue): unknown argument \(unknown.sorted().joined(separator: ", ")); it takes \(tool.keys.sorted().joined(separator: ", "))")
        }
        self.tool = tool
        self.values = values
    }

    func string(_ key: String) throws(ToolFailure) -> String? {
        guard let v = values[key], v != .null else { return nil }
        guard let s = v.stringValue else { throw ToolFailure("\(tool.rawValue): \(key) must be a string") }
        return s
    }

    func required(_ key: String) throws(ToolFailure) -> String {
        guard let s = try string(key), !s.isEmpty else { throw ToolFailure("\(tool.rawValue): \(key) is required") }
        return s
    }

    func bool(_ key: String) throws(ToolFailure) -> Bool? {
        guard let v = values[key], v != .null else { return nil }
        guard case .bool(let b) = v else { throw ToolFailure("\(tool.rawValue): \(key) must be true or false") }
        return b
    }

    func number(_ key: String, max: Double) throws(ToolFailure) -> Double? {
        guard let v = values[key], v != .null else { return nil }
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw ToolFailure("\(tool.rawValue): \(key) must be a number")
        }
        guard d.isFinite, d >= 0, d <= max else { throw ToolFailure("\(tool.rawValue): \(key) must be from 0 to \(max)") }
        return d
    }

    /// An id that goes into a URL path: letters, digits, '-' and '_' only.
    func id(_ key: String) throws(ToolFailure) -> String {
        let s = try required(key)
        guard s.count <= 64, s.utf8.allSatisfy({ $0 == 45 || $0 == 95 || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) }) else {
            throw ToolFailure("\(tool.rawValue): \(key) \(s.debugDescription) is not a Levain id")
        }
        return s
    }

    /// The value as given, for fields the API checks itself.
    subscript(_ key: String) -> JSONValue? {
        guard let v = values[key], v != .null else { return nil }
        return v
    }
}

/// A stream id, chosen by the supervisor.
public typealias StreamID = UInt32

/// Every frame of the protocol, decoded. `MessageCodec` converts between
/// these and `Frame`s, validating everything docs/PROTOCOL.md requires.
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    case request(Request)
    case response(Response)
    case event(Event)
    /// Stream data; empty `bytes` ends the stream.
    case data(stream: StreamID, bytes: [UInt8])
    /// `credit` more bytes may be sent on `stream`.
    case window(stream: StreamID, credit: UInt32)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)

    public var frameType: FrameType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .request: .request
        case .response: .response
        case .event: .event
        case .data: .data
        case .window: .window
        case .ping: .ping
        case .pong: .pong
        }
    }
}

// MARK: Handshake

/// The harness's first frame.
public struct Hello: Equatable, Sendable {
    /// The highest protocol version the harness speaks (>= 1).
    public var protocolVersion: UInt32
    /// Name and version, e.g. `levain-harness 0.2.0` (<= 256 bytes).
    public var harness: String
    /// The harness's pid in its pid namespace (1 as the jail's init).
    public var pid: Int32

    public init(protocolVersion: UInt32 = ProtocolLimits.protocolVersion, harness: String, pid: Int32) {
        self.protocolVersion = protocolVersion
        self.harness = harness
        self.pid = pid
    }

    public func validate() throws(ProtocolViolation) {
        try Check.range(protocolVersion, 1...UInt32.max, key: "protocol")
        try Check.text(harness, key: "harness", maxBytes: ProtocolLimits.maxHarnessNameBytes)
        try Check.range(pid, 1...Int32.max, key: "pid")
    }
}

/// The supervisor's answer to HELLO; its values hold for the rest of the session.
public struct Welcome: Equatable, Sendable {
    public var protocolVersion: UInt32
    /// `max_frame` for both directions from now on.
    public var maxFrame: Int
    /// Interval of PINGs on an idle connection.
    public var heartbeatMillis: Int
    /// Initial credit of every stream, both directions.
    public var window: UInt32
    /// The session id (non-empty, <= 128 bytes).
    public var session: String

    public init(
        protocolVersion: UInt32 = ProtocolLimits.protocolVersion,
        maxFrame: Int = ProtocolLimits.defaultMaxFrame,
        heartbeatMillis: Int = ProtocolLimits.defaultHeartbeatMillis,
        window: UInt32 = ProtocolLimits.defaultWindow,
        session: String
    ) {
        self.protocolVersion = protocolVersion
        self.maxFrame = maxFrame
        self.heartbeatMillis = heartbeatMillis
        self.window = window
        self.session = session
    }

    public func validate() throws(ProtocolViolation) {
        try Check.range(protocolVersion, 1...UInt32.max, key: "protocol")
        try Check.range(maxFrame, ProtocolLimits.minimumMaxFrame...ProtocolLimits.absoluteMaxFrame, key: "max_frame")
        try Check.range(heartbeatMillis, ProtocolLimits.heartbeatMillisRange, key: "heartbeat_ms")
        try Check.range(window, 1...ProtocolLimits.maxWindow, key: "window")
        try Check.text(session, key: "session", maxBytes: ProtocolLimits.maxSessionBytes, allowEmpty: false)
    }
}

// MARK: Requests

/// A REQUEST: an id unique among the supervisor's outstanding requests and
/// an operation.
public struct Request: Equatable, Sendable {
    /// 0...2^53.
    public var id: UInt64
    public var operation: Operation

    public init(id: UInt64, operation: Operation) {
        self.id = id
        self.operation = operation
    }

    public func validate() throws(ProtocolViolation) {
        try Check.jsonInteger(id, key: "id")
        try operation.validate()
    }
}

/// The operations with their arguments (`OperationKind.since`: the version
/// that added each).
public enum Operation: Equatable, Sendable {
    case runStart(RunStart)
    case runSignal(RunSignal)
    case runResize(RunResize)
    case fileRead(FileRead)
    case fileWrite(FileWrite)
    case fileList(FileList)
    case fileStat(FileStat)
    case fileDelete(FileDelete)
    case fileMkdir(FileMkdir)
    case fileRename(FileRename)

    public var kind: OperationKind {
        switch self {
        case .runStart: .runStart
        case .runSignal: .runSignal
        case .runResize: .runResize
        case .fileRead: .fileRead
        case .fileWrite: .fileWrite
        case .fileList: .fileList
        case .fileStat: .fileStat
        case .fileDelete: .fileDelete
        case .fileMkdir: .fileMkdir
        case .fileRename: .fileRename
        }
    }

    /// The workspace or /tmp paths the operation names.
    public var paths: [String] {
        switch self {
        case .runStart, .runSignal, .runResize: []
        case .fileRead(let v): [v.path]
        case .fileWrite(let v): [v.path]
        case .fileList(let v): [v.path]
        case .fileStat(let v): [v.path]
        case .fileDelete(let v): [v.path]
        case .fileMkdir(let v): [v.path]
        case .fileRename(let v): [v.path, v.to]
        }
    }

    /// The protocol version the operation needs: its kind's, 2 for a path
    /// in /tmp, 3 for a run on a pseudo-terminal.
    public var since: UInt32 {
        if case .runStart(let start) = self, start.pty != nil { return max(3, kind.since) }
        return paths.contains(where: FilePaths.isTmp) ? max(2, kind.since) : kind.since
    }

    public func validate() throws(ProtocolViolation) {
        switch self {
        case .runStart(let value): try value.validate()
        case .runSignal(let value): try value.validate()
        case .runResize(let value): try value.size.validate()
        case .fileRead(let value): try value.validate()
        case .fileWrite(let value): try value.validate()
        case .fileList(let value): try Check.filePath(value.path, key: "path")
        case .fileStat(let value): try Check.filePath(value.path, key: "path")
        case .fileDelete(let value): try Check.filePath(value.path, key: "path")
        case .fileMkdir(let value):
            try Check.filePath(value.path, key: "path")
            try Check.range(value.mode, 0...ProtocolLimits.maxMode, key: "mode")
        case .fileRename(let value):
            try Check.filePath(value.path, key: "path")
            try Check.filePath(value.to, key: "to")
        }
    }
}

/// The `op` names.
public enum OperationKind: String, Sendable, CaseIterable {
    case runStart = "run.start"
    case runSignal = "run.signal"
    case runResize = "run.resize"
    case fileRead = "file.read"
    case fileWrite = "file.write"
    case fileList = "file.list"
    case fileStat = "file.stat"
    case fileDelete = "file.delete"
    case fileMkdir = "file.mkdir"
    case fileRename = "file.rename"

    /// The protocol version that added the operation: a peer sends it only
    /// on a connection of that version or later, and one that arrives on an
    /// older connection is an unknown operation.
    public var since: UInt32 {
        switch self {
        case .fileMkdir, .fileRename: 2
        case .runResize: 3
        default: 1
        }
    }
}

/// `run.start`: start the run's process as the jail user.
public struct RunStart: Equatable, Sendable {
    public var run: RunID
    /// 1...4096 elements of at most 128 KiB, 1 MiB together, no NUL.
    public var argv: [String]
    /// The whole environment, `KEY=VALUE` entries.
    public var env: [String]
    /// Absolute path in the jail.
    public var cwd: String
    /// Stream of the process's stdin (supervisor → harness), nil for /dev/null.
    public var stdin: StreamID?
    /// Streams of its stdout and stderr (harness → supervisor).
    public var stdout: StreamID
    public var stderr: StreamID
    /// Whether a descriptor for the run's cgroup comes on fd 4 first.
    public var cgroup: Bool
    public var rlimits: ResourceLimits
    /// Version 3: the run's stdin, stdout and stderr are a new
    /// pseudo-terminal of this size (its controlling terminal); what it
    /// writes comes on `stdout`, `stderr` ends at once, `stdin` is typed
    /// into the terminal.
    public var pty: TerminalSize?

    public init(
        run: RunID, argv: [String], env: [String], cwd: String, stdin: StreamID?, stdout: StreamID,
        stderr: StreamID, cgroup: Bool, rlimits: ResourceLimits = ResourceLimits(), pty: TerminalSize? = nil
    ) {
        self.pty = pty
        self.run = run
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cgroup = cgroup
        self.rlimits = rlimits
    }

    /// The streams this request opens.
    public var streams: [StreamID] {
        if let stdin { [stdin, stdout, stderr] } else { [stdout, stderr] }
    }

    public func validate() throws(ProtocolViolation) {
        if argv.isEmpty { throw Check.invalid("argv", "must have at least one element") }
        if argv.count > ProtocolLimits.maxArgvElements {
            throw Check.invalid("argv", "has more than \(ProtocolLimits.maxArgvElements) elements")
        }
        var total = 0
        for (index, argument) in argv.enumerated() {
            try Check.text(argument, key: "argv[\(index)]", maxBytes: ProtocolLimits.maxArgumentBytes)
            total += argument.utf8.count
        }
        if total > ProtocolLimits.maxArgvTotalBytes {
            throw Check.invalid("argv", "is longer than \(ProtocolLimits.maxArgvTotalBytes) bytes in total")
        }
        if env.count > ProtocolLimits.maxEnvEntries {
            throw Check.invalid("env", "has more than \(ProtocolLimits.maxEnvEntries) elements")
        }
        total = 0
        for (index, entry) in env.enumerated() {
            try Check.environmentEntry(entry, key: "env[\(index)]")
            total += entry.utf8.count
        }
        if total > ProtocolLimits.maxEnvTotalBytes {
            throw Check.invalid("env", "is longer than \(ProtocolLimits.maxEnvTotalBytes) bytes in total")
        }
        try Check.absolutePath(cwd, key: "cwd")
        if stdout == stderr { throw Check.invalid("stderr", "must differ from stdout (both \(stdout))") }
        if let stdin, stdin == stdout || stdin == stderr {
            throw Check.invalid("stdin", "must differ from stdout and stderr (\(stdin))")
        }
        try rlimits.validate()
        try pty?.validate()
    }
}

/// A terminal's size (`run.start`'s `pty`, `run.resize`).
public struct TerminalSize: Equatable, Sendable {
    /// 1...10,000 each.
    public var rows: Int
    public var cols: Int

    public init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
    }

    public func validate() throws(ProtocolViolation) {
        try Check.range(rows, ProtocolLimits.terminalSide, key: "rows")
        try Check.range(cols, ProtocolLimits.terminalSide, key: "cols")
    }
}

/// `run.resize` (version 3): a new size for a run's terminal; the kernel
/// sends SIGWINCH to its foreground process group.
public struct RunResize: Equatable, Sendable {
    public var run: RunID
    public var size: TerminalSize

    public init(run: RunID, size: TerminalSize) {
        self.run = run
        self.size = size
    }
}

/// Resource limits of `run.start`; nil means "not set" (inherit).
public struct ResourceLimits: Equatable, Sendable {
    public var cpu: ResourceLimit?
    public var fsize: ResourceLimit?
    public var nofile: ResourceLimit?
    public var core: ResourceLimit?
    public var stack: ResourceLimit?

    public init(
        cpu: ResourceLimit? = nil, fsize: ResourceLimit? = nil, nofile: ResourceLimit? = nil,
        core: ResourceLimit? = nil, stack: ResourceLimit? = nil
    ) {
        self.cpu = cpu
        self.fsize = fsize
        self.nofile = nofile
        self.core = core
        self.stack = stack
    }

    public static let names = ["cpu", "fsize", "nofile", "core", "stack"]

    public var isEmpty: Bool { cpu == nil && fsize == nil && nofile == nil && core == nil && stack == nil }

    subscript(name: String) -> ResourceLimit? {
        get {
            switch name {
            case "cpu": cpu
            case "fsize": fsize
            case "nofile": nofile
            case "core": core
            case "stack": stack
            default: nil
            }
        }
        set {
            switch name {
            case "cpu": cpu = newValue
            case "fsize": fsize = newValue
            case "nofile": nofile = newValue
            case "core": core = newValue
            case "stack": stack = newValue
            default: break
            }
        }
    }

    public func validate() throws(ProtocolViolation) {
        for name in Self.names {
            guard let limit = self[name] else { continue }
            let key = "rlimits.\(name)"
            if let soft = limit.soft { try Check.jsonInteger(soft, key: key + "[0]") }
            if let hard = limit.hard { try Check.jsonInteger(hard, key: key + "[1]") }
            if let soft = limit.soft, limit.hard.map({ soft > $0 }) ?? false {
                throw Check.invalid(key, "has a soft limit above its hard limit")
            }
            if limit.soft == nil && limit.hard != nil {
                throw Check.invalid(key, "has an unlimited soft limit below a finite hard limit")
            }
        }
    }
}

/// `[soft, hard]`; nil (JSON null) is unlimited (RLIM_INFINITY).
public struct ResourceLimit: Equatable, Sendable {
    public var soft: UInt64?
    public var hard: UInt64?

    public init(soft: UInt64?, hard: UInt64?) {
        self.soft = soft
        self.hard = hard
    }
}

/// `run.signal`: signal the run's process group.
public struct RunSignal: Equatable, Sendable {
    public var run: RunID
    /// 1...64.
    public var signal: Int32

    public init(run: RunID, signal: Int32) {
        self.run = run
        self.signal = signal
    }

    public func validate() throws(ProtocolViolation) {
        try Check.range(signal, ProtocolLimits.signalRange, key: "signal")
    }
}

/// `file.read`: the content comes as DATA on `stream`, then its end, then the response.
public struct FileRead: Equatable, Sendable {
    public var path: String
    public var stream: StreamID
    public var maxBytes: UInt64
    /// A file larger than `maxBytes` is not refused (EFBIG): its first
    /// `maxBytes` bytes are sent. What a reader that shows only the start
    /// of a file asks for, so that it never holds more.
    public var truncate: Bool

    public init(path: String, stream: StreamID, maxBytes: UInt64, truncate: Bool = false) {
        self.path = path
        self.stream = stream
        self.maxBytes = maxBytes
        self.truncate = truncate
    }

    public func validate() throws(ProtocolViolation) {
        try Check.filePath(path, key: "path")
        try Check.jsonInteger(maxBytes, key: "max_bytes")
    }
}

/// `file.write`: the supervisor sends the content as DATA on `stream`, then its end.
public struct FileWrite: Equatable, Sendable {
    public var path: String
    public var stream: StreamID
    public var maxBytes: UInt64
    /// Permission bits, 0...0o7777.
    public var mode: UInt32
    /// The exact size of the content, when the supervisor knows it (a
    /// Content-Length): the file is committed only if exactly this many
    /// bytes arrived, so a client that stops early leaves nothing.
    public var size: UInt64?

    public init(path: String, stream: StreamID, maxBytes: UInt64, mode: UInt32, size: UInt64? = nil) {
        self.path = path
        self.stream = stream
        self.maxBytes = maxBytes
        self.mode = mode
        self.size = size
    }

    public func validate() throws(ProtocolViolation) {
        try Check.filePath(path, key: "path")
        try Check.jsonInteger(maxBytes, key: "max_bytes")
        try Check.range(mode, 0...ProtocolLimits.maxMode, key: "mode")
        if let size {
            try Check.jsonInteger(size, key: "size")
            guard size <= maxBytes else { throw ProtocolViolation(.invalidValue, "size \(size) is more than max_bytes \(maxBytes)", key: "size") }
        }
    }
}

public struct FileList: Equatable, Sendable {
    public var path: String
    public init(path: String) { self.path = path }
}

public struct FileStat: Equatable, Sendable {
    public var path: String
    public init(path: String) { self.path = path }
}

/// Where file operations' paths point: relative ones beneath /workspace,
/// absolute ones (version 2) beneath the jail's /tmp.
public enum FilePaths {
    /// `/tmp` or a path beneath it.
    public static func isTmp(_ path: String) -> Bool { path == "/tmp" || path.hasPrefix("/tmp/") }
}

/// `file.mkdir` (version 2): makes a directory (with `parents`, the missing
/// ones above it too; an existing directory is then no error).
public struct FileMkdir: Equatable, Sendable {
    public var path: String
    public var parents: Bool
    public var mode: UInt32

    public init(path: String, parents: Bool, mode: UInt32 = 0o755) {
        self.path = path
        self.parents = parents
        self.mode = mode
    }
}

/// `file.rename` (version 2): moves `path` to `to`, both beneath the
/// workspace; an existing file at `to` is replaced, a directory only when
/// empty (rename(2)'s rules).
public struct FileRename: Equatable, Sendable {
    public var path: String
    public var to: String

    public init(path: String, to: String) {
        self.path = path
        self.to = to
    }
}

public struct FileDelete: Equatable, Sendable {
    public var path: String
    public var recursive: Bool

    public init(path: String, recursive: Bool) {
        self.path = path
        self.recursive = recursive
    }
}

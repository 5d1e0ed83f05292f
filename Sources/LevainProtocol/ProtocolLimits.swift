/// Every bound of the protocol (docs/PROTOCOL.md; versions 1 to 3 share them), in one place.
///
/// The supervisor treats the harness as hostile: each of these is a limit a
/// frame must respect, or a default it can rely on. Sizes are in bytes.
public enum ProtocolLimits {
    /// The highest protocol version this module speaks. It speaks every
    /// version from 1 up: version 2 adds `file.mkdir` and `file.rename`;
    /// version 3 runs on a pseudo-terminal (`run.start`'s `pty`) and
    /// `run.resize`.
    public static let protocolVersion: UInt32 = 3
    /// The lowest protocol version this module speaks.
    public static let oldestProtocolVersion: UInt32 = 1

    // MARK: Frames

    /// `max_frame` until WELCOME: a HELLO or WELCOME frame (length field, so
    /// type byte + body) is at most this long.
    public static let handshakeMaxFrame = 65_536
    /// The `max_frame` a supervisor offers in WELCOME unless configured otherwise.
    public static let defaultMaxFrame = 1 << 20
    /// The largest `max_frame` a WELCOME may carry (16 MiB).
    public static let absoluteMaxFrame = 16 << 20
    /// The smallest `max_frame` a WELCOME may carry (the handshake limit).
    public static let minimumMaxFrame = handshakeMaxFrame
    /// Bytes of a frame header: the u32 length and the type byte.
    public static let frameHeaderSize = 5
    /// Bytes in front of the data in a DATA body (the stream id).
    public static let dataHeaderSize = 4

    // MARK: Flow control and heartbeats

    /// The initial credit of every stream unless WELCOME says otherwise.
    public static let defaultWindow: UInt32 = 262_144
    /// The largest `window` a WELCOME may carry.
    public static let maxWindow: UInt32 = 16 << 20
    /// The heartbeat interval a supervisor offers unless configured otherwise.
    public static let defaultHeartbeatMillis = 2_000
    /// The accepted range of WELCOME's `heartbeat_ms`.
    public static let heartbeatMillisRange = 50...600_000
    /// A peer that answers no PING for this many heartbeat intervals is dead.
    public static let unresponsiveHeartbeats = 4
    /// How long the supervisor waits for HELLO.
    public static let handshakeTimeoutMillis = 5_000

    // MARK: Rates and counts

    /// Runs (run.start sent, process.exited not yet received) live at once.
    public static let maxRunsPerSession = 64
    /// Frames per second a harness may send of its own accord (token bucket,
    /// 1 s burst): RESPONSEs and process events, bounded by the supervisor's
    /// own requests and runs, are not counted.
    public static let maxFramesPerSecond = 10_000
    /// Unsolicited EVENT frames (harness.log) per second a harness may send
    /// (token bucket, 1 s burst).
    public static let maxEventsPerSecond = 256
    /// Entries in a `file.list` response.
    public static let maxListEntries = 10_000
    /// Nesting depth of a JSON body (the body object itself is level 1).
    public static let maxJSONDepth = 32
    /// The largest integer a JSON id, stream or size may hold (2^53).
    public static let maxJSONInteger: Int64 = 1 << 53

    // MARK: run.start

    /// Elements of `argv` (at least one).
    public static let maxArgvElements = 4_096
    /// Bytes of one `argv` element or `env` entry (Linux MAX_ARG_STRLEN).
    public static let maxArgumentBytes = 128 << 10
    /// Bytes of all `argv` elements together.
    public static let maxArgvTotalBytes = 1 << 20
    /// Entries of `env`.
    public static let maxEnvEntries = 4_096
    /// Bytes of all `env` entries together.
    public static let maxEnvTotalBytes = 1 << 20
    /// Bytes of an environment variable name.
    public static let maxEnvKeyBytes = 256
    /// The signal numbers `run.signal` accepts (and `process.exited` reports).
    public static let signalRange: ClosedRange<Int32> = 1...64
    /// Rows and columns of a run's terminal.
    public static let terminalSide: ClosedRange<Int> = 1...10_000
    /// Exit codes `process.exited` reports.
    public static let exitCodeRange: ClosedRange<Int32> = 0...255

    // MARK: Strings

    /// Bytes of a path (`cwd`, file operation paths).
    public static let maxPathBytes = 4_096
    /// Bytes of a directory entry name.
    public static let maxNameBytes = 255
    /// Bytes of a `harness.log` message and of a response's `error.message`.
    public static let maxMessageBytes = 4_096
    /// Bytes of a response's `error.code` (an errno name such as `ENOENT`).
    public static let maxErrorCodeBytes = 64
    /// Bytes of HELLO's `harness` (name and version).
    public static let maxHarnessNameBytes = 256
    /// Bytes of WELCOME's `session`.
    public static let maxSessionBytes = 128
    /// Permission bits a `mode` may carry (07777).
    public static let maxMode: UInt32 = 0o7777
}

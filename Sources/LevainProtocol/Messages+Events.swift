// MARK: Events

public enum Event: Equatable, Sendable {
    case processStarted(ProcessStarted)
    case processExited(ProcessExited)
    case harnessLog(HarnessLog)

    /// The `event` name.
    public var name: String {
        switch self {
        case .processStarted: "process.started"
        case .processExited: "process.exited"
        case .harnessLog: "harness.log"
        }
    }

    /// The run the event is about, if any.
    public var run: RunID? {
        switch self {
        case .processStarted(let value): value.run
        case .processExited(let value): value.run
        case .harnessLog: nil
        }
    }

    public func validate() throws(ProtocolViolation) {
        switch self {
        case .processStarted(let value):
            try Check.range(value.pid, 1...Int32.max, key: "pid")
        case .processExited(let value):
            try value.validate()
        case .harnessLog(let value):
            try Check.text(value.message, key: "message", maxBytes: ProtocolLimits.maxMessageBytes)
        }
    }
}

public struct ProcessStarted: Equatable, Sendable {
    public var run: RunID
    public var pid: Int32

    public init(run: RunID, pid: Int32) {
        self.run = run
        self.pid = pid
    }
}

/// Exactly one of `code` and `signal` is set.
public struct ProcessExited: Equatable, Sendable {
    public var run: RunID
    public var pid: Int32
    /// Exit status 0...255 if the process exited.
    public var code: Int32?
    /// Signal 1...64 if a signal killed it.
    public var signal: Int32?
    public var userMicros: UInt64
    public var systemMicros: UInt64
    public var maxRSSKilobytes: UInt64

    public init(
        run: RunID, pid: Int32, code: Int32?, signal: Int32?, userMicros: UInt64, systemMicros: UInt64,
        maxRSSKilobytes: UInt64
    ) {
        self.run = run
        self.pid = pid
        self.code = code
        self.signal = signal
        self.userMicros = userMicros
        self.systemMicros = systemMicros
        self.maxRSSKilobytes = maxRSSKilobytes
    }

    func validate() throws(ProtocolViolation) {
        try Check.range(pid, 1...Int32.max, key: "pid")
        switch (code, signal) {
        case (let code?, nil): try Check.range(code, ProtocolLimits.exitCodeRange, key: "code")
        case (nil, let signal?): try Check.range(signal, ProtocolLimits.signalRange, key: "signal")
        case (nil, nil): throw Check.invalid("code", "and 'signal' are both null; exactly one must be set")
        case (_?, _?): throw Check.invalid("code", "and 'signal' are both set; exactly one must be")
        }
        try Check.jsonInteger(userMicros, key: "user_us")
        try Check.jsonInteger(systemMicros, key: "system_us")
        try Check.jsonInteger(maxRSSKilobytes, key: "max_rss_kb")
    }
}

public enum LogLevel: String, Sendable, CaseIterable {
    case info
    case warning
    case error
}

public struct HarnessLog: Equatable, Sendable {
    public var level: LogLevel
    /// At most 4096 bytes.
    public var message: String

    public init(level: LogLevel, message: String) {
        self.level = level
        self.message = message
    }
}

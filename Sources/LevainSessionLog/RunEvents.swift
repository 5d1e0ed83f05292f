import LevainJSON
/// A run's lifecycle events, made in one place for every writer (the
/// supervisor's runs, agent runs, a one-shot `levain run`), so a run reads
/// the same in the log whoever ran it.
public struct RunEvents: Sendable {
    public let sessionID: String
    public let runID: String
    public let tenant: String
    /// The events' time; nil: when each is made.
    public var time: LogTimestamp?

    public init(sessionID: String, runID: String, tenant: String = "", time: LogTimestamp? = nil) {
        self.sessionID = sessionID
        self.runID = runID
        self.tenant = tenant
        self.time = time
    }

    private func event(_ type: String, _ payload: JSONObject) -> NewEvent {
        NewEvent(sessionID: sessionID, runID: runID, tenant: tenant, type: type, payload: payload, time: time ?? .now())
    }

    /// `run.queued`: the run's request as stored.
    public func queued(_ request: JSONObject) -> NewEvent { event(EventType.runQueued, request) }

    /// `run.started`: its attempt, and its argv when the writer has one.
    public func started(attempt: Int, argv: [String]? = nil) -> NewEvent {
        var p: JSONObject = ["attempt": .int(Int64(attempt))]
        if let argv { p["argv"] = .array(argv.map { .string($0) }) }
        return event(EventType.runStarted, p)
    }

    /// `process.exited`: how the process ended and what it used.
    public func processExited(code: Int32?, signal: Int32?, userMicros: UInt64, systemMicros: UInt64, maxRSSKilobytes: UInt64?) -> NewEvent {
        var p: JSONObject = ["user_us": .int(Int64(clamping: userMicros)), "system_us": .int(Int64(clamping: systemMicros))]
        p["max_rss_kb"] = maxRSSKilobytes.map { .int(Int64(clamping: $0)) } ?? .null
        p["exit_code"] = code.map { .int(Int64($0)) } ?? .null
        p["signal"] = signal.map { .int(Int64($0)) } ?? .null
        return event(EventType.processExited, p)
    }

    /// `limit.hit`: one per limit the run reached (memory, pids, cpu_time, ...).
    public func limitHit(_ limit: String) -> NewEvent { event(EventType.limitHit, ["limit": .string(limit)]) }

    /// What `run.finished` says.
    public struct Finished: Sendable {
        public var status: RunStatus
        public var exitStatus: Int32
        /// Whether a process ran: then `exit_code` and `signal` are given (null when not).
        public var hadProcess: Bool
        public var exitCode: Int32?
        public var signal: Int32?
        public var error: String?
        public var durationMillis: Double?
        /// The output kept, when the writer keeps it.
        public var stdoutBytes: UInt64?
        public var stderrBytes: UInt64?
        public var outputTruncated = false
        /// Output not kept because the state directory could not take it:
        /// stream name, bytes, and the error.
        public var lost: [(stream: String, bytes: UInt64, error: String)] = []

        public init(status: RunStatus, exitStatus: Int32, hadProcess: Bool, exitCode: Int32? = nil, signal: Int32? = nil,
                    error: String? = nil, durationMillis: Double? = nil) {
            self.status = status
            self.exitStatus = exitStatus
            self.hadProcess = hadProcess
            self.exitCode = exitCode
            self.signal = signal
            self.error = error
            self.durationMillis = durationMillis
        }

        public var payload: JSONObject {
            var p: JSONObject = ["status": .string(status.rawValue), "exit_status": .int(Int64(exitStatus))]
            if let stdoutBytes { p["stdout_bytes"] = .int(Int64(clamping: stdoutBytes)) }
            if let stderrBytes { p["stderr_bytes"] = .int(Int64(clamping: stderrBytes)) }
            if hadProcess {
                p["exit_code"] = exitCode.map { .int(Int64($0)) } ?? .null
                p["signal"] = signal.map { .int(Int64($0)) } ?? .null
            }
            if let error { p["error"] = .string(error) }
            if outputTruncated { p["output_truncated"] = true }
            for l in lost {
                p["\(l.stream)_lost_bytes"] = .int(Int64(clamping: l.bytes))
                p["\(l.stream)_error"] = .string(l.error)
            }
            if let durationMillis { p["duration_ms"] = .double(durationMillis) }
            return p
        }
    }

    /// `run.finished`.
    public func finished(_ f: Finished) -> NewEvent { event(EventType.runFinished, f.payload) }

    /// `run.interrupted`: a restart found the run in flight.
    public func interrupted(_ payload: JSONObject) -> NewEvent { event(EventType.runInterrupted, payload) }
}

/// The supervisor's view of one harness connection: a value-type state
/// machine with no I/O and no clock of its own (`now` is a monotonic time in
/// nanoseconds the caller passes in, so tests and the fuzzer are exact).
///
/// How to drive it:
/// - every decoded message from the harness goes through `receive`, which
///   either returns what to do (`Action`) or throws the `ProtocolViolation`
///   that ends the session (the state then stays failed);
/// - every message the supervisor sends goes through `willSend` first, which
///   registers requests, runs and streams and enforces the harness's credit;
///   a `ProtocolMisuse` means nothing may be sent (the harness is not to
///   blame);
/// - the consumer of an inbound stream calls `consumed(stream:bytes:)` as it
///   reads; it returns a WINDOW to send (through `willSend`) when enough
///   credit has accumulated. Credit is returned only this way: a slow
///   consumer keeps the harness at `window` bytes per stream;
/// - call `tick(now:)` periodically (e.g. every heartbeat / 2): it fails
///   the connection on a missed HELLO or unanswered PINGs and returns a PING
///   to send when the supervisor has been quiet for `heartbeat_ms`.
public struct SupervisorConnectionState: Sendable {
    public struct Configuration: Sendable {
        public var handshakeTimeoutMillis = ProtocolLimits.handshakeTimeoutMillis
        public var maxRunsPerSession = ProtocolLimits.maxRunsPerSession
        public var maxFramesPerSecond = ProtocolLimits.maxFramesPerSecond
        public var maxEventsPerSecond = ProtocolLimits.maxEventsPerSecond
        public var unresponsiveHeartbeats = ProtocolLimits.unresponsiveHeartbeats

        public init() {}
    }

    public enum Phase: Equatable, Sendable {
        /// Nothing received yet; the first frame must be HELLO.
        case awaitingHello
        /// HELLO received; the supervisor must send WELCOME (or close).
        case awaitingWelcome
        /// WELCOME sent.
        case established
        /// A violation was found; the connection is to be closed.
        case failed
    }

    public enum Action: Equatable, Sendable {
        /// Answer with `willSend(.welcome(...))` and the WELCOME, or close the
        /// connection if no common version exists.
        case answerHello(Hello)
        /// The response to a request of the given operation; its result
        /// fields were checked against the operation.
        case deliverResponse(Response, operation: OperationKind)
        case deliverEvent(Event)
        /// Data of an inbound stream; call `consumed` as it is used.
        case deliverData(stream: StreamID, bytes: [UInt8])
        /// The harness ended an inbound stream.
        case endOfStream(stream: StreamID)
        /// The harness returned credit: `credit` bytes may now be sent on the outbound stream.
        case creditAvailable(stream: StreamID, credit: UInt32)
        /// Send `.pong(nonce:)` (through `willSend`).
        case sendPong(nonce: UInt64)
    }

    private struct PendingRequest: Sendable {
        var kind: OperationKind
        var run: RunID?
        var stream: StreamID?
    }

    private struct RunRecord: Sendable {
        var request: UInt64
        var stdin: StreamID?
        var stdout: StreamID
        var stderr: StreamID
        var responded = false
        var pid: Int32?
        var started = false
        var exited = false
    }

    public let configuration: Configuration
    public private(set) var phase: Phase = .awaitingHello
    public private(set) var hello: Hello?
    /// The version the WELCOME settled on (0 before it): what requests may use.
    public var negotiatedVersion: UInt32 { welcome?.protocolVersion ?? 0 }
    /// The version to answer a HELLO with: the highest both sides speak, or
    /// nil when there is none.
    public static func version(answering hello: Hello) -> UInt32? {
        let v = min(hello.protocolVersion, ProtocolLimits.protocolVersion)
        return v >= ProtocolLimits.oldestProtocolVersion ? v : nil
    }
    public private(set) var welcome: Welcome?
    /// The violation that failed the connection, if any.
    public private(set) var failure: ProtocolViolation?
    /// Runs started and not yet exited.
    public private(set) var liveRunCount = 0

    private let startedAt: UInt64
    private var lastSentAt: UInt64
    private var frames: TokenBucket
    private var events: TokenBucket
    private var streams = StreamTable(window: ProtocolLimits.defaultWindow, peer: .harness)
    private var pending: [UInt64: PendingRequest] = [:]
    private var runs: [RunID: RunRecord] = [:]
    private var pings: [(nonce: UInt64, sentAt: UInt64)] = []
    private var nextPingNonce: UInt64 = 1
    private static let maxPendingPings = 16

    public init(configuration: Configuration = Configuration(), now: UInt64) {
        self.configuration = configuration
        startedAt = now
        lastSentAt = now
        frames = TokenBucket(perSecond: configuration.maxFramesPerSecond, now: now)
        events = TokenBucket(perSecond: configuration.maxEventsPerSecond, now: now)
    }

    /// The largest frame either side may send now.
    public var maxFrame: Int { welcome?.maxFrame ?? ProtocolLimits.handshakeMaxFrame }

    public var outstandingRequestCount: Int { pending.count }

    /// Bytes the supervisor may send now on an outbound stream; nil if it is not open.
    public func credit(forOutbound stream: StreamID) -> UInt32? {
        guard let state = streams.outbound[stream], !state.ended else { return nil }
        return state.credit
    }

    /// Whether the harness may still send DATA on the stream.
    public func isInboundOpen(_ stream: StreamID) -> Bool {
        streams.inbound[stream].map { !$0.ended } ?? false
    }

    // MARK: Receiving

    public mutating func receive(_ message: Message, now: UInt64) throws(ProtocolViolation) -> Action? {
        if let failure { throw failure }
        do throws(ProtocolViolation) {
            return try handle(message, now: now)
        } catch {
            failure = error
            phase = .failed
            throw error
        }
    }

    private mutating func handle(_ message: Message, now: UInt64) throws(ProtocolViolation) -> Action? {
        // Only what the harness sends of its own accord is rate-limited. A
        // RESPONSE answers a request of ours (an unknown id is a violation)
        // and a process event answers a run.start of ours (one started and
        // one exited a run, a second is a violation): both are bounded by
        // what the supervisor asked for, so a busy session's hundreds of
        // short runs a second are never taken for a flood.
        if !Self.isAnswer(message) {
            guard frames.take(now: now) else {
                throw ProtocolViolation(.flood, "more than \(configuration.maxFramesPerSecond) frames per second")
            }
            if case .event = message, !events.take(now: now) {
                throw ProtocolViolation(.flood, "more than \(configuration.maxEventsPerSecond) EVENTs per second")
            }
        }
        switch phase {
        case .awaitingHello:
            guard case .hello(let hello) = message else {
                throw ProtocolViolation(.handshake, "the first frame must be HELLO, not \(message.frameType)")
            }
            self.hello = hello
            phase = .awaitingWelcome
            return .answerHello(hello)
        case .awaitingWelcome:
            throw ProtocolViolation(.handshake, "\(message.frameType) before WELCOME")
        case .established, .failed:
            break
        }
        switch message {
        case .hello:
            throw ProtocolViolation(.handshake, "a second HELLO")
        case .welcome, .request:
            throw ProtocolViolation(.unexpectedFrame, "\(message.frameType) frames are not sent by the harness")
        case .response(let response):
            return try handleResponse(response)
        case .event(let event):
            return try handleEvent(event)
        case .data(let stream, let bytes):
            switch try streams.receiveData(stream: stream, count: bytes.count) {
            case .deliver: return .deliverData(stream: stream, bytes: bytes)
            case .end: return .endOfStream(stream: stream)
            case .ignored: return nil
            }
        case .window(let stream, let credit):
            return try streams.receiveWindow(stream: stream, credit: credit)
                .map { .creditAvailable(stream: stream, credit: $0) }
        case .ping(let nonce):
            return .sendPong(nonce: nonce)
        case .pong(let nonce):
            guard let index = pings.firstIndex(where: { $0.nonce == nonce }) else {
                throw ProtocolViolation(.unexpectedFrame, "PONG with nonce \(nonce), which no outstanding PING had")
            }
            // It answers this PING and proves the older ones were read too.
            pings.removeSubrange(0...index)
            return nil
        }
    }

    private mutating func handleResponse(_ response: Response) throws(ProtocolViolation) -> Action? {
        guard let request = pending.removeValue(forKey: response.id) else {
            throw ProtocolViolation(.unknownRequest, "RESPONSE for id \(response.id), which is not outstanding",
                                    key: "id")
        }
        func require(_ present: Bool, _ key: String) throws(ProtocolViolation) {
            if response.ok && !present {
                throw ProtocolViolation(
                    .missingKey, "missing key '\(key)' in the response to \(request.kind.rawValue) \(response.id)",
                    key: key)
            }
        }
        switch request.kind {
        case .runStart:
            try require(response.pid != nil, "pid")
            try runStartAnswered(request.run!, response: response)
        case .fileRead:
            try require(response.size != nil, "size")
            let stream = request.stream!
            if response.ok, let state = streams.inbound[stream] {
                guard state.ended else {
                    throw ProtocolViolation(
                        .invalidValue, "file.read \(response.id) answered before the end of stream \(stream)",
                        key: "size")
                }
                guard state.received == response.size! else {
                    throw ProtocolViolation(
                        .invalidValue,
                        "file.read \(response.id) reports size \(response.size!) but stream \(stream) carried \(state.received) bytes",
                        key: "size")
                }
                streams.retireInbound(stream)
            } else {
                streams.abandonInbound(stream)
            }
        case .fileWrite:
            try require(response.size != nil, "size")
            let stream = request.stream!
            if response.ok, let state = streams.outbound[stream] {
                guard state.ended else {
                    throw ProtocolViolation(
                        .invalidValue, "file.write \(response.id) answered before its content ended", key: "ok")
                }
                guard state.sent == response.size! else {
                    throw ProtocolViolation(
                        .invalidValue,
                        "file.write \(response.id) reports size \(response.size!) but \(state.sent) bytes were sent",
                        key: "size")
                }
            }
            streams.retireOutbound(stream)
        case .fileList:
            try require(response.entries != nil, "entries")
        case .fileStat:
            try require(response.stat != nil, "type")
        case .runSignal, .runResize, .fileDelete, .fileMkdir, .fileRename:
            break
        }
        return .deliverResponse(response, operation: request.kind)
    }

    private mutating func runStartAnswered(_ run: RunID, response: Response) throws(ProtocolViolation) {
        guard var record = runs[run] else { return }
        if response.ok {
            let pid = response.pid!
            if let known = record.pid, known != pid {
                throw ProtocolViolation(
                    .invalidValue, "run.start of \(run) reports pid \(pid), process.started said \(known)", key: "pid")
            }
            record.pid = pid
            record.responded = true
            runs[run] = record.exited ? nil : record
        } else {
            if record.started || record.exited {
                throw ProtocolViolation(
                    .invalidValue, "run.start of \(run) failed after events about its process", key: "ok")
            }
            runs[run] = nil
            liveRunCount -= 1
            streams.abandonInbound(record.stdout)
            streams.abandonInbound(record.stderr)
            if let stdin = record.stdin { streams.retireOutbound(stdin) }
        }
    }

    /// Frames bounded by the supervisor's own requests and runs (see handle).
    private static func isAnswer(_ message: Message) -> Bool {
        switch message {
        case .response, .event(.processStarted), .event(.processExited): true
        default: false
        }
    }

    private mutating func handleEvent(_ event: Event) throws(ProtocolViolation) -> Action? {
        switch event {
        case .harnessLog:
            break
        case .processStarted(let started):
            guard var record = runs[started.run], !record.exited else {
                throw ProtocolViolation(.unknownRun, "process.started for \(started.run), which is not running",
                                        key: "run")
            }
            if record.started {
                throw ProtocolViolation(.invalidValue, "a second process.started for \(started.run)", key: "event")
            }
            if let known = record.pid, known != started.pid {
                throw ProtocolViolation(
                    .invalidValue, "process.started for \(started.run) has pid \(started.pid), not \(known)",
                    key: "pid")
            }
            record.started = true
            record.pid = started.pid
            runs[started.run] = record
        case .processExited(let exited):
            guard var record = runs[exited.run], !record.exited else {
                throw ProtocolViolation(.unknownRun, "process.exited for \(exited.run), which is not running",
                                        key: "run")
            }
            if let known = record.pid, known != exited.pid {
                throw ProtocolViolation(
                    .invalidValue, "process.exited for \(exited.run) has pid \(exited.pid), not \(known)", key: "pid")
            }
            record.exited = true
            record.pid = exited.pid
            liveRunCount -= 1
            if let stdin = record.stdin { streams.retireOutbound(stdin) }
            runs[exited.run] = record.responded ? nil : record
        }
        return .deliverEvent(event)
    }

    // MARK: Sending

    /// Registers a message the supervisor is about to send, or throws if it
    /// must not be sent (then nothing changed).
    public mutating func willSend(_ message: Message, now: UInt64) throws(ProtocolMisuse) {
        if phase == .failed { throw ProtocolMisuse(.wrongPhase, "the connection has failed") }
        switch message {
        case .hello, .response, .event:
            throw ProtocolMisuse(.notSendable, "the supervisor does not send \(message.frameType)")
        case .welcome(let welcome):
            guard phase == .awaitingWelcome, let hello else {
                throw ProtocolMisuse(.wrongPhase, "WELCOME is sent once, in answer to HELLO")
            }
            try Self.validate(message)
            guard welcome.protocolVersion >= ProtocolLimits.oldestProtocolVersion,
                  welcome.protocolVersion <= ProtocolLimits.protocolVersion,
                  welcome.protocolVersion <= hello.protocolVersion
            else {
                throw ProtocolMisuse(
                    .invalidMessage,
                    "WELCOME version \(welcome.protocolVersion) is not one both sides speak (harness offers \(hello.protocolVersion))")
            }
            self.welcome = welcome
            streams.window = welcome.window
            phase = .established
        case .request(let request):
            try requireEstablished(message)
            guard pending[request.id] == nil else {
                throw ProtocolMisuse(.duplicateRequest, "request id \(request.id) is outstanding")
            }
            try Self.validate(message)
            guard request.operation.since <= negotiatedVersion else {
                throw ProtocolMisuse(.notSendable, "\(request.operation.kind.rawValue) of \(request.operation.paths.joined(separator: ", ")) needs protocol version \(request.operation.since); this connection speaks \(negotiatedVersion)")
            }
            let length = MessageCodec.encode(message).length
            guard length <= maxFrame else {
                throw ProtocolMisuse(.oversizedFrame, "REQUEST of \(length) bytes exceeds max_frame \(maxFrame)")
            }
            try register(request)
        case .data(let stream, let bytes):
            try requireEstablished(message)
            let length = bytes.count + 1 + ProtocolLimits.dataHeaderSize
            guard length <= maxFrame else {
                throw ProtocolMisuse(.oversizedFrame, "DATA of \(length) bytes exceeds max_frame \(maxFrame)")
            }
            try streams.sendData(stream: stream, count: bytes.count)
        case .window(let stream, let credit):
            try requireEstablished(message)
            try streams.sendWindow(stream: stream, credit: credit)
        case .ping(let nonce):
            try requireEstablished(message)
            if pings.count >= Self.maxPendingPings { pings.removeFirst() }
            pings.append((nonce, now))
        case .pong:
            try requireEstablished(message)
        }
        lastSentAt = now
    }

    private func requireEstablished(_ message: Message) throws(ProtocolMisuse) {
        guard phase == .established else {
            throw ProtocolMisuse(.wrongPhase, "\(message.frameType) before WELCOME")
        }
    }

    private static func validate(_ message: Message) throws(ProtocolMisuse) {
        do throws(ProtocolViolation) {
            try MessageCodec.validate(message)
        } catch {
            throw ProtocolMisuse(.invalidMessage, error.message)
        }
    }

    private func requireFresh(_ stream: StreamID) throws(ProtocolMisuse) {
        if streams.isInUse(stream) { throw ProtocolMisuse(.duplicateStream, "stream \(stream) is in use") }
    }

    private mutating func register(_ request: Request) throws(ProtocolMisuse) {
        var entry = PendingRequest(kind: request.operation.kind)
        switch request.operation {
        case .runStart(let start):
            guard runs[start.run] == nil else {
                throw ProtocolMisuse(.duplicateRun, "run \(start.run) was already started")
            }
            guard liveRunCount < configuration.maxRunsPerSession else {
                throw ProtocolMisuse(.tooManyRuns, "the session has \(liveRunCount) live runs already")
            }
            for stream in start.streams { try requireFresh(stream) }
            if let stdin = start.stdin { streams.openOutbound(stdin) }
            streams.openInbound(start.stdout)
            streams.openInbound(start.stderr)
            runs[start.run] = RunRecord(request: request.id, stdin: start.stdin, stdout: start.stdout,
                                        stderr: start.stderr)
            liveRunCount += 1
            entry.run = start.run
        case .runSignal(let signal):
            entry.run = signal.run
        case .runResize(let resize):
            entry.run = resize.run
        case .fileRead(let read):
            try requireFresh(read.stream)
            streams.openInbound(read.stream, limit: read.maxBytes, retainAfterEnd: true)
            entry.stream = read.stream
        case .fileWrite(let write):
            try requireFresh(write.stream)
            streams.openOutbound(write.stream)
            entry.stream = write.stream
        case .fileList, .fileStat, .fileDelete, .fileMkdir, .fileRename:
            break
        }
        pending[request.id] = entry
    }

    /// The consumer of an inbound stream used `bytes` of its data. Returns a
    /// WINDOW to pass to `willSend` and send, when credit is due.
    public mutating func consumed(stream: StreamID, bytes: Int) -> Message? {
        streams.consumed(stream: stream, bytes: bytes)
    }

    /// The supervisor stops reading an inbound stream (e.g. a cancelled
    /// run's stdout): DATA the harness still had credit for is ignored, and
    /// the stream's end; more is a violation.
    public mutating func closeInbound(stream: StreamID) {
        streams.abandonInbound(stream)
    }

    // MARK: Time

    /// Checks the deadlines; returns a PING to send (through `willSend`)
    /// when the supervisor has sent nothing for `heartbeat_ms`.
    public mutating func tick(now: UInt64) throws(ProtocolViolation) -> Message? {
        if let failure { throw failure }
        func elapsed(since time: UInt64) -> UInt64 { now > time ? now - time : 0 }
        switch phase {
        case .awaitingHello:
            if elapsed(since: startedAt) >= UInt64(configuration.handshakeTimeoutMillis) * 1_000_000 {
                return try fail(ProtocolViolation(
                    .handshake, "no HELLO within \(configuration.handshakeTimeoutMillis) ms"))
            }
        case .awaitingWelcome, .failed:
            break
        case .established:
            let heartbeat = UInt64(welcome!.heartbeatMillis) * 1_000_000
            let deadline = heartbeat * UInt64(configuration.unresponsiveHeartbeats)
            if let oldest = pings.first, elapsed(since: oldest.sentAt) >= deadline {
                return try fail(ProtocolViolation(
                    .unresponsive, "no PONG for \(deadline / 1_000_000) ms (PING nonce \(oldest.nonce))"))
            }
            if elapsed(since: lastSentAt) >= heartbeat {
                defer { nextPingNonce &+= 1 }
                return .ping(nonce: nextPingNonce)
            }
        }
        return nil
    }

    private mutating func fail(_ violation: ProtocolViolation) throws(ProtocolViolation) -> Message? {
        failure = violation
        phase = .failed
        throw violation
    }
}

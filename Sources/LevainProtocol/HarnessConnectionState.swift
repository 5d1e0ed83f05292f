/// The harness's side of the connection: the mirror of
/// `SupervisorConnectionState`, smaller because the supervisor is the one
/// that opens requests, runs and streams. Create it after sending HELLO.
///
/// - every message from the supervisor goes through `receive`;
/// - every message the harness sends goes through `willSend` (it enforces
///   the supervisor's credit on stdout/stderr/file.read streams);
/// - `consumed(stream:bytes:)` returns the WINDOWs for stdin and file.write
///   data as the harness uses it;
/// - `abandonInbound(stream:)` when the harness stops reading an inbound
///   stream (the run exited, a file.write failed): data the supervisor still
///   had credit for is then ignored.
public struct HarnessConnectionState: Sendable {
    public enum Phase: Equatable, Sendable {
        case awaitingWelcome
        case established
        case failed
    }

    public enum Action: Equatable, Sendable {
        /// The handshake is done: set the frame decoder's `maxFrame` to `welcome.maxFrame`.
        case established(Welcome)
        case deliverRequest(Request)
        case deliverData(stream: StreamID, bytes: [UInt8])
        case endOfStream(stream: StreamID)
        case creditAvailable(stream: StreamID, credit: UInt32)
        case sendPong(nonce: UInt64)
    }

    private struct PendingRequest: Sendable {
        var kind: OperationKind
        var run: RunID?
        var stream: StreamID?
    }

    public let maxRunsPerSession: Int
    /// The highest version offered in HELLO.
    public let offeredVersion: UInt32
    public private(set) var phase: Phase = .awaitingWelcome
    public private(set) var welcome: Welcome?
    /// The version the WELCOME settled on (0 before it): what requests may use.
    public var negotiatedVersion: UInt32 { welcome?.protocolVersion ?? 0 }
    public private(set) var failure: ProtocolViolation?
    private var streams = StreamTable(window: ProtocolLimits.defaultWindow, peer: .supervisor)
    private var pending: [UInt64: PendingRequest] = [:]
    /// Live runs and their streams.
    private var runs: [RunID: RunStreams] = [:]

    private struct RunStreams: Sendable {
        var stdin: StreamID?
        var stdout: StreamID
        var stderr: StreamID
    }

    public init(offeredVersion: UInt32 = ProtocolLimits.protocolVersion,
                maxRunsPerSession: Int = ProtocolLimits.maxRunsPerSession) {
        self.offeredVersion = offeredVersion
        self.maxRunsPerSession = maxRunsPerSession
    }

    public var maxFrame: Int { welcome?.maxFrame ?? ProtocolLimits.handshakeMaxFrame }

    public var liveRunCount: Int { runs.count }

    /// Bytes the harness may send now on an outbound stream; nil if it is not open.
    public func credit(forOutbound stream: StreamID) -> UInt32? {
        guard let state = streams.outbound[stream], !state.ended else { return nil }
        return state.credit
    }

    public mutating func receive(_ message: Message) throws(ProtocolViolation) -> Action? {
        if let failure { throw failure }
        do throws(ProtocolViolation) {
            return try handle(message)
        } catch {
            failure = error
            phase = .failed
            throw error
        }
    }

    private mutating func handle(_ message: Message) throws(ProtocolViolation) -> Action? {
        if phase == .awaitingWelcome {
            guard case .welcome(let welcome) = message else {
                throw ProtocolViolation(.handshake, "the first frame must be WELCOME, not \(message.frameType)")
            }
            guard welcome.protocolVersion <= offeredVersion,
                  welcome.protocolVersion >= ProtocolLimits.oldestProtocolVersion,
                  welcome.protocolVersion <= ProtocolLimits.protocolVersion
            else {
                throw ProtocolViolation(
                    .handshake, "WELCOME of version \(welcome.protocolVersion), not one this harness speaks",
                    key: "protocol")
            }
            self.welcome = welcome
            streams.window = welcome.window
            phase = .established
            return .established(welcome)
        }
        switch message {
        case .welcome:
            throw ProtocolViolation(.handshake, "a second WELCOME")
        case .hello, .response, .event:
            throw ProtocolViolation(.unexpectedFrame, "\(message.frameType) frames are not sent by the supervisor")
        case .request(let request):
            guard request.operation.kind.since <= negotiatedVersion else {
                throw ProtocolViolation(.unknownOperation, "\(request.operation.kind.rawValue) is not an operation of protocol version \(negotiatedVersion)", key: "op")
            }
            guard request.operation.since <= negotiatedVersion else {
                throw ProtocolViolation(.invalidValue, "key 'path': a path in /tmp needs protocol version 2, not \(negotiatedVersion)", key: "path")
            }
            try register(request)
            return .deliverRequest(request)
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
        case .pong:
            return nil
        }
    }

    private mutating func register(_ request: Request) throws(ProtocolViolation) {
        guard pending[request.id] == nil else {
            throw ProtocolViolation(.invalidValue, "request id \(request.id) is already outstanding", key: "id")
        }
        func fresh(_ stream: StreamID, _ key: String) throws(ProtocolViolation) {
            if streams.isInUse(stream) {
                throw ProtocolViolation(.invalidValue, "key '\(key)': stream \(stream) is in use", key: key)
            }
        }
        var entry = PendingRequest(kind: request.operation.kind)
        switch request.operation {
        case .runStart(let start):
            guard runs[start.run] == nil else {
                throw ProtocolViolation(.invalidValue, "run \(start.run) is already live", key: "run")
            }
            guard runs.count < maxRunsPerSession else {
                throw ProtocolViolation(.tooManyRuns, "more than \(maxRunsPerSession) live runs")
            }
            if let stdin = start.stdin { try fresh(stdin, "stdin") }
            try fresh(start.stdout, "stdout")
            try fresh(start.stderr, "stderr")
            if let stdin = start.stdin { streams.openInbound(stdin) }
            streams.openOutbound(start.stdout)
            streams.openOutbound(start.stderr)
            runs[start.run] = RunStreams(stdin: start.stdin, stdout: start.stdout, stderr: start.stderr)
            entry.run = start.run
        case .fileRead(let read):
            try fresh(read.stream, "stream")
            streams.openOutbound(read.stream)
            entry.stream = read.stream
        case .fileWrite(let write):
            try fresh(write.stream, "stream")
            streams.openInbound(write.stream)
            entry.stream = write.stream
        case .runSignal, .runResize, .fileList, .fileStat, .fileDelete, .fileMkdir, .fileRename:
            break
        }
        pending[request.id] = entry
    }

    /// Registers a message the harness is about to send, or throws if it must not be sent.
    public mutating func willSend(_ message: Message) throws(ProtocolMisuse) {
        guard phase == .established else {
            throw ProtocolMisuse(.wrongPhase, "\(message.frameType) before WELCOME or after a failure")
        }
        switch message {
        case .hello, .welcome, .request:
            throw ProtocolMisuse(.notSendable, "the harness does not send \(message.frameType) now")
        case .response(let response):
            guard let request = pending[response.id] else {
                throw ProtocolMisuse(.unknownRequest, "no outstanding request \(response.id)")
            }
            if request.kind == .fileRead, response.ok, let stream = request.stream, credit(forOutbound: stream) != nil {
                throw ProtocolMisuse(.streamClosed, "file.read \(response.id): end stream \(stream) before the response")
            }
            try validate(message)
            try checkSize(message)
            pending[response.id] = nil
            switch request.kind {
            case .runStart where !response.ok:
                // No process: nothing will come on its streams.
                if let run = request.run, let streams = runs.removeValue(forKey: run) {
                    if let stdin = streams.stdin { self.streams.abandonInbound(stdin) }
                    self.streams.retireOutbound(streams.stdout)
                    self.streams.retireOutbound(streams.stderr)
                }
            case .fileRead:
                streams.retireOutbound(request.stream!)
            case .fileWrite:
                streams.abandonInbound(request.stream!)
            default:
                break
            }
        case .event(let event):
            try validate(message)
            // stdout and stderr stay open until their ends (grandchildren may hold the pipes).
            if case .processExited(let exited) = event, let run = runs.removeValue(forKey: exited.run),
               let stdin = run.stdin {
                streams.abandonInbound(stdin)
            }
        case .data(let stream, let bytes):
            let length = bytes.count + 1 + ProtocolLimits.dataHeaderSize
            guard length <= maxFrame else {
                throw ProtocolMisuse(.oversizedFrame, "DATA of \(length) bytes exceeds max_frame \(maxFrame)")
            }
            try streams.sendData(stream: stream, count: bytes.count)
        case .window(let stream, let credit):
            try streams.sendWindow(stream: stream, credit: credit)
        case .ping, .pong:
            break
        }
    }

    private func validate(_ message: Message) throws(ProtocolMisuse) {
        do throws(ProtocolViolation) {
            try MessageCodec.validate(message)
        } catch {
            throw ProtocolMisuse(.invalidMessage, error.message)
        }
    }

    private func checkSize(_ message: Message) throws(ProtocolMisuse) {
        let length = MessageCodec.encode(message).length
        guard length <= maxFrame else {
            throw ProtocolMisuse(.oversizedFrame, "\(message.frameType) of \(length) bytes exceeds max_frame \(maxFrame)")
        }
    }

    /// `willSend(.data(stream:bytes:))` for `count` bytes the caller writes
    /// into its output itself (no Message, no copy): the same checks.
    public mutating func willSendData(stream: StreamID, count: Int) throws(ProtocolMisuse) {
        guard phase == .established else {
            throw ProtocolMisuse(.wrongPhase, "DATA before WELCOME or after a failure")
        }
        let length = count + 1 + ProtocolLimits.dataHeaderSize
        guard length <= maxFrame else {
            throw ProtocolMisuse(.oversizedFrame, "DATA of \(length) bytes exceeds max_frame \(maxFrame)")
        }
        try streams.sendData(stream: stream, count: count)
    }

    /// The harness used `bytes` of an inbound stream's data; returns a WINDOW
    /// to send (through `willSend`) when credit is due.
    public mutating func consumed(stream: StreamID, bytes: Int) -> Message? {
        streams.consumed(stream: stream, bytes: bytes)
    }

    /// The harness stops reading an inbound stream.
    public mutating func abandonInbound(stream: StreamID) {
        streams.abandonInbound(stream)
    }
}

import LevainProtocol
import Testing

/// A supervisor state plus a clock that advances 1 ms per received frame
/// (far below the flood limit) unless a test drives time itself.
struct Session {
    var state = SupervisorConnectionState(now: 0)
    var now: UInt64 = 0
    var nextRequest: UInt64 = 100

    static let window: UInt32 = 1000

    static func established(window: UInt32 = Session.window) throws -> Session {
        var session = Session()
        #expect(try session.receive(.hello(Fixtures.hello)) == .answerHello(Fixtures.hello))
        try session.send(.welcome(Welcome(window: window, session: "s-1")))
        #expect(session.state.phase == .established)
        return session
    }

    @discardableResult
    mutating func receive(_ message: Message) throws(ProtocolViolation) -> SupervisorConnectionState.Action? {
        now += 1_000_000
        return try state.receive(message, now: now)
    }

    mutating func send(_ message: Message) throws(ProtocolMisuse) {
        try state.willSend(message, now: now)
    }

    /// Sends a request and returns its id.
    @discardableResult
    mutating func request(_ operation: Operation) throws(ProtocolMisuse) -> UInt64 {
        nextRequest += 1
        try send(.request(Request(id: nextRequest, operation: operation)))
        return nextRequest
    }

    @discardableResult
    mutating func startRun(_ run: RunID, stdin: StreamID? = nil, stdout: StreamID, stderr: StreamID) throws(ProtocolMisuse) -> UInt64 {
        try request(.runStart(RunStart(run: run, argv: ["true"], env: [], cwd: "/", stdin: stdin, stdout: stdout,
                                       stderr: stderr, cgroup: false)))
    }
}

func exited(_ run: RunID, pid: Int32 = 42) -> Message {
    .event(.processExited(ProcessExited(run: run, pid: pid, code: 0, signal: nil, userMicros: 0, systemMicros: 0,
                                        maxRSSKilobytes: 0)))
}

func started(_ run: RunID, pid: Int32 = 42) -> Message {
    .event(.processStarted(ProcessStarted(run: run, pid: pid)))
}

func runID(_ index: Int) -> RunID {
    let hex = String(index, radix: 16)
    return RunID("r-" + String(repeating: "0", count: 12 - hex.count) + hex)!
}

@Suite("SupervisorConnectionState: handshake")
struct HandshakeTests {
    @Test("the first frame must be HELLO")
    func helloFirst() {
        var session = Session()
        expectViolation(.handshake, key: "PING") { try session.receive(.ping(nonce: 1)) }
        #expect(session.state.phase == .failed)
        // Failed stays failed, with the same violation.
        expectViolation(.handshake, key: "PING") { try session.receive(.hello(Fixtures.hello)) }
        expectMisuse(.wrongPhase) { try session.send(.pong(nonce: 1)) }
    }

    @Test("nothing but HELLO before WELCOME, and WELCOME only after HELLO")
    func order() throws {
        var session = Session()
        expectMisuse(.wrongPhase) { try session.send(.welcome(Fixtures.welcome)) }
        try session.receive(.hello(Fixtures.hello))
        #expect(session.state.phase == .awaitingWelcome)
        expectMisuse(.wrongPhase) { try session.request(.fileList(FileList(path: "."))) }
        expectMisuse(.wrongPhase) { try session.send(.ping(nonce: 1)) }
        expectViolation(.handshake, key: "RESPONSE") { try session.receive(.response(.success(id: 1))) }
    }

    @Test("the WELCOME answers with the highest version both speak; a version 2 operation is not sent on a version 1 connection")
    func versionNegotiation() throws {
        #expect(SupervisorConnectionState.version(answering: Hello(protocolVersion: 1, harness: "h", pid: 1)) == 1)
        #expect(SupervisorConnectionState.version(answering: Hello(protocolVersion: 2, harness: "h", pid: 1)) == 2)
        #expect(SupervisorConnectionState.version(answering: Hello(protocolVersion: 99, harness: "h", pid: 1)) == ProtocolLimits.protocolVersion)
        var old = Session()
        try old.receive(.hello(Hello(protocolVersion: 1, harness: "h", pid: 1)))
        try old.send(.welcome(Welcome(protocolVersion: 1, session: "s")))
        #expect(old.state.negotiatedVersion == 1)
        expectMisuse(.notSendable) { try old.request(.fileMkdir(FileMkdir(path: "a", parents: true))) }
        expectMisuse(.notSendable) { try old.request(.fileRename(FileRename(path: "a", to: "b"))) }
        expectMisuse(.notSendable) { try old.request(.fileStat(FileStat(path: "/tmp/a"))) }
        try old.request(.fileDelete(FileDelete(path: "a", recursive: false)))  // control: version 1's operation
        var two = Session()
        try two.receive(.hello(Hello(protocolVersion: 2, harness: "h", pid: 1)))
        try two.send(.welcome(Welcome(protocolVersion: 2, session: "s")))
        let ptyStart = RunStart(run: Fixtures.run, argv: ["sh"], env: [], cwd: "/", stdin: nil, stdout: 2, stderr: 3, cgroup: false,
                                pty: TerminalSize(rows: 24, cols: 80))
        expectMisuse(.notSendable) { try two.request(.runStart(ptyStart)) }
        expectMisuse(.notSendable) { try two.request(.runResize(RunResize(run: Fixtures.run, size: TerminalSize(rows: 1, cols: 1)))) }
        try two.request(.fileMkdir(FileMkdir(path: "a", parents: true)))  // control: version 2's operation
        var current = try Session.established()
        #expect(current.state.negotiatedVersion == 3)
        try current.request(.runStart(ptyStart))
        try current.request(.runResize(RunResize(run: Fixtures.run, size: TerminalSize(rows: 30, cols: 100))))
        try current.request(.fileMkdir(FileMkdir(path: "a", parents: true)))
        try current.request(.fileRename(FileRename(path: "a", to: "b")))
        try current.request(.fileStat(FileStat(path: "/tmp/a")))
        try current.request(.fileRename(FileRename(path: "/tmp/a", to: "/tmp/b")))
    }

    @Test("a second HELLO is a violation")
    func secondHello() throws {
        var session = try Session.established()
        expectViolation(.handshake, key: "HELLO") { try session.receive(.hello(Fixtures.hello)) }
    }

    @Test("WELCOME carries a version both speak, and sets max_frame and the window")
    func versions() throws {
        var session = Session()
        try session.receive(.hello(Hello(protocolVersion: 1, harness: "h", pid: 1)))
        expectMisuse(.invalidMessage) { try session.send(.welcome(Welcome(protocolVersion: 2, session: "s"))) }
        expectMisuse(.invalidMessage) { try session.send(.welcome(Welcome(protocolVersion: 1, maxFrame: 100, session: "s"))) }
        #expect(session.state.maxFrame == ProtocolLimits.handshakeMaxFrame)
        try session.send(.welcome(Welcome(protocolVersion: 1, maxFrame: 2 << 20, window: 5000, session: "s")))
        #expect(session.state.maxFrame == 2 << 20)
        expectMisuse(.wrongPhase) { try session.send(.welcome(Welcome(session: "s"))) }
        try session.startRun(Fixtures.run, stdin: 1, stdout: 2, stderr: 3)
        #expect(session.state.credit(forOutbound: 1) == 5000)
    }

    @Test("no HELLO within 5 s fails the connection")
    func handshakeTimeout() throws {
        var state = SupervisorConnectionState(now: 1_000)
        let early = try state.tick(now: 1_000 + 4_999_999_999)
        #expect(early == nil)
        expectViolation(.handshake, key: "HELLO") { _ = try state.tick(now: 1_000 + 5_000_000_000) }
        #expect(state.phase == .failed)
    }

    @Test("frame types the harness never sends are violations")
    func supervisorFrames() throws {
        var session = try Session.established()
        expectViolation(.unexpectedFrame, key: "REQUEST") {
            try session.receive(.request(Request(id: 1, operation: .fileList(FileList(path: ".")))))
        }
        var other = try Session.established()
        expectMisuse(.notSendable) { try other.send(.hello(Fixtures.hello)) }
        expectMisuse(.notSendable) { try other.send(.response(.success(id: 1))) }
        expectViolation(.unexpectedFrame, key: "WELCOME") { try other.receive(.welcome(Fixtures.welcome)) }
    }
}

@Suite("SupervisorConnectionState: requests and responses")
struct RequestTests {
    @Test("a response must match an outstanding request, once")
    func responseMatching() throws {
        var session = try Session.established()
        let id = try session.request(.fileDelete(FileDelete(path: "a", recursive: false)))
        #expect(session.state.outstandingRequestCount == 1)
        #expect(try session.receive(.response(.success(id: id))) == .deliverResponse(.success(id: id), operation: .fileDelete))
        #expect(session.state.outstandingRequestCount == 0)
        expectViolation(.unknownRequest, key: "\(id)") { try session.receive(.response(.success(id: id))) }
    }

    @Test("a response for an id never sent is a violation")
    func unknownResponse() throws {
        var session = try Session.established()
        expectViolation(.unknownRequest, key: "77") { try session.receive(.response(.success(id: 77))) }
    }

    @Test("responses may come in any order")
    func anyOrder() throws {
        var session = try Session.established()
        let first = try session.request(.fileStat(FileStat(path: "a")))
        let second = try session.request(.fileDelete(FileDelete(path: "b", recursive: true)))
        try session.receive(.response(.success(id: second)))
        try session.receive(.response(.failure(id: first, code: "ENOENT", message: "")))
    }

    @Test("duplicate outstanding ids are refused")
    func duplicateRequest() throws {
        var session = try Session.established()
        try session.send(.request(Request(id: 5, operation: .fileList(FileList(path: ".")))))
        expectMisuse(.duplicateRequest) { try session.send(.request(Request(id: 5, operation: .fileList(FileList(path: "."))))) }
    }

    @Test("a successful response carries the result its operation needs")
    func resultKeys() throws {
        var session = try Session.established()
        let start = try session.startRun(Fixtures.run, stdout: 1, stderr: 2)
        expectViolation(.missingKey, key: "pid") { try session.receive(.response(.success(id: start))) }

        session = try Session.established()
        let list = try session.request(.fileList(FileList(path: ".")))
        expectViolation(.missingKey, key: "entries") { try session.receive(.response(.success(id: list))) }

        session = try Session.established()
        let stat = try session.request(.fileStat(FileStat(path: "a")))
        expectViolation(.missingKey, key: "type") { try session.receive(.response(.success(id: stat))) }

        session = try Session.established()
        let read = try session.request(.fileRead(FileRead(path: "a", stream: 9, maxBytes: 10)))
        try session.receive(.data(stream: 9, bytes: []))
        expectViolation(.missingKey, key: "size") { try session.receive(.response(.success(id: read))) }
    }

    @Test("invalid requests and oversized ones are refused before sending")
    func invalidRequests() throws {
        var session = try Session.established()
        expectMisuse(.invalidMessage) { try session.request(.fileStat(FileStat(path: "/etc"))) }
        let argv = Array(repeating: String(repeating: "a", count: 100_000), count: 10)
        let env = ["A=" + String(repeating: "b", count: 100_000)]  // 1.1 MB of JSON in all
        expectMisuse(.oversizedFrame) {
            try session.request(.runStart(RunStart(run: Fixtures.run, argv: argv, env: env, cwd: "/", stdin: nil,
                                                   stdout: 1, stderr: 2, cgroup: false)))
        }
        #expect(session.state.outstandingRequestCount == 0)
        #expect(session.state.liveRunCount == 0)
    }
}

@Suite("SupervisorConnectionState: streams and windows")
struct StreamTests {
    @Test("inbound: exactly the window is fine, one byte more is a violation")
    func inboundWindow() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        let full = [UInt8](repeating: 1, count: Int(Session.window))
        #expect(try session.receive(.data(stream: 11, bytes: full)) == .deliverData(stream: 11, bytes: full))
        expectViolation(.windowExceeded, key: "stream 11") { try session.receive(.data(stream: 11, bytes: [1])) }
    }

    @Test("inbound: credit split over frames, then returned by the consumer")
    func creditReturn() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        for _ in 0..<4 { try session.receive(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 250))) }
        // A quarter of the window consumed returns a WINDOW; less does not.
        let early = session.state.consumed(stream: 11, bytes: 249)
        #expect(early == nil)
        let credit = session.state.consumed(stream: 11, bytes: 1)
        let window = try #require(credit)
        #expect(window == .window(stream: 11, credit: 250))
        try session.send(window)
        try session.receive(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 250)))
        expectViolation(.windowExceeded) { try session.receive(.data(stream: 11, bytes: [0])) }
    }

    @Test("consuming more than was received returns only what was received")
    func overConsumption() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try session.receive(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 300)))
        let first = session.state.consumed(stream: 11, bytes: 10_000)
        #expect(first == .window(stream: 11, credit: 300))
        let second = session.state.consumed(stream: 11, bytes: 10_000)
        #expect(second == nil)
    }

    @Test("an empty DATA ends a stream; DATA after it is a violation")
    func closedStream() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try session.receive(.data(stream: 11, bytes: [1, 2]))
        #expect(try session.receive(.data(stream: 11, bytes: [])) == .endOfStream(stream: 11))
        #expect(!session.state.isInboundOpen(11))
        expectViolation(.streamClosed, key: "stream 11") { try session.receive(.data(stream: 11, bytes: [3])) }

        var again = try Session.established()
        try again.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try again.receive(.data(stream: 12, bytes: []))
        expectViolation(.streamClosed, key: "stream 12") { try again.receive(.data(stream: 12, bytes: [])) }
    }

    @Test("DATA on a stream the supervisor did not open, or sends itself, is a violation")
    func unknownStream() throws {
        var session = try Session.established()
        expectViolation(.unknownStream, key: "stream 5") { try session.receive(.data(stream: 5, bytes: [1])) }

        var other = try Session.established()
        try other.startRun(Fixtures.run, stdin: 10, stdout: 11, stderr: 12)
        expectViolation(.unknownStream, key: "stream 10") { try other.receive(.data(stream: 10, bytes: [1])) }
    }

    @Test("a stream the supervisor closed tolerates the harness's remaining credit, then its end")
    func grace() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try session.receive(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 400)))
        session.state.closeInbound(stream: 11)
        #expect(try session.receive(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 600))) == nil)
        expectViolation(.windowExceeded, key: "stream 11") { try session.receive(.data(stream: 11, bytes: [0])) }

        var ended = try Session.established()
        try ended.startRun(Fixtures.run, stdout: 11, stderr: 12)
        ended.state.closeInbound(stream: 11)
        #expect(try ended.receive(.data(stream: 11, bytes: [1])) == nil)
        #expect(try ended.receive(.data(stream: 11, bytes: [])) == nil)
        expectViolation(.unknownStream) { try ended.receive(.data(stream: 11, bytes: [])) }
    }

    @Test("outbound: the supervisor respects the harness's window")
    func outboundWindow() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdin: 10, stdout: 11, stderr: 12)
        try session.send(.data(stream: 10, bytes: [UInt8](repeating: 0, count: 1000)))
        #expect(session.state.credit(forOutbound: 10) == 0)
        expectMisuse(.windowExceeded) { try session.send(.data(stream: 10, bytes: [0])) }
        #expect(try session.receive(.window(stream: 10, credit: 600)) == .creditAvailable(stream: 10, credit: 600))
        try session.send(.data(stream: 10, bytes: [UInt8](repeating: 0, count: 600)))
        try session.send(.data(stream: 10, bytes: []))
        expectMisuse(.streamClosed) { try session.send(.data(stream: 10, bytes: [1])) }
        // Credit the harness returns after the end is accepted quietly.
        #expect(try session.receive(.window(stream: 10, credit: 1000)) == nil)
        expectMisuse(.unknownStream) { try session.send(.data(stream: 11, bytes: [1])) }
    }

    @Test("WINDOW returning more credit than was sent is a violation")
    func windowOverReturn() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdin: 10, stdout: 11, stderr: 12)
        try session.send(.data(stream: 10, bytes: [UInt8](repeating: 0, count: 100)))
        try session.receive(.window(stream: 10, credit: 100))
        expectViolation(.windowExceeded, key: "stream 10") { try session.receive(.window(stream: 10, credit: 1)) }
    }

    @Test("WINDOW for a stream that is not the supervisor's to send on is a violation")
    func windowUnknownStream() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdin: 10, stdout: 11, stderr: 12)
        expectViolation(.unknownStream, key: "stream 11") { try session.receive(.window(stream: 11, credit: 1)) }
        var other = try Session.established()
        expectViolation(.unknownStream, key: "stream 99") { try other.receive(.window(stream: 99, credit: 1)) }
    }

    @Test("stream ids in use cannot be opened again")
    func duplicateStream() throws {
        var session = try Session.established()
        try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        expectMisuse(.duplicateStream) { try session.request(.fileRead(FileRead(path: "a", stream: 12, maxBytes: 1))) }
        expectMisuse(.invalidMessage) { _ = try session.startRun(Fixtures.otherRun, stdout: 20, stderr: 20) }
    }

    @Test("file.read: data, end, then a response whose size matches")
    func fileRead() throws {
        var session = try Session.established()
        let id = try session.request(.fileRead(FileRead(path: "a", stream: 9, maxBytes: 100)))
        try session.receive(.data(stream: 9, bytes: [1, 2, 3]))
        expectViolation(.invalidValue, key: "stream 9") {
            var copy = session
            try copy.receive(.response(Response(id: id, ok: true, size: 3)))
        }
        try session.receive(.data(stream: 9, bytes: []))
        expectViolation(.invalidValue, key: "size") {
            var copy = session
            try copy.receive(.response(Response(id: id, ok: true, size: 4)))
        }
        #expect(try session.receive(.response(Response(id: id, ok: true, size: 3)))
            == .deliverResponse(Response(id: id, ok: true, size: 3), operation: .fileRead))
        expectViolation(.unknownStream) { try session.receive(.data(stream: 9, bytes: [])) }
    }

    @Test("file.read: more than max_bytes is a violation")
    func fileReadLimit() throws {
        var session = try Session.established()
        try session.request(.fileRead(FileRead(path: "a", stream: 9, maxBytes: 10)))
        try session.receive(.data(stream: 9, bytes: [UInt8](repeating: 0, count: 10)))
        expectViolation(.invalidValue, key: "max_bytes") { try session.receive(.data(stream: 9, bytes: [0])) }
    }

    @Test("file.read: a failure abandons the stream with grace")
    func fileReadFailure() throws {
        var session = try Session.established()
        let id = try session.request(.fileRead(FileRead(path: "a", stream: 9, maxBytes: 10_000)))
        try session.receive(.data(stream: 9, bytes: [1]))
        try session.receive(.response(.failure(id: id, code: "EIO", message: "read error")))
        #expect(try session.receive(.data(stream: 9, bytes: [2])) == nil)
        #expect(try session.receive(.data(stream: 9, bytes: [])) == nil)
    }

    @Test("file.write: answered only after the content ended, with its size")
    func fileWrite() throws {
        var session = try Session.established()
        let id = try session.request(.fileWrite(FileWrite(path: "a", stream: 9, maxBytes: 100, mode: 0o600)))
        try session.send(.data(stream: 9, bytes: [1, 2]))
        expectViolation(.invalidValue, key: "file.write") {
            var copy = session
            try copy.receive(.response(Response(id: id, ok: true, size: 2)))
        }
        try session.send(.data(stream: 9, bytes: []))
        expectViolation(.invalidValue, key: "size") {
            var copy = session
            try copy.receive(.response(Response(id: id, ok: true, size: 1)))
        }
        try session.receive(.window(stream: 9, credit: 2))
        try session.receive(.response(Response(id: id, ok: true, size: 2)))
        expectViolation(.unknownStream) { try session.receive(.window(stream: 9, credit: 1)) }
    }

    @Test("file.write: after an early failure the supervisor stops sending")
    func fileWriteFailure() throws {
        var session = try Session.established()
        let id = try session.request(.fileWrite(FileWrite(path: "a", stream: 9, maxBytes: 1, mode: 0o600)))
        try session.send(.data(stream: 9, bytes: [1, 2]))
        try session.receive(.response(.failure(id: id, code: "EFBIG", message: "")))
        expectMisuse(.unknownStream) { try session.send(.data(stream: 9, bytes: [3])) }
    }
}

@Suite("SupervisorConnectionState: runs and events")
struct RunTests {
    @Test("events about runs never started are violations")
    func unknownRun() throws {
        var session = try Session.established()
        expectViolation(.unknownRun, key: Fixtures.run.rawValue) { try session.receive(started(Fixtures.run)) }
        var other = try Session.established()
        expectViolation(.unknownRun, key: Fixtures.run.rawValue) { try other.receive(exited(Fixtures.run)) }
    }

    @Test("a run's life: response, started, exited; nothing after")
    func lifecycle() throws {
        var session = try Session.established()
        let id = try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        #expect(session.state.liveRunCount == 1)
        try session.receive(started(Fixtures.run))
        try session.receive(.response(Response(id: id, ok: true, pid: 42)))
        expectMisuse(.duplicateRun) {
            var copy = session
            _ = try copy.startRun(Fixtures.run, stdout: 13, stderr: 14)
        }
        #expect(try session.receive(.event(.harnessLog(HarnessLog(level: .info, message: "x"))))
            == .deliverEvent(.harnessLog(HarnessLog(level: .info, message: "x"))))
        try session.receive(exited(Fixtures.run))
        #expect(session.state.liveRunCount == 0)
        // Output may still end after the process exited.
        #expect(try session.receive(.data(stream: 11, bytes: [])) == .endOfStream(stream: 11))
        expectViolation(.unknownRun) { try session.receive(exited(Fixtures.run)) }
    }

    @Test("the exit may come before the run.start response")
    func exitBeforeResponse() throws {
        var session = try Session.established()
        let id = try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try session.receive(exited(Fixtures.run, pid: 7))
        try session.receive(.response(Response(id: id, ok: true, pid: 7)))
        #expect(session.state.liveRunCount == 0)
    }

    @Test("pids must agree and events come once")
    func pidMismatch() throws {
        var session = try Session.established()
        let id = try session.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try session.receive(.response(Response(id: id, ok: true, pid: 42)))
        expectViolation(.invalidValue, key: "pid") { try session.receive(started(Fixtures.run, pid: 43)) }

        var twice = try Session.established()
        _ = try twice.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try twice.receive(started(Fixtures.run))
        expectViolation(.invalidValue, key: "process.started") { try twice.receive(started(Fixtures.run)) }
    }

    @Test("a failed run.start frees its slot and its streams")
    func failedStart() throws {
        var session = try Session.established()
        let id = try session.startRun(Fixtures.run, stdin: 10, stdout: 11, stderr: 12)
        try session.receive(.response(.failure(id: id, code: "ENOENT", message: "not found")))
        #expect(session.state.liveRunCount == 0)
        expectViolation(.unknownRun) { try session.receive(started(Fixtures.run)) }

        var late = try Session.established()
        let lateID = try late.startRun(Fixtures.run, stdout: 11, stderr: 12)
        try late.receive(started(Fixtures.run))
        expectViolation(.invalidValue, key: Fixtures.run.rawValue) {
            try late.receive(.response(.failure(id: lateID, code: "ENOENT", message: "")))
        }
    }

    @Test("at most 64 live runs; an exit frees a slot")
    func tooManyRuns() throws {
        var session = try Session.established()
        for index in 0..<64 {
            _ = try session.startRun(runID(index), stdout: StreamID(2 * index), stderr: StreamID(2 * index + 1))
        }
        expectMisuse(.tooManyRuns) { _ = try session.startRun(runID(64), stdout: 1000, stderr: 1001) }
        try session.receive(exited(runID(3)))
        _ = try session.startRun(runID(64), stdout: 1000, stderr: 1001)
        #expect(session.state.liveRunCount == 64)
    }
}

@Suite("SupervisorConnectionState: flood and heartbeats")
struct TimingTests {
    @Test("10 000 frames in a second pass; one more is a flood")
    func frameFlood() throws {
        var session = try Session.established()
        let t0 = session.now + 1_000_000_000  // the bucket is full again
        for _ in 0..<10_000 { _ = try session.state.receive(.ping(nonce: 1), now: t0) }
        expectViolation(.flood, key: "10000") { _ = try session.state.receive(.ping(nonce: 1), now: t0) }
    }

    @Test("a steady 10 000 frames per second never floods")
    func steadyRate() throws {
        var session = try Session.established()
        var now = session.now
        for _ in 0..<30_000 {
            now += 100_000  // 10 000 per second
            _ = try session.state.receive(.ping(nonce: 1), now: now)
        }
    }

    @Test("the bucket refills with time")
    func refill() throws {
        var session = try Session.established()
        var now = session.now + 1_000_000_000
        for _ in 0..<10_000 { _ = try session.state.receive(.ping(nonce: 1), now: now) }
        now += 500_000_000
        for _ in 0..<5_000 { _ = try session.state.receive(.ping(nonce: 1), now: now) }
        expectViolation(.flood) { _ = try session.state.receive(.ping(nonce: 1), now: now) }
    }

    @Test("more than 256 EVENTs in a second is a flood")
    func eventFlood() throws {
        var session = try Session.established()
        let log = Message.event(.harnessLog(HarnessLog(level: .info, message: "spam")))
        let t0 = session.now + 1
        for _ in 0..<256 { _ = try session.state.receive(log, now: t0) }
        expectViolation(.flood, key: "EVENT") { _ = try session.state.receive(log, now: t0) }
    }

    @Test("PING is answered with PONG")
    func pong() throws {
        var session = try Session.established()
        #expect(try session.receive(.ping(nonce: 0xDEAD)) == .sendPong(nonce: 0xDEAD))
        try session.send(.pong(nonce: 0xDEAD))
    }

    @Test("heartbeats: PING when idle, PONG clears it, silence for 4 intervals kills")
    func heartbeats() throws {
        var session = try Session.established()
        let start = session.now
        let interval: UInt64 = 2_000_000_000
        let early = try session.state.tick(now: start + interval - 1)
        #expect(early == nil)
        let due = try session.state.tick(now: start + interval)
        let ping = try #require(due)
        guard case .ping(let nonce) = ping else { Issue.record("expected a PING"); return }
        try session.state.willSend(ping, now: start + interval)
        let quiet = try session.state.tick(now: start + interval + 1)
        #expect(quiet == nil)
        _ = try session.state.receive(.pong(nonce: nonce), now: start + interval + 10)
        expectViolation(.unexpectedFrame, key: "\(nonce)") {
            var copy = session
            _ = try copy.state.receive(.pong(nonce: nonce), now: start + interval + 20)
        }

        // Unanswered: the next PINGs keep going out until 4 intervals passed.
        var now = start + 2 * interval
        let firstUnanswered = now
        while now < firstUnanswered + 4 * interval {
            if let ping = try session.state.tick(now: now) { try session.state.willSend(ping, now: now) }
            now += interval / 2
        }
        expectViolation(.unresponsive) { _ = try session.state.tick(now: firstUnanswered + 4 * interval) }
        #expect(session.state.phase == .failed)
    }
}

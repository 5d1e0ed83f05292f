import LevainProtocol
import Testing

@Suite("HarnessConnectionState")
struct HarnessConnectionStateTests {
    static func established(window: UInt32 = 1000) throws -> HarnessConnectionState {
        var state = HarnessConnectionState()
        let welcome = Welcome(window: window, session: "s-1")
        #expect(try state.receive(.welcome(welcome)) == .established(welcome))
        #expect(state.maxFrame == ProtocolLimits.defaultMaxFrame)
        return state
    }

    static func runStart(id: UInt64 = 1, run: RunID = Fixtures.run, stdin: StreamID? = 10, stdout: StreamID = 11,
                         stderr: StreamID = 12) -> Message {
        .request(Request(id: id, operation: .runStart(RunStart(
            run: run, argv: ["true"], env: [], cwd: "/", stdin: stdin, stdout: stdout, stderr: stderr, cgroup: false))))
    }

    @Test("WELCOME first, once")
    func handshake() throws {
        var state = HarnessConnectionState()
        expectViolation(.handshake, key: "REQUEST") { _ = try state.receive(Self.runStart()) }
        var ok = try Self.established()
        expectViolation(.handshake, key: "WELCOME") { _ = try ok.receive(.welcome(Fixtures.welcome)) }
        var future = HarnessConnectionState()
        expectViolation(.handshake, key: "version \(ProtocolLimits.protocolVersion + 1)") {
            _ = try future.receive(.welcome(Welcome(protocolVersion: ProtocolLimits.protocolVersion + 1, session: "s")))
        }
    }

    @Test("an operation of a later version than the connection's is an unknown operation; on a version 2 connection it is delivered")
    func operationsOfLaterVersions() throws {
        let mkdir = Request(id: 1, operation: .fileMkdir(FileMkdir(path: "a", parents: false)))
        let rename = Request(id: 2, operation: .fileRename(FileRename(path: "a", to: "b")))
        var old = HarnessConnectionState()
        _ = try old.receive(.welcome(Welcome(protocolVersion: 1, session: "s")))
        expectViolation(.unknownOperation, key: "file.mkdir") { _ = try old.receive(.request(mkdir)) }
        var old2 = HarnessConnectionState()
        _ = try old2.receive(.welcome(Welcome(protocolVersion: 1, session: "s")))
        expectViolation(.unknownOperation, key: "file.rename") { _ = try old2.receive(.request(rename)) }
        // Control: version 1's operations on the version 1 connection, version 2's on a version 2 one.
        var old3 = HarnessConnectionState()
        _ = try old3.receive(.welcome(Welcome(protocolVersion: 1, session: "s")))
        let delete = Request(id: 3, operation: .fileDelete(FileDelete(path: "a", recursive: false)))
        #expect(try old3.receive(.request(delete)) == .deliverRequest(delete))
        var old4 = HarnessConnectionState()
        _ = try old4.receive(.welcome(Welcome(protocolVersion: 1, session: "s")))
        let tmpStat = Request(id: 4, operation: .fileStat(FileStat(path: "/tmp/x")))
        expectViolation(.invalidValue, key: "/tmp") { _ = try old4.receive(.request(tmpStat)) }
        var current = try Self.established()
        #expect(try current.receive(.request(tmpStat)) == .deliverRequest(tmpStat))
        #expect(try current.receive(.request(mkdir)) == .deliverRequest(mkdir))
        #expect(try current.receive(.request(rename)) == .deliverRequest(rename))
    }

    @Test("the harness respects the supervisor's window on stdout, and answers each request once")
    func outbound() throws {
        var state = try Self.established()
        #expect(try state.receive(Self.runStart()) == .deliverRequest({
            guard case .request(let request) = Self.runStart() else { fatalError() }
            return request
        }()))
        #expect(state.credit(forOutbound: 11) == 1000)
        try state.willSend(.data(stream: 11, bytes: [UInt8](repeating: 0, count: 1000)))
        expectMisuse(.windowExceeded) { try state.willSend(.data(stream: 11, bytes: [0])) }
        #expect(try state.receive(.window(stream: 11, credit: 10)) == .creditAvailable(stream: 11, credit: 10))
        try state.willSend(.response(Response(id: 1, ok: true, pid: 5)))
        expectMisuse(.unknownRequest) { try state.willSend(.response(Response(id: 1, ok: true, pid: 5))) }
    }

    @Test("stdin: the supervisor's DATA spends the harness's credit; after the exit it is ignored")
    func inbound() throws {
        var state = try Self.established()
        _ = try state.receive(Self.runStart())
        _ = try state.receive(.data(stream: 10, bytes: [UInt8](repeating: 0, count: 600)))
        let credit = state.consumed(stream: 10, bytes: 600)
        let window = try #require(credit)
        try state.willSend(window)
        _ = try state.receive(.data(stream: 10, bytes: [UInt8](repeating: 0, count: 1000)))
        expectViolation(.windowExceeded) {
            var copy = state
            _ = try copy.receive(.data(stream: 10, bytes: [0]))
        }
        try state.willSend(exited(Fixtures.run))
        #expect(try state.receive(.data(stream: 10, bytes: [])) == nil)
    }

    @Test("too many runs and reused ids from the supervisor are violations")
    func limits() throws {
        var state = try Self.established()
        for index in 0..<64 {
            _ = try state.receive(Self.runStart(id: UInt64(index), run: runID(index), stdin: nil,
                                                stdout: StreamID(2 * index), stderr: StreamID(2 * index + 1)))
        }
        var copy = state
        expectViolation(.tooManyRuns) {
            _ = try copy.receive(Self.runStart(id: 100, run: runID(100), stdin: nil, stdout: 500, stderr: 501))
        }
        expectViolation(.invalidValue, key: "id") {
            _ = try state.receive(.request(Request(id: 3, operation: .fileList(FileList(path: ".")))))
        }
        var fresh = try Self.established()
        _ = try fresh.receive(Self.runStart())
        expectViolation(.invalidValue, key: "stream") {
            _ = try fresh.receive(.request(Request(id: 2, operation: .fileRead(FileRead(path: "a", stream: 11, maxBytes: 1)))))
        }
    }

    @Test("file.read: end the stream before the response")
    func fileRead() throws {
        var state = try Self.established()
        _ = try state.receive(.request(Request(id: 4, operation: .fileRead(FileRead(path: "a", stream: 9, maxBytes: 10)))))
        try state.willSend(.data(stream: 9, bytes: [1, 2]))
        expectMisuse(.streamClosed) { try state.willSend(.response(Response(id: 4, ok: true, size: 2))) }
        try state.willSend(.data(stream: 9, bytes: []))
        try state.willSend(.response(Response(id: 4, ok: true, size: 2)))
    }

    @Test("ended streams are forgotten; WINDOWs still in flight for them are ignored")
    func lateWindow() throws {
        var state = try Self.established()
        _ = try state.receive(Self.runStart())
        try state.willSend(.data(stream: 11, bytes: [1, 2, 3]))
        try state.willSend(.data(stream: 11, bytes: []))
        #expect(state.credit(forOutbound: 11) == nil)
        #expect(try state.receive(.window(stream: 11, credit: 3)) == nil)
        expectViolation(.unknownStream, key: "stream 10") { _ = try state.receive(.window(stream: 10, credit: 1)) }
    }

    @Test("a failed run.start closes the run's streams")
    func failedStart() throws {
        var state = try Self.established()
        _ = try state.receive(Self.runStart())
        try state.willSend(.response(.failure(id: 1, code: "ENOENT", message: "no such file")))
        #expect(state.liveRunCount == 0)
        expectMisuse(.unknownStream) { try state.willSend(.data(stream: 11, bytes: [1])) }
        // Data the supervisor had already sent to stdin is ignored.
        #expect(try state.receive(.data(stream: 10, bytes: [1])) == nil)
    }
}

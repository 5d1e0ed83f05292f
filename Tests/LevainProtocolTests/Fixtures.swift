import LevainProtocol
import Testing

/// Messages of every kind, and helpers shared by the suites.
enum Fixtures {
    static let run = RunID("r-0123456789ab")!
    static let otherRun = RunID("r-ba9876543210")!

    static let hello = Hello(harness: "levain-harness 0.2.0", pid: 1)
    static let welcome = Welcome(session: "s-0001")

    static let runStart = RunStart(
        run: run, argv: ["/bin/sh", "-c", "echo \"hi\"\n\t\u{1}ünï"], env: ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "EMPTY="],
        cwd: "/workspace", stdin: 10, stdout: 11, stderr: 12, cgroup: true,
        rlimits: ResourceLimits(
            cpu: ResourceLimit(soft: 10, hard: 20), nofile: ResourceLimit(soft: 256, hard: 256),
            stack: ResourceLimit(soft: nil, hard: nil)))

    static let requests: [Request] = [
        Request(id: 1, operation: .runStart(runStart)),
        Request(id: 2, operation: .runStart(RunStart(
            run: otherRun, argv: ["ls"], env: [], cwd: "/", stdin: nil, stdout: 20, stderr: 21, cgroup: false))),
        Request(id: 3, operation: .runSignal(RunSignal(run: run, signal: 15))),
        Request(id: 4, operation: .fileRead(FileRead(path: "out/result.json", stream: 30, maxBytes: 1_048_576))),
        Request(id: 8, operation: .fileRead(FileRead(path: "big.bin", stream: 32, maxBytes: 65_537, truncate: true))),
        Request(id: 5, operation: .fileWrite(FileWrite(path: "in/data.csv", stream: 31, maxBytes: 67_108_864, mode: 0o644))),
        Request(id: 6, operation: .fileList(FileList(path: "."))),
        Request(id: 7, operation: .fileStat(FileStat(path: "a.txt"))),
        Request(id: 1 << 53, operation: .fileDelete(FileDelete(path: "dir/sub", recursive: true))),
        Request(id: 9, operation: .fileMkdir(FileMkdir(path: "out/logs", parents: true, mode: 0o700))),
        Request(id: 10, operation: .fileRename(FileRename(path: "a b.txt", to: "done/ünï.txt"))),
    ]

    static let responses: [Response] = [
        Response(id: 1, ok: true, pid: 42),
        Response.success(id: 3),
        Response(id: 4, ok: true, size: 1234),
        Response.failure(id: 5, code: "EFBIG", message: "larger than max_bytes \"67108864\""),
        Response(id: 6, ok: true, entries: [
            DirEntry(name: "a.txt", type: .file, size: 12, mode: 0o644, mtime: 1_764_044_400),
            DirEntry(name: "sub", type: .dir, size: 4096, mode: 0o755, mtime: -5),
            DirEntry(name: "link", type: .symlink, size: 3, mode: 0o777, mtime: 0),
            DirEntry(name: "fifo", type: .other, size: 0, mode: 0o600, mtime: 1),
        ]),
        Response(id: 7, ok: true, stat: FileInfo(type: .file, size: 12, mode: 0o644, mtime: 1_764_044_400)),
        Response(id: 8, ok: true, entries: []),
    ]

    static let events: [Event] = [
        .processStarted(ProcessStarted(run: run, pid: 42)),
        .processExited(ProcessExited(run: run, pid: 42, code: 0, signal: nil, userMicros: 1200, systemMicros: 300,
                                     maxRSSKilobytes: 5120)),
        .processExited(ProcessExited(run: run, pid: 42, code: nil, signal: 9, userMicros: 0, systemMicros: 0,
                                     maxRSSKilobytes: 0)),
        .harnessLog(HarnessLog(level: .warning, message: "disk almost full")),
    ]

    /// Every message with the peer that sends it.
    static var allMessages: [(Message, Peer)] {
        var all: [(Message, Peer)] = [(.hello(hello), .harness), (.welcome(welcome), .supervisor)]
        all += requests.map { (.request($0), .supervisor) }
        all += responses.map { (.response($0), .harness) }
        all += events.map { (.event($0), .harness) }
        all += [
            (.data(stream: 11, bytes: Array("hello\n".utf8)), .harness),
            (.data(stream: 11, bytes: []), .harness),
            (.data(stream: UInt32.max, bytes: [0, 255]), .supervisor),
            (.window(stream: 10, credit: 65536), .supervisor),
            (.window(stream: 0, credit: UInt32.max), .harness),
            (.ping(nonce: 0), .supervisor),
            (.pong(nonce: UInt64.max), .harness),
        ]
        return all
    }

    static func frame(_ type: FrameType, _ json: String) -> Frame {
        Frame(type: type, body: Array(json.utf8))
    }

    static func decode(_ type: FrameType, _ json: String, from peer: Peer = .harness) throws(ProtocolViolation) -> Message {
        try MessageCodec.decode(frame(type, json), sentBy: peer)
    }
}

/// Runs `body`, expecting a violation with `code` whose message names `key`.
func expectViolation(
    _ code: ProtocolViolation.Code, key: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected a \(code) violation, got none", sourceLocation: sourceLocation)
    } catch let error as ProtocolViolation {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        if let key {
            #expect(error.message.contains(key), "message does not name \(key): \(error)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a \(code) violation, got \(error)", sourceLocation: sourceLocation)
    }
}

/// Runs `body`, expecting a misuse with `code`.
func expectMisuse(
    _ code: ProtocolMisuse.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected a \(code) misuse, got none", sourceLocation: sourceLocation)
    } catch let error as ProtocolMisuse {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a \(code) misuse, got \(error)", sourceLocation: sourceLocation)
    }
}

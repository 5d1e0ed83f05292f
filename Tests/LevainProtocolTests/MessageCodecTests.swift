import LevainProtocol
import Testing

@Suite("MessageCodec round trips")
struct MessageCodecRoundTripTests {
    @Test("every message survives encode → wire → decode")
    func roundTrips() throws {
        for (message, peer) in Fixtures.allMessages {
            let frame = MessageCodec.encode(message)
            #expect(frame.type == message.frameType)
            try MessageCodec.validate(message)
            let decoded = try MessageCodec.decode(frame, sentBy: peer)
            #expect(decoded == message)

            // Through the wire format and the incremental decoder too.
            var wire: [UInt8] = []
            MessageCodec.encode(message, into: &wire)
            #expect(wire == FrameEncoder.encode(frame))
            var decoder = FrameDecoder(maxFrame: ProtocolLimits.defaultMaxFrame)
            decoder.append(wire)
            let again = try #require(try decoder.next())
            #expect(try MessageCodec.decode(again, sentBy: peer) == message)
            #expect(try decoder.next() == nil)
        }
    }

    @Test("HELLO and WELCOME on the wire look like the document")
    func handshakeJSON() throws {
        let hello = MessageCodec.encode(.hello(Fixtures.hello))
        #expect(String(decoding: hello.body, as: UTF8.self)
            == #"{"protocol":3,"harness":"levain-harness 0.2.0","pid":1}"#)
        let welcome = MessageCodec.encode(.welcome(Fixtures.welcome))
        #expect(String(decoding: welcome.body, as: UTF8.self)
            == #"{"protocol":3,"max_frame":1048576,"heartbeat_ms":2000,"window":262144,"session":"s-0001"}"#)
    }

    @Test("version 3: run.start's pty [rows, cols] and run.resize round-trip; a size of 0 or more than 10,000 is refused naming the key")
    func terminals() throws {
        let start = RunStart(run: Fixtures.run, argv: ["sh"], env: ["TERM=xterm"], cwd: "/workspace", stdin: 5, stdout: 6, stderr: 7,
                             cgroup: false, pty: TerminalSize(rows: 24, cols: 80))
        let frame = MessageCodec.encode(.request(Request(id: 4, operation: .runStart(start))))
        #expect(String(decoding: frame.body, as: UTF8.self).contains(#""pty":[24,80]"#))
        #expect(try MessageCodec.decode(frame, sentBy: .supervisor) == .request(Request(id: 4, operation: .runStart(start))))
        let plain = MessageCodec.encode(.request(Request(id: 5, operation: .runStart(Fixtures.runStart))))
        #expect(!String(decoding: plain.body, as: UTF8.self).contains("pty"))
        let resize = Message.request(Request(id: 6, operation: .runResize(RunResize(run: Fixtures.run, size: TerminalSize(rows: 50, cols: 132)))))
        let wire = MessageCodec.encode(resize)
        #expect(String(decoding: wire.body, as: UTF8.self).contains(#""op":"run.resize","run":"#))
        #expect(try MessageCodec.decode(wire, sentBy: .supervisor) == resize)
        for (rows, cols, key) in [(0, 80, "rows"), (24, 0, "cols"), (10_001, 80, "rows")] {
            let bad = Message.request(Request(id: 7, operation: .runResize(RunResize(run: Fixtures.run, size: TerminalSize(rows: rows, cols: cols)))))
            #expect(throws: ProtocolViolation.self) { try MessageCodec.decode(MessageCodec.encode(bad), sentBy: .supervisor) }
            do {
                _ = try MessageCodec.decode(MessageCodec.encode(bad), sentBy: .supervisor)
            } catch {
                #expect(error.key == key)
            }
        }
        let badPty = Frame(type: .request, body: Array(#"{"id":8,"op":"run.start","run":"r-000000000001","argv":["sh"],"env":[],"cwd":"/","stdin":null,"stdout":2,"stderr":3,"cgroup":false,"pty":[24]}"#.utf8))
        #expect(throws: ProtocolViolation.self) { try MessageCodec.decode(badPty, sentBy: .supervisor) }
    }

    @Test("file.write carries an exact size: it round-trips, is optional, and may not exceed max_bytes")
    func fileWriteSize() throws {
        let sized = Message.request(Request(id: 2, operation: .fileWrite(FileWrite(path: "a.bin", stream: 3, maxBytes: 100, mode: 0o600, size: 100))))
        let frame = MessageCodec.encode(sized)
        #expect(String(decoding: frame.body, as: UTF8.self).contains(#""size":100"#))
        #expect(try MessageCodec.decode(frame, sentBy: .supervisor) == sized)
        // Absent and null both mean "not known".
        let absent = try Fixtures.decode(.request, #"{"id": 2, "op": "file.write", "path": "a", "stream": 3, "max_bytes": 9, "mode": 420}"#, from: .supervisor)
        let null = try Fixtures.decode(.request, #"{"id": 2, "op": "file.write", "path": "a", "stream": 3, "max_bytes": 9, "mode": 420, "size": null}"#, from: .supervisor)
        #expect(absent == null)
        expectViolation(.invalidValue, key: "size") {
            _ = try Fixtures.decode(.request, #"{"id": 2, "op": "file.write", "path": "a", "stream": 3, "max_bytes": 9, "mode": 420, "size": 10}"#, from: .supervisor)
        }
    }

    @Test("requests, responses and events decode from the document's examples")
    func documentExamples() throws {
        let write = try Fixtures.decode(
            .request, #"{"id": 11, "op": "file.write", "path": "in/data.csv", "stream": 11, "max_bytes": 67108864, "mode": 420}"#,
            from: .supervisor)
        #expect(write == .request(Request(
            id: 11, operation: .fileWrite(FileWrite(path: "in/data.csv", stream: 11, maxBytes: 67_108_864, mode: 420)))))
        let list = try Fixtures.decode(
            .response,
            #"{"id": 3, "ok": true, "entries": [{"name": "a.txt", "type": "file", "size": 12, "mode": 420, "mtime": 1764044400}]}"#)
        #expect(list == .response(Response(
            id: 3, ok: true, entries: [DirEntry(name: "a.txt", type: .file, size: 12, mode: 420, mtime: 1_764_044_400)])))
        let stat = try Fixtures.decode(
            .response, #"{"id": 4, "ok": true, "type": "symlink", "size": 3, "mode": 511, "mtime": 1}"#)
        #expect(stat == .response(Response(id: 4, ok: true, stat: FileInfo(type: .symlink, size: 3, mode: 511, mtime: 1))))
        let failure = try Fixtures.decode(
            .response, #"{"id": 7, "ok": false, "error": {"code": "ENOENT", "message": "no such file"}}"#)
        #expect(failure == .response(.failure(id: 7, code: "ENOENT", message: "no such file")))
        let exited = try Fixtures.decode(
            .event,
            #"{"event": "process.exited", "run": "r-0123456789ab", "pid": 42, "code": null, "signal": 15, "user_us": 1, "system_us": 2, "max_rss_kb": 3}"#)
        #expect(exited == .event(.processExited(ProcessExited(
            run: Fixtures.run, pid: 42, code: nil, signal: 15, userMicros: 1, systemMicros: 2, maxRSSKilobytes: 3))))
    }

    @Test("unknown keys are ignored, at every level, whatever they hold")
    func unknownKeysIgnored() throws {
        let message = try Fixtures.decode(
            .response,
            #"{"future": {"deep": [1, 2.5e10, null, "\u00e9"]}, "id": 1, "ok": false, "error": {"code": "EIO", "message": "m", "errno": 5}}"#)
        #expect(message == .response(.failure(id: 1, code: "EIO", message: "m")))
    }

    @Test("absent and null mean the same for optional and nullable keys")
    func nullableKeys() throws {
        let withNull = try Fixtures.decode(
            .request,
            #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","stdin":null,"stdout":1,"stderr":2,"cgroup":false,"rlimits":null}"#,
            from: .supervisor)
        let absent = try Fixtures.decode(
            .request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","stdout":1,"stderr":2,"cgroup":false}"#,
            from: .supervisor)
        #expect(withNull == absent)
    }

    @Test("JSON escapes decode to the same strings the encoder escapes")
    func escapes() throws {
        let message = try Fixtures.decode(
            .event, #"{"event":"harness.log","level":"info","message":"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\ud83d\ude00"}"#)
        #expect(message == .event(.harnessLog(HarnessLog(level: .info, message: "a\"b\\c/d\u{8}\u{c}\n\r\tAé😀"))))
    }

    @Test("a frame of exactly max_frame carries the largest DATA")
    func largestData() throws {
        let bytes = [UInt8](repeating: 7, count: ProtocolLimits.handshakeMaxFrame - 5)
        let frame = MessageCodec.encode(.data(stream: 1, bytes: bytes))
        #expect(frame.length == ProtocolLimits.handshakeMaxFrame)
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(frame))
        let decoded = try #require(try decoder.next())
        #expect(try MessageCodec.decode(decoded, sentBy: .harness) == .data(stream: 1, bytes: bytes))
    }
}

@Suite("MessageCodec violations")
struct MessageCodecViolationTests {
    @Test("badLength: DATA, WINDOW, PING and PONG bodies of the wrong size")
    func badLength() {
        expectViolation(.badLength, key: "DATA") { _ = try MessageCodec.decode(Frame(type: .data, body: [0, 0, 1]), sentBy: .harness) }
        expectViolation(.badLength, key: "WINDOW") { _ = try MessageCodec.decode(Frame(type: .window, body: [0, 0, 0, 1]), sentBy: .harness) }
        expectViolation(.badLength, key: "PING") { _ = try MessageCodec.decode(Frame(type: .ping, body: []), sentBy: .harness) }
        expectViolation(.badLength, key: "PONG") { _ = try MessageCodec.decode(Frame(type: .pong, body: [UInt8](repeating: 0, count: 9)), sentBy: .harness) }
    }

    @Test("invalidJSON: syntax, encoding, nesting and duplicate keys", arguments: [
        "", "   ", "[1]", "\"s\"", "1", "null", "{", "{\"id\":1,}", "{\"id\" 1}", "{\"id\":1}}", "{\"id\":1} x",
        "\u{FEFF}{\"id\":1}", "{'id':1}", "{\"id\":01}", "{\"id\":1.}", "{\"id\":-}", "{\"id\":1e}", "{\"id\":tru}",
        "{\"id\":\"\\x\"}", "{\"id\":\"\\ud800\"}", "{\"id\":\"\\udc00x\"}", "{\"id\":\"\\u12\"}", "{\"id\":\"a\nb\"}",
        "{\"id\":[1,]}", "{\"id\":[1 2]}", "{\"a\":" + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}",
        "{\"id\":1,\"id\":2,\"ok\":true}",
    ])
    func invalidJSON(body: String) {
        expectViolation(.invalidJSON) { _ = try Fixtures.decode(.response, body) }
    }

    @Test("invalidJSON: bytes that are not UTF-8")
    func invalidUTF8() {
        let bodies: [[UInt8]] = [
            Array(#"{"x":""#.utf8) + [0xFF] + Array(#""}"#.utf8),  // never valid
            Array(#"{"x":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8),  // overlong
            Array(#"{"x":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8),  // encoded surrogate
            Array(#"{"x":""#.utf8) + [0xF4, 0x90, 0x80, 0x80] + Array(#""}"#.utf8),  // above U+10FFFF
            Array(#"{"x":""#.utf8) + [0xE2, 0x82] + Array(#""}"#.utf8),  // truncated
            Array(#"{"x":1}"#.utf8) + [0xC3, 0xA9],  // outside a string
        ]
        for body in bodies {
            expectViolation(.invalidJSON) { _ = try MessageCodec.decode(Frame(type: .response, body: body), sentBy: .harness) }
        }
    }

    @Test("duplicate keys name the key")
    func duplicateKey() {
        expectViolation(.invalidJSON, key: "id") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"id":2}"#) }
    }

    @Test("missingKey names the key, nested ones with their path")
    func missingKey() {
        expectViolation(.missingKey, key: "ok") { _ = try Fixtures.decode(.response, #"{"id":1}"#) }
        expectViolation(.missingKey, key: "error") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":false}"#) }
        expectViolation(.missingKey, key: "error.message") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":false,"error":{"code":"EIO"}}"#)
        }
        expectViolation(.missingKey, key: "entries[1].mtime") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"entries":[{"name":"a","type":"file","size":1,"mode":1,"mtime":1},{"name":"b","type":"file","size":1,"mode":1}]}"#)
        }
        expectViolation(.missingKey, key: "cgroup") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","stdout":1,"stderr":2}"#, from: .supervisor)
        }
        expectViolation(.missingKey, key: "harness") { _ = try Fixtures.decode(.hello, #"{"protocol":1,"pid":1}"#) }
        expectViolation(.missingKey, key: "max_rss_kb") {
            _ = try Fixtures.decode(.event, #"{"event":"process.exited","run":"r-0123456789ab","pid":4,"code":0,"user_us":1,"system_us":2}"#)
        }
    }

    @Test("wrongType names the key and both types")
    func wrongType() {
        expectViolation(.wrongType, key: "id") { _ = try Fixtures.decode(.response, #"{"id":"1","ok":true}"#) }
        expectViolation(.wrongType, key: "ok") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":1}"#) }
        expectViolation(.wrongType, key: "id") { _ = try Fixtures.decode(.response, #"{"id":1.0,"ok":true}"#) }
        expectViolation(.wrongType, key: "id") { _ = try Fixtures.decode(.response, #"{"id":1e2,"ok":true}"#) }
        expectViolation(.wrongType, key: "pid") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"pid":[42]}"#) }
        expectViolation(.wrongType, key: "error") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":false,"error":"ENOENT"}"#) }
        expectViolation(.wrongType, key: "argv[1]") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x",2],"env":[],"cwd":"/","stdout":1,"stderr":2,"cgroup":false}"#, from: .supervisor)
        }
        expectViolation(.wrongType, key: "argv") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":"x","env":[],"cwd":"/","stdout":1,"stderr":2,"cgroup":false}"#, from: .supervisor)
        }
        expectViolation(.wrongType, key: "recursive") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"file.delete","path":"a","recursive":null}"#, from: .supervisor)
        }
        expectViolation(.wrongType, key: "rlimits.cpu[0]") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","stdout":1,"stderr":2,"cgroup":false,"rlimits":{"cpu":["1",2]}}"#, from: .supervisor)
        }
    }

    @Test("invalidValue: integers out of range name the key and value")
    func integerRanges() {
        expectViolation(.invalidValue, key: "id") { _ = try Fixtures.decode(.response, #"{"id":-1,"ok":true}"#) }
        expectViolation(.invalidValue, key: "id") { _ = try Fixtures.decode(.response, #"{"id":9007199254740993,"ok":true}"#) }
        expectViolation(.invalidValue, key: "id") { _ = try Fixtures.decode(.response, #"{"id":99999999999999999999999,"ok":true}"#) }
        expectViolation(.invalidValue, key: "pid") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"pid":0}"#) }
        expectViolation(.invalidValue, key: "pid") { _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"pid":2147483648}"#) }
        expectViolation(.invalidValue, key: "stdout") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","stdout":4294967296,"stderr":2,"cgroup":false}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "signal") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.signal","run":"r-0123456789ab","signal":65}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "signal") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.signal","run":"r-0123456789ab","signal":0}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "mode") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"file.write","path":"a","stream":1,"max_bytes":1,"mode":4096}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "max_frame") {
            _ = try Fixtures.decode(.welcome, #"{"protocol":1,"max_frame":16777217,"heartbeat_ms":2000,"window":1,"session":"s"}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "window") {
            _ = try Fixtures.decode(.welcome, #"{"protocol":1,"max_frame":65536,"heartbeat_ms":2000,"window":0,"session":"s"}"#, from: .supervisor)
        }
        expectViolation(.invalidValue, key: "protocol") { _ = try Fixtures.decode(.hello, #"{"protocol":0,"harness":"h","pid":1}"#) }
        expectViolation(.invalidValue, key: "code") {
            _ = try Fixtures.decode(.event, #"{"event":"process.exited","run":"r-0123456789ab","pid":4,"code":256,"signal":null,"user_us":1,"system_us":2,"max_rss_kb":3}"#)
        }
    }

    @Test("invalidValue: run ids must be r- and 12 lowercase hex digits", arguments: [
        "r-0123456789AB", "r-0123456789a", "r-0123456789abc", "x-0123456789ab", "r_0123456789ab", "", "r-0123456789ag",
    ])
    func runID(run: String) {
        expectViolation(.invalidValue, key: "run") {
            _ = try Fixtures.decode(.event, #"{"event":"process.started","run":"\#(run)","pid":4}"#)
        }
        #expect(RunID(run) == nil)
    }

    @Test("invalidValue: argv must be non-empty, bounded and NUL-free")
    func argv() {
        func start(argv: [String]) -> Request {
            Request(id: 1, operation: .runStart(RunStart(
                run: Fixtures.run, argv: argv, env: [], cwd: "/", stdin: nil, stdout: 1, stderr: 2, cgroup: false)))
        }
        func decodeStart(_ argv: [String]) throws(ProtocolViolation) {
            _ = try MessageCodec.decode(MessageCodec.encode(.request(start(argv: argv))), sentBy: .supervisor)
        }
        expectViolation(.invalidValue, key: "argv") { try decodeStart([]) }
        expectViolation(.invalidValue, key: "argv") { try decodeStart(Array(repeating: "a", count: 4097)) }
        expectViolation(.invalidValue, key: "argv[1]") { try decodeStart(["a", "b\u{0}c"]) }
        expectViolation(.invalidValue, key: "argv[0]") {
            try decodeStart([String(repeating: "a", count: ProtocolLimits.maxArgumentBytes + 1)])
        }
        expectViolation(.invalidValue, key: "argv") {
            try decodeStart(Array(repeating: String(repeating: "a", count: 100_000), count: 11))
        }
        // Exactly at the limits is fine.
        #expect(throws: Never.self) { try decodeStart(Array(repeating: "a", count: 4096)) }
        #expect(throws: Never.self) { try decodeStart([String(repeating: "a", count: ProtocolLimits.maxArgumentBytes)]) }
    }

    @Test("invalidValue: env entries are KEY=VALUE with a valid key", arguments: [
        "NOEQUALS", "=value", "1ABC=x", "A-B=x", "A B=x", "A\u{0}=x", "A=\u{0}",
    ])
    func env(entry: String) {
        let request = Request(id: 1, operation: .runStart(RunStart(
            run: Fixtures.run, argv: ["x"], env: ["OK=1", entry], cwd: "/", stdin: nil, stdout: 1, stderr: 2, cgroup: false)))
        expectViolation(.invalidValue, key: "env[1]") {
            _ = try MessageCodec.decode(MessageCodec.encode(.request(request)), sentBy: .supervisor)
        }
    }

    @Test("invalidValue: file paths are relative without '..'; cwd is absolute", arguments: [
        "/etc/passwd", "..", "../x", "a/../../x", "a/..", "", "a\u{0}b", String(repeating: "a", count: 4097),
    ])
    func paths(path: String) {
        for operation in [Operation.fileRead(FileRead(path: path, stream: 1, maxBytes: 1)), .fileList(FileList(path: path)),
                          .fileStat(FileStat(path: path)), .fileDelete(FileDelete(path: path, recursive: false)),
                          .fileWrite(FileWrite(path: path, stream: 1, maxBytes: 1, mode: 0o600)),
                          .fileMkdir(FileMkdir(path: path, parents: false)), .fileRename(FileRename(path: path, to: "b"))] {
            expectViolation(.invalidValue, key: "path") {
                _ = try MessageCodec.decode(MessageCodec.encode(.request(Request(id: 1, operation: operation))), sentBy: .supervisor)
            }
        }
        expectViolation(.invalidValue, key: "to") {
            let op = Operation.fileRename(FileRename(path: "a", to: path))
            _ = try MessageCodec.decode(MessageCodec.encode(.request(Request(id: 1, operation: op))), sentBy: .supervisor)
        }
    }

    @Test("invalidValue: a file.mkdir mode above 0o7777")
    func mkdirMode() throws {
        expectViolation(.invalidValue, key: "mode") {
            _ = try Fixtures.decode(.request, #"{"id": 1, "op": "file.mkdir", "path": "a", "parents": false, "mode": 4096}"#, from: .supervisor)
        }
        let ok = try Fixtures.decode(.request, #"{"id": 1, "op": "file.mkdir", "path": "a", "parents": true, "mode": 4095}"#, from: .supervisor)
        #expect(ok == .request(Request(id: 1, operation: .fileMkdir(FileMkdir(path: "a", parents: true, mode: 4095)))))
    }

    @Test("version 2 file paths: /tmp and beneath it, nothing else absolute, no '..'")
    func tmpPaths() throws {
        for path in ["/tmp", "/tmp/x", "/tmp/a/b.txt"] {
            try MessageCodec.validate(.request(Request(id: 1, operation: .fileStat(FileStat(path: path)))))
        }
        for path in ["/etc/passwd", "/tmpx", "/tmp/../etc/passwd", "/proc/self/environ", "/workspace/a"] {
            expectViolation(.invalidValue, key: "path") {
                try MessageCodec.validate(.request(Request(id: 1, operation: .fileStat(FileStat(path: path)))))
            }
        }
    }

    @Test("valid odd paths are accepted")
    func oddPaths() throws {
        for path in [".", "a/./b", "...", "..a", "a..", "a//b", "dir/", ".hidden/..x"] {
            try MessageCodec.validate(.request(Request(id: 1, operation: .fileStat(FileStat(path: path)))))
        }
    }

    @Test("invalidValue: cwd must be absolute")
    func cwd() {
        expectViolation(.invalidValue, key: "cwd") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"workspace","stdout":1,"stderr":2,"cgroup":false}"#, from: .supervisor)
        }
    }

    @Test("invalidValue: streams of a run are distinct; rlimits known and ordered")
    func runStartShape() {
        func decodeStart(_ extra: String) throws(ProtocolViolation) {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.start","run":"r-0123456789ab","argv":["x"],"env":[],"cwd":"/","cgroup":false,"#
                                    + extra + "}", from: .supervisor)
        }
        expectViolation(.invalidValue, key: "stderr") { try decodeStart(#""stdout":1,"stderr":1"#) }
        expectViolation(.invalidValue, key: "stdin") { try decodeStart(#""stdin":2,"stdout":1,"stderr":2"#) }
        expectViolation(.invalidValue, key: "rlimits") { try decodeStart(#""stdout":1,"stderr":2,"rlimits":{"as":[1,2]}"#) }
        expectViolation(.invalidValue, key: "rlimits.cpu") { try decodeStart(#""stdout":1,"stderr":2,"rlimits":{"cpu":[3,2]}"#) }
        expectViolation(.invalidValue, key: "rlimits.cpu") { try decodeStart(#""stdout":1,"stderr":2,"rlimits":{"cpu":[null,2]}"#) }
        expectViolation(.invalidValue, key: "rlimits.cpu") { try decodeStart(#""stdout":1,"stderr":2,"rlimits":{"cpu":[1]}"#) }
        expectViolation(.invalidValue, key: "rlimits.cpu") { try decodeStart(#""stdout":1,"stderr":2,"rlimits":{"cpu":[1,2,3]}"#) }
    }

    @Test("invalidValue: responses, entries and events hold sane values")
    func responseValues() {
        expectViolation(.invalidValue, key: "error") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"error":{"code":"EIO","message":""}}"#)
        }
        expectViolation(.invalidValue, key: "error.code") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":false,"error":{"code":"E IO","message":""}}"#)
        }
        expectViolation(.invalidValue, key: "entries[0].name") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"entries":[{"name":"a/b","type":"file","size":1,"mode":1,"mtime":1}]}"#)
        }
        expectViolation(.invalidValue, key: "entries[0].name") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"entries":[{"name":"..","type":"file","size":1,"mode":1,"mtime":1}]}"#)
        }
        expectViolation(.invalidValue, key: "type") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"type":"socket","size":1,"mode":1,"mtime":1}"#)
        }
        expectViolation(.invalidValue, key: "level") {
            _ = try Fixtures.decode(.event, #"{"event":"harness.log","level":"debug","message":"m"}"#)
        }
        expectViolation(.invalidValue, key: "message") {
            _ = try Fixtures.decode(.event, #"{"event":"harness.log","level":"info","message":""# + String(repeating: "x", count: 4097) + #""}"#)
        }
        expectViolation(.invalidValue, key: "code") {
            _ = try Fixtures.decode(.event, #"{"event":"process.exited","run":"r-0123456789ab","pid":4,"code":null,"signal":null,"user_us":1,"system_us":2,"max_rss_kb":3}"#)
        }
        expectViolation(.invalidValue, key: "code") {
            _ = try Fixtures.decode(.event, #"{"event":"process.exited","run":"r-0123456789ab","pid":4,"code":1,"signal":9,"user_us":1,"system_us":2,"max_rss_kb":3}"#)
        }
        let tooMany = "[" + Array(repeating: #"{"name":"a","type":"file","size":1,"mode":1,"mtime":1}"#, count: 10_001).joined(separator: ",") + "]"
        expectViolation(.invalidValue, key: "entries") {
            _ = try Fixtures.decode(.response, #"{"id":1,"ok":true,"entries":"# + tooMany + "}")
        }
    }

    @Test("unknownOperation names the op")
    func unknownOperation() {
        expectViolation(.unknownOperation, key: "run.exec") {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"run.exec"}"#, from: .supervisor)
        }
    }

    @Test("unknownEvent names the event")
    func unknownEvent() {
        expectViolation(.unknownEvent, key: "process.forked") {
            _ = try Fixtures.decode(.event, #"{"event":"process.forked","run":"r-0123456789ab"}"#)
        }
    }

    @Test("unexpectedFrame: a frame type the sender must not send")
    func unexpectedFrame() throws {
        for (message, sender) in Fixtures.allMessages where message.frameType.isSent(by: sender) {
            let other: Peer = sender == .harness ? .supervisor : .harness
            let frame = MessageCodec.encode(message)
            if frame.type.isSent(by: other) { continue }
            expectViolation(.unexpectedFrame, key: frame.type.description) {
                _ = try MessageCodec.decode(frame, sentBy: other)
            }
        }
    }

    @Test("violations describe themselves with code and message")
    func description() {
        let violation = ProtocolViolation(.missingKey, "missing key 'ok'", key: "ok")
        #expect(violation.description == "protocol violation (missingKey): missing key 'ok'")
        #expect(violation.key == "ok")
    }

    @Test("quoted values in messages are truncated and escaped")
    func quotedValues() {
        do {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":""# + String(repeating: "x", count: 1000) + #"\n"}"#, from: .supervisor)
            Issue.record("expected a violation")
        } catch {
            #expect(error.code == .unknownOperation)
            #expect(error.message.utf8.count < 120)
            #expect(!error.message.contains("\n"))
        }
        expectViolation(.unknownOperation, key: #""a\nb""#) {
            _ = try Fixtures.decode(.request, #"{"id":1,"op":"a\nb"}"#, from: .supervisor)
        }
    }
}

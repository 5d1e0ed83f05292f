import LevainAPI
import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Control API: query numbers, body size, duplicate keys, UTF-8", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct APIInputTests {
    static func expectError(_ r: APIClient.Reply, _ status: Int, field: String?, _ note: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == status, "\(note): \(r.status) \(r.text)", sourceLocation: sourceLocation)
        let e = r.json?["error"]?.objectValue
        #expect(e?["message"]?.stringValue?.isEmpty == false, "\(note): \(r.text)", sourceLocation: sourceLocation)
        if let field { #expect(e?["field"]?.stringValue == field, "\(note): \(r.text)", sourceLocation: sourceLocation) }
    }

    @Test("a bad number in any integer query parameter is 400 naming it, never 500; good numbers still work")
    func queryNumbers() async throws {
        let sv = try await TestSupervisor.start("querynumbers")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let done = try await sv.startRun(s, ["command": "echo x", "wait": true])
        let r = try #require(done["id"]?.stringValue)
        // (method, path with VALUE in place of the number, the field, a value
        // just past its range, a good value)
        let cursor = "4611686018427387904"  // 2^62: past every cursor's range
        let cases: [(String, String, String, String, String)] = [
            ("GET", "/v1/log/events?session=\(s)&after_seq=VALUE", "after_seq", cursor, "0"),
            ("GET", "/v1/log/events?after_id=VALUE", "after_id", cursor, "0"),
            ("GET", "/v1/log/events?limit=VALUE", "limit", "10001", "5"),
            ("GET", "/v1/log/events?tail=VALUE", "tail", "10001", "1"),
            ("GET", "/v1/runs/\(r)/output/stdout?follow=false&offset=VALUE", "offset", "4611686018427387905", "0"),
            ("GET", "/v1/sessions/\(s)/events?follow=false&after=VALUE", "after", cursor, "0"),
            ("GET", "/v1/runs/\(r)/events?follow=false&after=VALUE", "after", cursor, "0"),
            ("GET", "/v1/log/tail?follow=false&after=VALUE", "after", cursor, "0"),
        ]
        // -1, not a number, "2^62" spelled out, a fraction, empty, past
        // Int64, and just past the parameter's range.
        let bad = ["-1", "abc", "2%5E62", "1.5", "", "9223372036854775808", "99999999999999999999"]
        for (method, path, field, past, good) in cases {
            for value in bad + [past] {
                let url = path.replacingOccurrences(of: "VALUE", with: value)
                Self.expectError(try await sv.request(method, url), 400, field: field, "\(method) \(url)")
            }
            // The control: a good value answers 200.
            let ok = try await sv.request(method, path.replacingOccurrences(of: "VALUE", with: good))
            #expect(ok.status == 200, "\(path) with \(good): \(ok.status) \(ok.text)")
        }
        for value in ["-1", "abc", "4611686018427387904", "1.5", "70000"] {
            Self.expectError(try await sv.raw("PUT", "/v1/sessions/\(s)/files/m.txt?mode=\(value)", body: Array("x".utf8)), 400, field: "mode", "mode=\(value)")
        }
        #expect(try await sv.raw("PUT", "/v1/sessions/\(s)/files/m.txt?mode=420", body: Array("x".utf8)).status == 201)
        for value in ["-1", "abc", "1e30", "nan"] {
            Self.expectError(try await sv.request("POST", "/v1/runs/\(r)/wait?timeout=\(value)"), 400, field: "timeout", "timeout=\(value)")
        }
        #expect(try await sv.request("POST", "/v1/runs/\(r)/wait?timeout=1.5").status == 200)
        // Last-Event-ID, the header form of `after`.
        let header = try rawRequest(sv.socket, "GET /v1/sessions/\(s)/events?follow=false HTTP/1.1\r\nHost: x\r\nLast-Event-ID: -5\r\nConnection: close\r\n\r\n")
        #expect(header.hasPrefix("HTTP/1.1 400"), "\(header)")
        #expect(header.contains("\"field\":\"Last-Event-ID\""), "\(header)")
        let goodHeader = try rawRequest(sv.socket, "GET /v1/sessions/\(s)/events?follow=false HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\nConnection: close\r\n\r\n")
        #expect(goodHeader.hasPrefix("HTTP/1.1 200"), "\(goodHeader)")
        #expect(goodHeader.contains("event: run.queued"), "the events after seq 1: \(goodHeader)")
        #expect(try await sv.request("GET", "/v1/log/verify").json?["ok"]?.boolValue == true)
    }

    @Test("a body over limits.max_request is 413 (with or without Content-Length); one under it is accepted")
    func bodyTooLarge() async throws {
        let sv = try await TestSupervisor.start("bodysize")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        // 5 MiB of valid JSON, above the default 4 MiB.
        let big = Array("{\"command\": \"true\", \"env\": {\"X\": \"".utf8) + [UInt8](repeating: 65, count: 5 << 20) + Array("\"}}".utf8)
        Self.expectError(try await sv.raw("POST", "/v1/sessions/\(s)/runs", body: big, contentType: "application/json"), 413, field: "body", "5 MiB with Content-Length")
        let chunks = ChunkFeed(big, size: 256 << 10)
        Self.expectError(try await sv.client.upload("POST", "/v1/sessions/\(s)/runs", contentType: "application/json") { chunks.next() }, 413, field: "body", "5 MiB chunked")
        Self.expectError(try await sv.raw("POST", "/v1/sessions", body: big, contentType: "application/json"), 413, field: "body", "5 MiB session body")
        // The control: a 1 MiB body (under the limit) is a run.
        let fine = Array("{\"command\": \"wc -c\", \"wait\": true, \"stdin\": \"".utf8) + [UInt8](repeating: 65, count: 1 << 20) + Array("\"}".utf8)
        let ok = try await sv.raw("POST", "/v1/sessions/\(s)/runs", body: fine, contentType: "application/json")
        #expect(ok.status == 201, "\(ok.text.prefix(300))")
        #expect(ok.json?["exit_status"]?.intValue == 0)
        #expect(try await sv.output(ok.json?["id"]?.stringValue ?? "-") == "1048576\n")
        let runs = try await sv.request("GET", "/v1/runs?session=\(s)").json?["runs"]?.arrayValue ?? []
        #expect(runs.count == 1, "only the control made a run")
    }

    @Test("a key given twice in a body is 400 naming it; invalid UTF-8 is 400, not U+FFFD; nothing is created")
    func duplicateKeysAndUTF8() async throws {
        let sv = try await TestSupervisor.start("dupkeys")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        func post(_ path: String, _ bytes: [UInt8]) async throws -> APIClient.Reply {
            try await sv.raw("POST", path, body: bytes, contentType: "application/json")
        }
        let dup = try await post("/v1/sessions/\(s)/runs", Array(#"{"argv": ["true"], "argv": ["false"], "wait": true}"#.utf8))
        Self.expectError(dup, 400, field: "argv", "argv twice")
        #expect(dup.json?["error"]?["message"]?.stringValue?.contains("argv") == true, "\(dup.text)")
        Self.expectError(try await post("/v1/sessions", Array(#"{"limits": {"memory": "64M", "memory": "128M"}}"#.utf8)), 400, field: "limits.memory", "nested key twice")
        Self.expectError(try await post("/v1/sessions/\(s)/runs", Array(#"{"command": "true", "env": {"A": "1", "\u0041": "2"}}"#.utf8)), 400, field: "env.A", "a key twice, once escaped")
        Self.expectError(try await post("/v1/approvals/c-000000000000", Array(#"{"decision": "deny", "decision": "allow"}"#.utf8)), 400, field: "decision", "decision twice")
        // Invalid UTF-8 in a string, and a lone continuation byte.
        let bad1 = Array(#"{"command": "echo "#.utf8) + [0xFF, 0xFE] + Array(#"", "wait": true}"#.utf8)
        let r1 = try await post("/v1/sessions/\(s)/runs", bad1)
        Self.expectError(r1, 400, field: "body", "0xFF in a string")
        #expect(r1.json?["error"]?["message"]?.stringValue?.contains("UTF-8") == true, "\(r1.text)")
        let bad2 = Array(#"{"tenant": "a"#.utf8) + [0x80] + Array(#""}"#.utf8)
        Self.expectError(try await post("/v1/sessions", bad2), 400, field: "body", "a continuation byte alone")
        // Nothing was made by any of them.
        #expect(try await sv.request("GET", "/v1/sessions").json?["sessions"]?.arrayValue?.count == 1)
        #expect(try await sv.request("GET", "/v1/runs?session=\(s)").json?["runs"]?.arrayValue?.count == 0)
        // The control: the same keys once each, and real UTF-8, work.
        let good = try await post("/v1/sessions/\(s)/runs", Array(#"{"command": "printf '%s' \"$A\"; echo é", "env": {"A": "1"}, "wait": true}"#.utf8))
        #expect(good.status == 201, "\(good.text)")
        let id = try #require(good.json?["id"]?.stringValue)
        #expect(try await sv.output(id) == "1é\n")
        #expect(try await sv.request("GET", "/v1/log/verify").json?["ok"]?.boolValue == true)
    }
}

/// Hands out a byte array in pieces (for a chunked upload).
final class ChunkFeed: @unchecked Sendable {
    private let bytes: [UInt8]
    private let size: Int
    private var offset = 0
    private let lock = NSLock()

    init(_ bytes: [UInt8], size: Int) {
        self.bytes = bytes
        self.size = size
    }

    func next() -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        guard offset < bytes.count else { return nil }
        let end = min(bytes.count, offset + size)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }
}

/// A connected Unix stream socket (blocking), or -1.
func connectUnix(_ path: String, nonBlocking: Bool = false) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0), 0)
    guard fd >= 0 else { return -1 }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if ok != 0 {
        close(fd)
        return -1
    }
    return fd
}

/// Sends a raw HTTP request on a fresh connection and reads the answer to
/// its end (the request must ask for `Connection: close`); at most
/// `timeout` seconds of silence.
func rawRequest(_ socketPath: String, _ text: String, timeout: Int = 30) throws -> String {
    let fd = connectUnix(socketPath)
    guard fd >= 0 else { throw TestFailure("cannot connect to \(socketPath): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        off += n
    }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

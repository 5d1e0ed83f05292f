import LevainAPI
import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Control API timeouts: slow heads, idle connections", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct TimeoutTests {
    @Test("200 slowloris connections are closed after header_timeout, idle ones after idle_timeout, while streams, a wait: true run and a pausing stdin upload go on")
    func slowloris() async throws {
        let sv = try await TestSupervisor.start("slowloris", config: "header_timeout = \"2s\"\nidle_timeout = \"3s\"\n")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let client = sv.client

        // Legitimate long requests, each longer than both timeouts.
        // A run printing a line a second for 6 s, its output followed.
        let ticking = try #require(try await sv.startRun(s, ["command": "for i in 1 2 3 4 5 6; do echo line$i; sleep 1; done"])["id"]?.stringValue)
        async let followed: String = try {
            var out: [UInt8] = []
            try await client.stream("GET", "/v1/runs/\(ticking)/output/stdout", onHead: { _, _ in }, onChunk: { out += $0; return true })
            return String(decoding: out, as: UTF8.self)
        }()
        // The session's events and the log's tail, silent for seconds
        // between run.started and run.finished.
        async let sessionEvents: Bool = try Self.waitForEvent(client, "/v1/sessions/\(s)/events", run: ticking)
        async let tailEvents: Bool = try Self.waitForEvent(client, "/v1/log/tail?after=0", run: ticking)
        // A wait: true submission of a 5-second run.
        async let waited = try client.request("POST", "/v1/sessions/\(s)/runs", json: ["command": "sleep 5; echo slept", "wait": true])
        // A stdin upload that pauses 5 s between its two pieces.
        let cat = try #require(try await sv.startRun(s, ["argv": ["cat"], "stdin_stream": true])["id"]?.stringValue)
        async let uploaded: String = try Self.pausingUpload(sv.socket, run: cat, pieces: ["first\n", "second\n"], pause: 5)

        // The attackers: 200 connections sending a head a byte every 0.5 s,
        // 20 that send nothing, 10 that stop in the middle of a body, and 5
        // that finish a request and stay (keep-alive).
        let slow = Trickler(sv.socket, count: 200)
        let silent = openUnixConnections(sv.socket, count: 20, within: 30)
        defer { for fd in silent { close(fd) } }
        var bodies: [Int32] = []
        for _ in 0..<10 {
            let fd = connectUnix(sv.socket)
            if fd >= 0 { sendAll(fd, "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"tenant\""); bodies.append(fd) }
        }
        defer { for fd in bodies { close(fd) } }
        var kept: [Int32] = []
        for _ in 0..<5 {
            let fd = connectUnix(sv.socket)
            if fd >= 0 { sendAll(fd, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"); kept.append(fd) }
        }
        defer { for fd in kept { close(fd) } }
        #expect(slow.opened == 200 && silent.count == 20 && bodies.count == 10 && kept.count == 5)
        slow.start()
        defer { slow.stop() }

        // The control: other runs succeed meanwhile.
        for i in 0..<5 {
            let r = try await sv.startRun(s, ["command": .string("echo ok-\(i)"), "wait": true])
            #expect(r["exit_status"]?.intValue == 0)
            #expect(try await sv.output(r["id"]?.stringValue ?? "-") == "ok-\(i)\n")
        }
        // Every attacker is closed by the server (generous bound: 2 s and 3 s
        // are the timeouts).
        #expect(await eventually(within: 60) { slow.closedCount == 200 }, "slowloris closed: \(slow.closedCount) of 200")
        let answers = slow.answers
        #expect(answers.filter { $0.hasPrefix("HTTP/1.1 408") }.count == answers.count, "\(Set(answers.map { String($0.prefix(30)) }))")
        print("slowloris connections closed after \(slow.closeDelays.min() ?? -1) to \(slow.closeDelays.max() ?? -1) s (header_timeout 2 s)")
        for (name, fds) in [("silent", silent), ("mid-body", bodies), ("keep-alive", kept)] {
            var seen: [Int32: [UInt8]] = [:]
            let closed = await eventually(within: 60) {
                // Every one drained each time (allSatisfy would stop early).
                fds.map { fd in var b = seen[fd] ?? []; let c = drain(fd, into: &b); seen[fd] = b; return c }.allSatisfy { $0 }
            }
            #expect(closed, "\(name) connections are closed after idle_timeout")
            let texts = fds.map { String(decoding: seen[$0] ?? [], as: UTF8.self) }
            if name == "keep-alive" {
                // They had their answer, then the connection idled out.
                #expect(texts.allSatisfy { $0.hasPrefix("HTTP/1.1 200") }, "\(texts)")
            } else {
                #expect(texts.allSatisfy { $0.isEmpty }, "\(name): \(texts)")
            }
        }

        // The long requests all completed whole.
        #expect(try await followed == "line1\nline2\nline3\nline4\nline5\nline6\n")
        #expect(try await sessionEvents, "the session's event stream saw the run finish")
        #expect(try await tailEvents, "the tail saw the run finish")
        let w = try await waited
        #expect(w.status == 201 && w.json?["exit_status"]?.intValue == 0, "\(w.status) \(w.text)")
        #expect(try await uploaded == "HTTP/1.1 200")
        _ = try await sv.wait(cat)
        #expect(try await sv.output(cat) == "first\nsecond\n")
        #expect(try await sv.request("GET", "/v1/health").status == 200)
    }

    /// Follows an event stream until `run` finishes; whether it did.
    static func waitForEvent(_ client: APIClient, _ path: String, run: String) async throws -> Bool {
        var text = ""
        var seen = false
        try await client.stream("GET", path, onHead: { _, _ in }, onChunk: { chunk in
            text += String(decoding: chunk, as: UTF8.self)
            seen = text.components(separatedBy: "\n\n").contains { $0.contains("event: run.finished\n") && $0.contains(run) }
            return !seen
        })
        return seen
    }

    /// PUT /v1/runs/{id}/stdin with a chunked body sent in pieces, `pause`
    /// seconds apart; the answer's status line.
    static func pausingUpload(_ socketPath: String, run: String, pieces: [String], pause: Double) async throws -> String {
        let fd = connectUnix(socketPath)
        guard fd >= 0 else { throw TestFailure("connect") }
        defer { close(fd) }
        sendAll(fd, "PUT /v1/runs/\(run)/stdin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for (i, piece) in pieces.enumerated() {
            if i > 0 { try await Task.sleep(nanoseconds: UInt64(pause * 1e9)) }
            sendAll(fd, String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n")
        }
        sendAll(fd, "0\r\n\r\n")
        var tv = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(String(decoding: buf[0..<n], as: UTF8.self).prefix(12)) : "closed"
    }
}

/// Slowloris: connections that send a request head one byte every half
/// second, on a thread of their own; notes when the server closes each.
final class Trickler: @unchecked Sendable {
    private let lock = NSLock()
    private var fds: [Int32]
    private var opened_: [Int32: Date] = [:]
    private var closed: [Int32: (Date, String)] = [:]
    private var received: [Int32: [UInt8]] = [:]
    private var running = true
    private var finished = true
    let head = Array("GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Padding: ".utf8) + [UInt8](repeating: 97, count: 4000)

    /// Connects, and sends each connection its head's first byte.
    init(_ socketPath: String, count: Int) {
        fds = openUnixConnections(socketPath, count: count, within: 30)
        for fd in fds {
            opened_[fd] = Date()
            _ = withUnsafeBytes(of: head[0]) { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        }
    }

    var opened: Int { lock.withLock { fds.count } }
    var closedCount: Int { lock.withLock { closed.count } }
    var answers: [String] { lock.withLock { closed.values.map(\.1) } }
    var closeDelays: [Int] { lock.withLock { closed.map { Int($0.value.0.timeIntervalSince(opened_[$0.key]!)) } } }

    func start() {
        let t = Thread { [self] in
            defer { lock.withLock { finished = true } }
            var sent = 1
            while lock.withLock({ running && closed.count < fds.count }) && sent < head.count {
                for fd in lock.withLock({ fds }) where lock.withLock({ closed[fd] == nil }) {
                    var b = lock.withLock { received[fd] ?? [] }
                    let byte = head[sent]
                    let n = withUnsafeBytes(of: byte) { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    let gone = drain(fd, into: &b) || (n < 0 && errno != EAGAIN)
                    lock.withLock {
                        received[fd] = b
                        if gone { closed[fd] = (Date(), String(decoding: b, as: UTF8.self)) }
                    }
                }
                sent += 1
                usleep(500_000)
            }
        }
        lock.withLock { finished = false }
        t.start()
    }

    /// Stops the thread, then closes what is left.
    func stop() {
        lock.withLock { running = false }
        for _ in 0..<500 where !lock.withLock({ finished }) { usleep(10_000) }
        for fd in lock.withLock({ fds }) { close(fd) }
        lock.withLock { fds = [] }
    }
}

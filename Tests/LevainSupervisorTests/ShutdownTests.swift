import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Shutdown of the control API", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct ShutdownTests {
    @Test("SIGTERM with an open event stream, an abandoned tail and an abandoned output follower: the open stream ends cleanly, late requests get 503 (never 500), serve exits 0 within the grace and a few seconds")
    func streamsAtShutdown() async throws {
        let grace = 2.0
        let sv = try await TestSupervisor.start("shutdown", config: "shutdown_grace = \"2s\"\n")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let client = sv.client

        // A run that writes 32 MB and then sleeps past the grace: its
        // follower below stops reading, so the server's writes block.
        let big = try #require(try await sv.startRun(s, ["command": "head -c 32000000 /dev/zero; sleep 600"])["id"]?.stringValue)
        #expect(await eventually(within: 60) {
            ((try? await sv.request("GET", "/v1/runs/\(big)").json?["stdout_bytes"]?.intValue) ?? 0) >= 32_000_000
        })
        // Abandoned: a follower of that output that never reads, and a tail
        // of the whole log that never reads.
        let follower = connectUnix(sv.socket)
        let tail = connectUnix(sv.socket)
        defer { close(follower); close(tail) }
        #expect(follower >= 0 && tail >= 0)
        sendAll(follower, "GET /v1/runs/\(big)/output/stdout HTTP/1.1\r\nHost: x\r\n\r\n")
        sendAll(tail, "GET /v1/log/tail?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        // Open and read: the session's event stream.
        let events = EventCollector()
        let reader = Task {
            try await client.stream("GET", "/v1/sessions/\(s)/events", onHead: { _, _ in }, onChunk: { chunk in
                events.append(chunk)
                return true
            })
        }
        #expect(await eventually(within: 30) { events.text.contains("event: run.started") })
        try await Task.sleep(nanoseconds: 500_000_000)

        // Requests keep coming during the shutdown.
        let statuses = StatusLog()
        let poller = Task {
            while !Task.isCancelled {
                do {
                    let r = try await client.request("GET", "/v1/log/events?after_id=0&limit=5")
                    statuses.add(r.status, r.status == 200 ? "" : r.text)
                } catch {
                    if !FileManager.default.fileExists(atPath: sv.socket) { break }
                    statuses.add(-1, "\(error)")
                }
                try? await Task.sleep(nanoseconds: 50_000_000)
            }
        }

        let t0 = Date()
        kill(sv.pid, SIGTERM)
        var exited = false
        while Date().timeIntervalSince(t0) < grace + 30 {
            if sv.process?.isRunning == false { exited = true; break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let elapsed = Date().timeIntervalSince(t0)
        let status = sv.stop(signal: SIGKILL)
        poller.cancel()
        _ = await poller.value
        print("serve exited \(exited ? "by itself" : "only to SIGKILL") after \(String(format: "%.1f", elapsed)) s (grace \(grace) s), status \(status)")
        #expect(exited, "serve was still running \(Int(elapsed)) s after SIGTERM")
        #expect(status == 0)
        #expect(elapsed < grace + 15, "serve took \(elapsed) s to exit; the grace is \(grace) s")

        // The open stream ended cleanly (no error), after the shutdown's events.
        let ended = await reader.result
        if case .failure(let e) = ended { Issue.record("the event stream ended with \(e)") }
        #expect(events.text.contains("event: run.interrupted"), "\(events.text.suffix(600))")
        #expect(events.text.contains("event: session.interrupted"), "\(events.text.suffix(600))")

        // Late requests: answered 200 (during the grace) or 503 (after), never 500.
        let seen = statuses.all
        #expect(!seen.isEmpty)
        print("late requests: \(seen.count), by status: \(Dictionary(grouping: seen, by: \.0).mapValues(\.count)); errors: \(Array(Set(seen.filter { $0.0 < 0 }.map(\.1)).prefix(3)))")
        #expect(seen.allSatisfy { $0.0 == 200 || $0.0 == 503 || $0.0 < 0 }, "\(Set(seen.map { "\($0.0) \($0.1.prefix(120))" }))")
        #expect(seen.contains { $0.0 == 503 && $0.1.contains("shutting down") }, "no 503 seen: \(Set(seen.map { "\($0.0) \($0.1.prefix(120))" }))")
        #expect(seen.first?.0 == 200, "the API answers during the grace")

        // The log closed properly: it verifies, the run is recorded cancelled.
        let log = try sv.openLog()
        #expect(try log.verify().ok)
        #expect(try log.run(id: big)?.status == .cancelled)
    }
}

final class EventCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    func append(_ b: [UInt8]) { lock.withLock { bytes += b } }
    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }
}

final class StatusLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [(Int, String)] = []
    func add(_ status: Int, _ text: String) { lock.withLock { list.append((status, text)) } }
    var all: [(Int, String)] { lock.withLock { list } }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LevainPolicy
@testable import LevainProxy
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Bounds, lifecycle and other clients: what a hostile or sloppy jail
/// cannot get away with, and what the supervisor relies on.
@Suite("Egress: limits, lifecycle, clients")
struct EgressLimitsTests {
    /// A Python with requests: the gateway tests' venv (Tools/python-venv.sh),
    /// else python3 from PATH; nil skips the Python test.
    static let pythonWithRequests: String? = {
        let env = ProcessInfo.processInfo.environment
        let candidates = [env["LEVAIN_PYVENV"].map { "\($0)/bin/python" }, "/var/cache/levain/pyvenv/bin/python"]
            .compactMap { $0 } + (env["PATH"] ?? "").split(separator: ":").map { "\($0)/python3" }
        return candidates.first { path in
            guard FileManager.default.isExecutableFile(atPath: path) else { return false }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = ["-c", "import requests"]
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return false }
            p.waitUntilExit()
            return p.terminationStatus == 0
        }
    }()

    @Test("beyond maxConnections: 503 and close, recorded; capacity comes back when connections close")
    func connectionLimit() async throws {
        let fx = try await EgressFixture.start(limits: EgressLimits(maxConnections: 2))
        let a = try await EgressTools.connect(port: fx.proxyPort)
        let b = try await EgressTools.connect(port: fx.proxyPort)
        try await a.executeThenClose { _, _ in
            try await b.executeThenClose { _, _ in
                try await waitUntil { fx.proxy.openConnections == 2 }
                let third = try await EgressTools.raw(port: fx.proxyPort, Array("GET http://allowed.test/ HTTP/1.1\r\n\r\n".utf8))
                #expect(third.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n") && third.contains("x-levain-error: proxy.connections"))
            }
        }
        try await waitUntil { fx.proxy.openConnections == 0 }
        let again = try await EgressTools.curl(["-x", fx.proxyURL, "http://allowed.test:\(fx.upstreamPort)/headers"])
        #expect(again.status == 200)
        let records = try await fx.sink.wait(for: 2)
        #expect(records.map(\.rule) == ["proxy.connections", "network.allow"])
        #expect(records.first?.decision == .error && records.first?.status == 503)
        await fx.stop()
    }

    @Test("a head that does not complete in time gets 408; a silent connection is closed unrecorded")
    func headTimeout() async throws {
        let fx = try await EgressFixture.start(limits: EgressLimits(headTimeout: .seconds(1)))
        let partial = try await EgressTools.raw(port: fx.proxyPort, Array("GET http://allowed.test/ HTTP/1.1\r\nHost".utf8))
        #expect(partial.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        let silent = try await EgressTools.raw(port: fx.proxyPort, [])
        #expect(silent.isEmpty)
        let records = try await fx.sink.wait(for: 1)
        #expect(records.count == 1)
        #expect(records.first?.rule == "protocol" && records.first?.status == 408)
        await fx.stop()
    }

    @Test("an idle tunnel is closed after the idle timeout, and recorded with its bytes")
    func idleTunnel() async throws {
        let fx = try await EgressFixture.start(limits: EgressLimits(idleTimeout: .milliseconds(300)))
        let started = ContinuousClock.now
        let reply = try await EgressTools.raw(port: fx.proxyPort, Array("CONNECT a.ok.test:\(fx.upstreamPort) HTTP/1.1\r\n\r\n".utf8))
        #expect(reply == EgressAnswer.connectEstablished)
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        let records = try await fx.sink.wait(for: 1)
        #expect(records.count == 1)
        let rec = try #require(records.first)
        #expect(rec.decision == .allowed && rec.kind == "connect" && rec.status == 200 && rec.bytesUp == 0 && rec.bytesDown == 0)
        #expect(rec.message?.contains("idle") == true)
        await fx.stop()
    }

    @Test("a client that half-closes after its request still gets the whole response")
    func halfClose() async throws {
        let fx = try await EgressFixture.start()
        let request = "GET http://allowed.test:\(fx.upstreamPort)/bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n"
        let reply = try await EgressTools.raw(port: fx.proxyPort, Array(request.utf8), halfClose: true)
        #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n") && reply.contains("content-length: 100000\r\n"))
        #expect(reply.utf8.count > 100_000)
        let records = try await fx.sink.wait(for: 1)
        #expect(records.first?.bytesDown == 100_000)
        await fx.stop()
    }

    @Test("a client that does not read holds the upstream back (forward and tunnel): no whole-body buffering")
    func backpressure() async throws {
        let fx = try await EgressFixture.start()
        let size = 40_000_000
        let forward = "GET http://allowed.test:\(fx.upstreamPort)/bytes/\(size) HTTP/1.1\r\n\r\n"
        let tunnel = "CONNECT allowed.test:\(fx.upstreamPort) HTTP/1.1\r\n\r\nGET /bytes/\(size) HTTP/1.1\r\nHost: x\r\n\r\n"
        for request in [forward, tunnel] {
            let client = try await EgressTools.connect(port: fx.proxyPort)
            try await client.executeThenClose { _, outbound in
                try await outbound.write(ByteBuffer(string: request))
                try await Task.sleep(for: .milliseconds(250))  // and never read
            }
        }
        let records = try await fx.sink.wait(for: 2)
        #expect(records.map(\.kind) == ["http", "connect"])
        // What socket buffers and one high-water mark hold, far from all of it.
        #expect(records.allSatisfy { $0.bytesDown > 0 && $0.bytesDown < UInt64(size / 2) }, "\(records.map(\.bytesDown))")
        await fx.stop()
    }

    @Test("stop() closes the listener and the tunnels in progress, which are recorded")
    func stop() async throws {
        let fx = try await EgressFixture.start()
        let client = try await EgressTools.connect(port: fx.proxyPort)
        let received = try await client.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "CONNECT allowed.test:\(fx.upstreamPort) HTTP/1.1\r\n\r\n"))
            var iterator = inbound.makeAsyncIterator()
            var text = String(buffer: try #require(try await iterator.next()))
            fx.proxy.stop()
            while let more = try await iterator.next() { text += String(buffer: more) }
            return text
        }
        #expect(received == EgressAnswer.connectEstablished)
        let records = try await fx.sink.wait(for: 1)
        #expect(records.map(\.kind) == ["connect"])
        #expect(fx.proxy.openConnections == 0)
        try await fx.server.closeFuture.get()  // the listener too
        try? await fx.upstream.close()
    }

    @Test("serves on a socket bound and listening elsewhere (the supervisor's, in the jail's namespace)")
    func boundSocket() async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0 && listen(fd, 16) == 0)
        let fx = try await EgressFixture.start()
        let server = try await fx.proxy.serve(boundSocket: fd)
        let port = try #require(server.localAddress?.port)
        let r = try await EgressTools.curl(["-x", "http://run-fd:x@127.0.0.1:\(port)", "http://allowed.test:\(fx.upstreamPort)/headers"])
        #expect(r.status == 200 && r.text.contains("x-api-key: sekret-value"))
        let records = try await fx.sink.wait(for: 1)
        #expect(records.first?.proxyUser == "run-fd")
        await fx.stop()
        try await server.closeFuture.get()
    }

    @Test("rules are read per request: a change applies to the next one")
    func liveSettings() async throws {
        let upstream = try await EgressTestUpstream.start()
        let port = try #require(upstream.localAddress?.port)
        let settings = Mutex(EgressSettings(rules: EgressFixture.rules(port: port), hosts: ["allowed.test": ["127.0.0.1"]]))
        let sink = EgressRecordSink()
        let proxy = EgressProxy(group: MultiThreadedEventLoopGroup.singleton, settings: { settings.withLock { $0 } },
                                record: { sink.add($0) })
        let server = try await proxy.serve(host: "127.0.0.1", port: 0)
        let url = "http://allowed.test:\(port)/headers", via = "http://127.0.0.1:\(server.localAddress!.port!)"
        #expect(try await EgressTools.curl(["-x", via, url]).status == 200)
        settings.withLock { $0.rules.deny = [DomainPattern("allowed.test")!] }
        #expect(try await EgressTools.curl(["-x", via, url]).status == 403)
        #expect(try await sink.wait(for: 2).map(\.decision) == [.allowed, .denied])
        proxy.stop()
        try await upstream.close()
    }

    @Test("Python requests: http through the proxy, and a refused https tunnel it reports as 403",
          .enabled(if: EgressLimitsTests.pythonWithRequests != nil))
    func pythonRequests() async throws {
        let fx = try await EgressFixture.start()
        let script = """
            import sys, requests
            proxies = {"http": sys.argv[1], "https": sys.argv[1]}
            r = requests.get(sys.argv[2], proxies=proxies, timeout=5)
            print(r.status_code, r.headers.get("x-upstream"))
            print(r.text)
            try:
                requests.get(sys.argv[3], proxies=proxies, timeout=5)
            except requests.exceptions.ProxyError as e:
                print("refused:", e)
            """
        let r = try await EgressTools.run(try #require(Self.pythonWithRequests), [
            "-c", script, "http://run-py:secret@127.0.0.1:\(fx.proxyPort)",
            "http://allowed.test:\(fx.upstreamPort)/headers", "https://denied.test:\(fx.upstreamPort)/",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("200 yes\n"))
        #expect(r.stdout.contains("x-api-key: sekret-value") && !r.stdout.contains("proxy-authorization"))
        #expect(r.stdout.contains("refused:") && r.stdout.contains("403"))
        let records = try await fx.sink.wait(for: 2)
        // Two connections: their records need not come in request order.
        #expect(Set(records.map { "\($0.kind) \($0.rule)" }) == ["http network.allow", "connect network.deny"], "\(records)")
        #expect(records.count == 2 && records.allSatisfy { $0.proxyUser == "run-py" })
        await fx.stop()
    }

    private func waitUntil(_ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)  // a bound for a slow machine, not a speed check
        while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(condition())
    }
}

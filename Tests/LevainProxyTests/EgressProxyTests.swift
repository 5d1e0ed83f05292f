import Foundation
import LevainPolicy
@testable import LevainProxy
import NIOCore
import NIOPosix
import Testing

/// The proxy on real sockets, with curl (and Python requests) as the jail's
/// clients and a NIO origin server behind named hosts mapped to 127.0.0.1.
@Suite("Egress: proxy over real sockets")
struct EgressProxyTests {
    @Test("forward: the upstream gets the injected header, not Proxy-Authorization; the record says so")
    func forward() async throws {
        let fx = try await EgressFixture.start()
        let r = try await EgressTools.curl(["-x", fx.proxyURL, "-H", "X-Api-Key: jail-guess",
                                            "http://allowed.test:\(fx.upstreamPort)/headers?q=1"])
        #expect(r.status == 200, "\(r.stderr)")
        #expect(r.text.contains("x-api-key: sekret-value\n"))
        #expect(!r.text.contains("jail-guess"))
        #expect(!r.text.contains("proxy-authorization"))
        #expect(r.text.contains("host: allowed.test:\(fx.upstreamPort)\n"))
        #expect(r.header("connection") == "close")
        #expect(r.header("x-upstream") == "yes")
        let records = try await fx.sink.wait(for: 1)
        #expect(records.count == 1)
        let rec = try #require(records.first)
        #expect(rec.decision == .allowed && rec.rule == "network.allow" && rec.kind == "http" && rec.method == "GET")
        #expect(rec.host == "allowed.test" && rec.port == fx.upstreamPort && rec.address == "127.0.0.1")
        #expect(rec.status == 200 && rec.bytesDown == UInt64(r.body.count) && rec.bytesUp == 0)
        #expect(rec.proxyUser == "run-abc")
        await fx.stop()
    }

    @Test("forward: bodies stream both ways (content-length, chunked, 5 MB download, HEAD)")
    func forwardBodies() async throws {
        let fx = try await EgressFixture.start()
        let upload = try EgressTools.tempFile("upload")
        try Data(EgressTestUpstream.pattern(300_000)).write(to: upload)
        defer { try? FileManager.default.removeItem(at: upload) }
        let base = "http://a.ok.test:\(fx.upstreamPort)"
        let sized = try await EgressTools.curl(["-x", fx.proxyURL, "--data-binary", "@\(upload.path)", "\(base)/echo"])
        #expect(sized.status == 200 && sized.body == EgressTestUpstream.pattern(300_000), "\(sized.stderr) \(sized.headers)")
        let chunked = try await EgressTools.curl(["-x", fx.proxyURL, "-H", "Transfer-Encoding: chunked",
                                                  "--data-binary", "@\(upload.path)", "\(base)/echo"])
        #expect(chunked.status == 200 && chunked.body == EgressTestUpstream.pattern(300_000), "\(chunked.stderr) \(chunked.headers)")
        // With Expect: 100-continue the origin's 100 must come through (curl
        // would otherwise send the body after its own timeout; no timing is
        // asserted: the 100 in the answer's heads shows it was relayed).
        let expect = try await EgressTools.curl(["-x", fx.proxyURL, "--data-binary", "@\(upload.path)", "-H", "Expect: 100-continue",
                                                 "\(base)/echo"])
        #expect(expect.status == 200 && expect.body.count == 300_000 && expect.headers.contains("100 Continue"))
        let big = try await EgressTools.curl(["-x", fx.proxyURL, "\(base)/bytes/5000000"])
        #expect(big.status == 200 && big.body == EgressTestUpstream.pattern(5_000_000))
        let head = try await EgressTools.curl(["-x", fx.proxyURL, "-I", "\(base)/bytes/1000"])
        // -I prints the head as the output: nothing may follow it.
        #expect(head.status == 200 && head.header("content-length") == "1000" && head.text.hasSuffix("\r\n\r\n"))
        let chunks = try await EgressTools.curl(["-x", fx.proxyURL, "\(base)/chunked"])
        #expect(chunks.text == "one,two,three" && chunks.header("transfer-encoding") == "chunked")
        let records = try await fx.sink.wait(for: 6)
        #expect(records.count == 6)
        #expect(records.allSatisfy { $0.decision == .allowed && $0.status == 200 })
        #expect(records.filter { $0.method == "POST" }.map(\.bytesUp) == [300_000, 300_000, 300_000])
        #expect(records.contains { $0.bytesDown == 5_000_000 })
        #expect(records.first { $0.method == "HEAD" }?.bytesDown == 0)
        await fx.stop()
    }

    @Test("denied: deny beats allow, unknown names are not allowed, methods and ports are checked; 403 JSON")
    func denied() async throws {
        let fx = try await EgressFixture.start { $0.rules.methods = ["GET", "POST", "CONNECT"] }
        let deny = try await EgressTools.curl(["-x", fx.proxyURL, "http://denied.test:\(fx.upstreamPort)/headers"])
        #expect(deny.status == 403 && deny.header("x-levain-denied") == "network.deny")
        #expect(deny.header("content-type") == "application/json")
        #expect(deny.text.hasPrefix(#"{"error":"egress_denied","rule":"network.deny","host":"denied.test","port":\#(fx.upstreamPort),"message":"#))
        // A refused upload: the body is drained, so the 403 arrives instead of a reset.
        let upload = try EgressTools.tempFile("refused")
        try Data(EgressTestUpstream.pattern(2_000_000)).write(to: upload)
        defer { try? FileManager.default.removeItem(at: upload) }
        let other = try await EgressTools.curl(["-x", fx.proxyURL, "-H", "Expect:", "--data-binary", "@\(upload.path)",
                                                "http://other.test:\(fx.upstreamPort)/"])
        #expect(other.status == 403 && other.header("x-levain-denied") == "network.allow")
        let method = try await EgressTools.curl(["-x", fx.proxyURL, "-X", "DELETE", "http://allowed.test:\(fx.upstreamPort)/"])
        #expect(method.status == 403 && method.header("x-levain-denied") == "network.methods")
        let port = try await EgressTools.raw(port: fx.proxyPort, Array("CONNECT allowed.test:22 HTTP/1.1\r\nHost: allowed.test:22\r\n\r\n".utf8))
        #expect(port.hasPrefix("HTTP/1.1 403 Forbidden\r\n") && port.contains("x-levain-denied: network.ports\r\n"))
        #expect(port.contains(#""rule":"network.ports","host":"allowed.test","port":22"#))
        let tunnel = try await EgressTools.curl(["-p", "-x", fx.proxyURL, "http://allowed.test:22/"])
        #expect(tunnel.headers.hasPrefix("HTTP/1.1 403 Forbidden\r\n") && tunnel.headers.contains("x-levain-denied: network.ports"),
                "\(tunnel.headers) \(tunnel.stderr)")
        let records = try await fx.sink.wait(for: 5)
        #expect(records.map(\.rule) == ["network.deny", "network.allow", "network.methods", "network.ports", "network.ports"])
        #expect(records[1].method == "POST")
        #expect(records.allSatisfy { $0.decision == .denied && $0.status == 403 && $0.bytesUp == 0 && $0.bytesDown == 0 })
        #expect(records[3].kind == "connect" && records[3].method == "CONNECT" && records[3].proxyUser == nil)
        #expect(records[4].proxyUser == "run-abc")
        await fx.stop()
    }

    @Test("unmapped names and literals that reach loopback are refused (network.address); the mapped name gets through")
    func addressClass() async throws {
        let fx = try await EgressFixture.start { $0.rules.allow = [DomainPattern("*")!] }
        for host in ["localhost", "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "2130706433"] {
            let r = try await EgressTools.curl(["-x", fx.proxyURL, "http://\(host):\(fx.upstreamPort)/headers"])
            #expect(r.status == 403 && r.header("x-levain-denied") == "network.address", "\(host): \(r.text)")
            #expect(!r.text.contains("x-upstream"))
        }
        let control = try await EgressTools.curl(["-x", fx.proxyURL, "http://allowed.test:\(fx.upstreamPort)/headers"])
        #expect(control.status == 200)
        let records = try await fx.sink.wait(for: 6)
        #expect(records.count == 6)
        #expect(records.prefix(5).allSatisfy { $0.decision == .denied && $0.rule == "network.address" && $0.address == nil })
        #expect(records.last?.decision == .allowed)
        await fx.stop()
    }

    @Test("upstream unreachable: 502 dns for a name that does not resolve, connect for a closed port, network.hosts for a bad mapping")
    func unreachable() async throws {
        let closedPort = try await { () async throws -> Int in
            let ch = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
            let port = ch.localAddress!.port!
            try await ch.close()
            return port
        }()
        let fx = try await EgressFixture.start {
            $0.rules.allow = [DomainPattern("*")!]
            $0.rules.ports.append(closedPort)
        }
        let dns = try await EgressTools.curl(["-x", fx.proxyURL, "http://nonexistent.invalid:\(fx.upstreamPort)/"])
        #expect(dns.status == 502 && dns.header("x-levain-error") == "dns")
        #expect(dns.text.hasPrefix(#"{"error":"upstream_unreachable","rule":"dns","host":"nonexistent.invalid""#))
        let connect = try await EgressTools.curl(["-x", fx.proxyURL, "http://closed.test:\(closedPort)/"])
        #expect(connect.status == 502 && connect.header("x-levain-error") == "connect")
        let tunnel = try await EgressTools.raw(port: fx.proxyPort, Array("CONNECT closed.test:\(closedPort) HTTP/1.1\r\n\r\n".utf8))
        #expect(tunnel.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n") && tunnel.contains("x-levain-error: connect"))
        let mapping = try await EgressTools.curl(["-x", fx.proxyURL, "http://broken.test:\(fx.upstreamPort)/"])
        #expect(mapping.status == 502 && mapping.header("x-levain-error") == "network.hosts")
        let records = try await fx.sink.wait(for: 4)
        #expect(records.map(\.rule) == ["dns", "connect", "connect", "network.hosts"])
        #expect(records.allSatisfy { $0.decision == .error && $0.status == 502 })
        await fx.stop()
    }

    @Test("not proxy HTTP: garbage, origin-form, https:// URLs → 400 protocol; an oversized head → 431")
    func protocolErrors() async throws {
        let fx = try await EgressFixture.start { $0.maxHeadBytes = 4096 }
        let garbage = try await EgressTools.raw(port: fx.proxyPort, [0x16, 0x03, 0x01, 0x00, 0xff] + Array("garbage\r\n\r\n".utf8))
        #expect(garbage.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && garbage.contains(#""rule":"protocol""#))
        let origin = try await EgressTools.raw(port: fx.proxyPort, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(origin.hasPrefix("HTTP/1.1 400 ") && origin.contains("absolute-form"))
        let https = try await EgressTools.raw(port: fx.proxyPort, Array("GET https://allowed.test/ HTTP/1.1\r\n\r\n".utf8))
        #expect(https.hasPrefix("HTTP/1.1 400 ") && https.contains("CONNECT"))
        let big = try await EgressTools.curl(["-x", fx.proxyURL, "-H", "X-Big: \(String(repeating: "a", count: 10_000))",
                                              "http://allowed.test:\(fx.upstreamPort)/headers"])
        #expect(big.status == 431)
        let longURL = try await EgressTools.raw(port: fx.proxyPort, Array("GET http://allowed.test/\(String(repeating: "b", count: 20_000))".utf8))
        #expect(longURL.hasPrefix("HTTP/1.1 431 "))
        let records = try await fx.sink.wait(for: 5)
        #expect(records.count == 5)
        #expect(records.allSatisfy { $0.decision == .error && $0.rule == "protocol" })
        #expect(records.map(\.status) == [400, 400, 400, 431, 431])
        await fx.stop()
    }

    @Test("CONNECT: a 5 MB body each way through a tunnel, intact; bytes counted")
    func tunnel() async throws {
        let fx = try await EgressFixture.start()
        let size = 5 << 20
        let upload = try EgressTools.tempFile("tunnel")
        var data = Data(EgressTestUpstream.pattern(size))
        data[size / 2] = 0xFF  // not only the pattern: a misplaced block would show
        try data.write(to: upload)
        defer { try? FileManager.default.removeItem(at: upload) }
        let r = try await EgressTools.curl(["-p", "-x", fx.proxyURL, "--data-binary", "@\(upload.path)",
                                            "http://allowed.test:\(fx.upstreamPort)/echo"])
        #expect(r.status == 200, "\(r.stderr)")
        #expect(r.headers.contains("200 Connection Established"))
        #expect(r.body.count == size && Data(r.body) == data, "\(r.body.count) \(r.stderr) \(r.headers)")
        // Bytes sent right behind the CONNECT head (before the 200) are not lost.
        let early = try await EgressTools.raw(port: fx.proxyPort, Array(
            "CONNECT a.ok.test:\(fx.upstreamPort) HTTP/1.1\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a.ok.test\r\n\r\n".utf8))
        #expect(early.hasPrefix(EgressAnswer.connectEstablished + "HTTP/1.1 200 OK\r\n") && early.contains("three"), "\(early)")
        let records = try await fx.sink.wait(for: 2)
        #expect(records.count == 2)
        let rec = try #require(records.first { $0.host == "allowed.test" })
        #expect(rec.decision == .allowed && rec.kind == "connect" && rec.method == "CONNECT" && rec.status == 200)
        #expect(rec.host == "allowed.test" && rec.address == "127.0.0.1" && rec.proxyUser == "run-abc")
        #expect(rec.bytesUp > UInt64(size) && rec.bytesDown > UInt64(size))
        await fx.stop()
    }
}

import Foundation
import LevainPolicy
@testable import LevainProxy
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small origin server on 127.0.0.1 standing in for the internet:
///   /headers    the request's headers, one "name: value" a line
///   /echo       the request body back, as it arrives (chunked)
///   /bytes/N    N bytes of a fixed pattern (content-length)
///   /chunked    three chunks
/// Every response closes the connection.
final class EgressTestUpstream: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?
    private var echo = false

    static func start() async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false)
                    try channel.pipeline.syncOperations.addHandler(EgressTestUpstream())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    static let block = pattern(65536 + 251)

    /// 0, 1, ... 250, 0, 1, ...: a shift or a lost block shows.
    static func pattern(_ count: Int) -> [UInt8] {
        let block = (0..<251).map { UInt8($0) }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count { out.append(contentsOf: block.prefix(count - out.count)) }
        return out
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let h):
            head = h
            if h.headers["expect"].first?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
            if h.uri == "/echo" {
                echo = true
                var headers = HTTPHeaders()
                headers.add(name: "transfer-encoding", value: "chunked")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            }
        case .body(let buffer):
            if echo { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        case .end:
            if echo {
                finish(context)
            } else if let head {
                respond(context, head)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        var headers = HTTPHeaders()
        var chunks: [[UInt8]] = []
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if path == "/headers" {
            let text = head.headers.map { "\($0.name.lowercased()): \($0.value)\n" }.joined()
            chunks = [Array(text.utf8)]
        } else if head.uri.hasPrefix("/bytes/"), let n = Int(head.uri.dropFirst(7)) {
            // Cut from one cached block (the pattern repeats every 251 bytes):
            // an event loop shared with the proxies under test must not stall.
            chunks = stride(from: 0, to: n, by: 65536).map { offset in
                let start = offset % 251
                return Array(Self.block[start..<start + min(65536, n - offset)])
            }
        } else if head.uri == "/chunked" {
            chunks = [Array("one,".utf8), Array("two,".utf8), Array("three".utf8)]
        }
        if head.uri == "/chunked" {
            headers.add(name: "transfer-encoding", value: "chunked")
        } else {
            headers.add(name: "content-length", value: "\(chunks.reduce(0) { $0 + $1.count })")
        }
        headers.add(name: "x-upstream", value: "yes")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        if head.method != .HEAD {
            for chunk in chunks {
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: chunk)))), promise: nil)
            }
        }
        finish(context)
    }

    private func finish(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// The records a proxy reported, in order.
final class EgressRecordSink: Sendable {
    private let records = Mutex<[EgressRecord]>([])

    func add(_ r: EgressRecord) { records.withLock { $0.append(r) } }

    var all: [EgressRecord] { records.withLock { $0 } }

    /// Waits (up to 10 s) for `count` records, then a little longer to catch a duplicate.
    func wait(for count: Int) async throws -> [EgressRecord] {
        let deadline = ContinuousClock.now + .seconds(10)  // a bound for a slow machine, not a speed check
        while all.count < count && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(30))
        return all
    }
}

/// An upstream, a proxy in front of it, and the records: what each test needs.
struct EgressFixture {
    let upstream: any Channel
    let server: any Channel
    let proxy: EgressProxy
    let sink: EgressRecordSink
    var upstreamPort: Int { upstream.localAddress!.port! }
    var proxyPort: Int { server.localAddress!.port! }
    var proxyURL: String { "http://run-abc:x@127.0.0.1:\(proxyPort)" }

    /// allow allowed.test, *.ok.test, denied.test (and deny denied.test),
    /// all mapped to 127.0.0.1; ports 80, 443 and the upstream's;
    /// X-Api-Key injected for allowed.test.
    static func rules(port: Int) -> Policy.Egress {
        var rules = Policy.Egress()
        rules.allow = ["allowed.test", "*.ok.test", "denied.test"].compactMap(DomainPattern.init)
        rules.deny = ["denied.test", "*.bad.test"].compactMap(DomainPattern.init)
        rules.ports = [80, 443, port]
        rules.inject = [Policy.HeaderInjection(domain: DomainPattern("allowed.test")!, header: "X-Api-Key", secret: "api")]
        return rules
    }

    static func start(limits: EgressLimits = EgressLimits(),
                      adjust: @Sendable (inout EgressSettings) -> Void = { _ in }) async throws -> EgressFixture {
        let upstream = try await EgressTestUpstream.start()
        let port = upstream.localAddress!.port!
        var settings = EgressSettings(
            rules: rules(port: port),
            hosts: ["allowed.test": ["127.0.0.1"], "denied.test": ["127.0.0.1"], "a.ok.test": ["127.0.0.1"],
                    "closed.test": ["127.0.0.1"], "broken.test": ["not-an-address"]],
            secrets: ["api": "sekret-value"], connectTimeout: 1)
        adjust(&settings)
        let fixed = settings
        let sink = EgressRecordSink()
        let proxy = EgressProxy(group: MultiThreadedEventLoopGroup.singleton, limits: limits,
                                settings: { fixed }, record: { sink.add($0) })
        let server = try await proxy.serve(host: "127.0.0.1", port: 0)
        return EgressFixture(upstream: upstream, server: server, proxy: proxy, sink: sink)
    }

    func stop() async {
        proxy.stop()
        try? await upstream.close()
        try? await server.closeFuture.get()
    }
}

struct CurlResult {
    var status: Int
    var headers: String
    var body: [UInt8]
    var stderr: String
    var text: String { String(decoding: body, as: UTF8.self) }

    /// The last value of a response header (after a CONNECT, the origin's).
    func header(_ name: String) -> String? {
        headers.split(whereSeparator: \.isNewline).reversed().first {
            $0.lowercased().hasPrefix(name.lowercased() + ":")
        }.map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
    }
}

enum EgressTools {
    /// A fresh path in the temporary directory; callers remove the file.
    static func tempFile(_ name: String) throws -> URL {
        URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("levain-egress-\(UUID().uuidString)-\(name)")
    }

    /// Runs a program to completion without blocking the cooperative pool's
    /// threads on its exit; output goes to files (no pipe to fill up).
    static func run(_ path: String, _ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let out = try tempFile("stdout"), err = try tempFile("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        return (status, try String(contentsOf: out, encoding: .utf8), try String(contentsOf: err, encoding: .utf8))
    }

    static func curl(_ args: [String]) async throws -> CurlResult {
        let body = try tempFile("body"), headers = try tempFile("headers")
        defer { try? FileManager.default.removeItem(at: body); try? FileManager.default.removeItem(at: headers) }
        let r = try await run("/usr/bin/curl", ["-sS", "--max-time", "5", "-o", body.path, "-D", headers.path,
                                                "-w", "%{http_code}"] + args)
        return CurlResult(status: Int(r.stdout) ?? -1,
                          headers: (try? String(contentsOf: headers, encoding: .utf8)) ?? "",
                          body: Array((try? Data(contentsOf: body)) ?? Data()), stderr: r.stderr)
    }

    static func connect(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            // A 503 may come (and the proxy's side close) before the request is written.
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Writes `bytes` on a fresh connection to the proxy and reads until it closes.
    static func raw(port: Int, _ bytes: [UInt8], halfClose: Bool = false) async throws -> String {
        let channel = try await connect(port: port)
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            if halfClose { outbound.finish() }
            var received = ByteBuffer()
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
            return String(buffer: received)
        }
    }
}

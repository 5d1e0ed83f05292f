import AsyncHTTPClient
import Foundation
import Logging
import MCP
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// The MCP streamable-HTTP transport, client side, over async-http-client
/// (the swift-sdk's own needs URLSession). Every request goes through an
/// egress proxy of the supervisor's (the client's proxy setting), so the
/// server is reached under a policy's [network] rules and address checks,
/// and every connection is logged. Each POST's answer (JSON, or an SSE
/// stream of JSON-RPC messages) is fed to `receive()`; a refused or failed
/// exchange fails the transport.
actor HTTPMCPTransport: Transport {
    nonisolated let logger = Logger(label: "levain.mcp.http", factory: { _ in SwiftLogNoOpLogHandler() })
    private let client: HTTPClient
    private let url: String
    private let signal: FailureSignal
    /// The egress proxy's last refusal for this server, if any.
    private let denial: @Sendable () -> String?
    private var sessionID: String?
    private let stream: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    static let maxAnswer = 8 << 20

    struct Failed: Error, CustomStringConvertible { var description: String }

    init(client: HTTPClient, url: String, signal: FailureSignal, denial: @escaping @Sendable () -> String? = { nil }) {
        self.client = client
        self.denial = denial
        self.url = url
        self.signal = signal
        (stream, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
    }

    func connect() async throws {}

    func disconnect() async {
        continuation.finish()
    }

    func receive() -> AsyncThrowingStream<Data, any Error> { stream }

    /// Starts the exchange and returns: the answer comes through receive().
    func send(_ data: Data) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "accept", value: "application/json, text/event-stream")
        if let sessionID { request.headers.add(name: "mcp-session-id", value: sessionID) }
        request.body = .bytes(ByteBuffer(data: data))
        let client = self.client
        Task { await self.exchange(request, client: client) }
    }

    private func remember(_ id: String?) { if let id, sessionID == nil { sessionID = id } }

    private func fail(_ why: String) {
        signal.fail(why)
        continuation.finish(throwing: Failed(description: why))
    }

    private func exchange(_ request: HTTPClientRequest, client: HTTPClient) async {
        do {
            let response = try await client.execute(request, timeout: .seconds(3600))
            remember(response.headers.first(name: "mcp-session-id"))
            let status = Int(response.status.code)
            if status == 202 { return }
            guard (200..<300).contains(status) else {
                let body = String(buffer: (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer())
                if let rule = response.headers.first(name: "x-levain-denied") {
                    fail("the egress policy refused the server (\(rule)): \(body.prefix(300))")
                } else {
                    fail("HTTP \(status) from the server: \(body.prefix(300))")
                }
                return
            }
            let type = response.headers.first(name: "content-type")?.lowercased() ?? ""
            if type.hasPrefix("text/event-stream") {
                var pending = Data()
                var total = 0
                for try await chunk in response.body {
                    total += chunk.readableBytes
                    guard total <= Self.maxAnswer else { fail("an answer over \(Self.maxAnswer) bytes"); return }
                    pending.append(contentsOf: chunk.readableBytesView)
                    while let range = pending.range(of: Data("\n\n".utf8)) ?? pending.range(of: Data("\r\n\r\n".utf8)) {
                        let event = String(decoding: pending[..<range.lowerBound], as: UTF8.self)
                        pending.removeSubrange(..<range.upperBound)
                        // ("\r\n" is one Character: isNewline covers it.)
                        let lines = event.split(whereSeparator: \.isNewline)
                        let payload = lines.filter { $0.hasPrefix("data:") }.map { $0.dropFirst(5).drop(while: { $0 == " " }) }.joined(separator: "\n")
                        if !payload.isEmpty { continuation.yield(Data(payload.utf8)) }
                    }
                }
            } else {
                let body = try await response.body.collect(upTo: Self.maxAnswer)
                if body.readableBytes > 0 { continuation.yield(Data(body.readableBytesView)) }
            }
        } catch {
            if let denial = denial() {
                fail("the egress policy refused it: \(denial)")
            } else {
                fail("the exchange failed: \(error)")
            }
        }
    }
}


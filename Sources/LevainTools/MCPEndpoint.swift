#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LevainAgent
import LevainJSON
import LevainMCP
import LevainProxy
import LevainSessionLog
import MCP
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The session's tools as an MCP endpoint (streamable HTTP, JSON
/// responses, stateless) on 127.0.0.1:8792 inside the session's jail, for
/// agents of the user's own. The socket is the supervisor's (made in the
/// jail's network namespace, like the gateway's): every call goes through
/// the tool service, so it is scoped by the session's policy, gated on
/// approvals and logged, exactly like the built-in loop's. The path names
/// the run (`/runs/RUN/mcp`, in the run's LEVAIN_MCP_URL): its calls end
/// with the run. `/mcp` is the session's: its calls end when their client
/// hangs up (nobody waits for the answer), or with the session.
public final class MCPEndpoint: Sendable {
    public let sessionID: String
    private let supervisor: any ToolHost
    private let service: ToolService
    private let group: any EventLoopGroup
    private let live: RunsBox
    private let server = Mutex<(any Channel)?>(nil)
    static let maxConnections = 64
    private let connections = ConnectionLimit(max: maxConnections)
    static let maxBody = 4 << 20

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    public init(sessionID: String, supervisor: any ToolHost, service: ToolService, group: any EventLoopGroup, live: RunsBox) {
        self.sessionID = sessionID
        self.supervisor = supervisor
        self.service = service
        self.group = group
        self.live = live
    }

    public func serve(boundSocket fd: Int32) async throws {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .bind(fd) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        server.withLock { $0 = channel.channel }
        Task {
            await AcceptLoop.run(channel, limit: connections, handle: { await self.handle($0) },
                                 refuse: { try? await $0.channel.close() })
        }
    }

    public func stop() {
        let c = server.withLock { s -> (any Channel)? in defer { s = nil }; return s }
        c?.close(promise: nil)
    }

    private func handle(_ connection: Connection) async {
        let calls = service.calls
        let id = calls.newConnection()
        connection.channel.closeFuture.whenComplete { _ in calls.connectionClosed(id) }
        try? await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            while true {
                guard case .head(let head)? = try await iterator.next() else { return }
                var body = ByteBuffer()
                var tooLarge = false
                reading: while let part = try await iterator.next() {
                    switch part {
                    case .body(var chunk):
                        if body.readableBytes + chunk.readableBytes > Self.maxBody { tooLarge = true; break reading }
                        body.writeBuffer(&chunk)
                    case .end: break reading
                    case .head: return
                    }
                }
                let (status, headers, data) = tooLarge
                    ? (413, ["content-type": "application/json"], Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"request body over 4 MiB"}}"#.utf8))
                    : await answer(head, body, connection: id)
                var h = HTTPHeaders()
                for (k, v) in headers { h.add(name: k, value: v) }
                h.replaceOrAdd(name: "content-length", value: String(data.count))
                let keepAlive = head.isKeepAlive && !tooLarge
                if !keepAlive { h.replaceOrAdd(name: "connection", value: "close") }
                try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: h)))
                if !data.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: data)))) }
                try await outbound.write(.end(nil))
                if !keepAlive { return }
            }
        }
    }

    /// One JSON-RPC POST, answered by a fresh stateless MCP server (the
    /// protocol's state lives in the client; ids never collide across
    /// clients).
    private func answer(_ head: HTTPRequestHead, _ body: ByteBuffer, connection: UInt64) async -> (Int, [String: String], Data) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        var run: String? = nil
        if path.hasPrefix("/runs/") && path.hasSuffix("/mcp") {
            let id = String(path.dropFirst(6).dropLast(4))
            guard live.contains(id) else {
                return (404, ["content-type": "application/json"], Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no live run of this session under that path"}}"#.utf8))
            }
            run = id
        } else if path != "/mcp" {
            return (404, ["content-type": "application/json"], Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the MCP endpoint is POST /mcp or /runs/RUN/mcp"}}"#.utf8))
        }
        var headers: [String: String] = [:]
        for (k, v) in head.headers { headers[k] = v }
        let request = HTTPRequest(method: head.method.rawValue, headers: headers, body: Data(body.readableBytesView), path: path)
        let transport = StatelessHTTPServerTransport()
        let server = Server(name: "levain", version: "1", capabilities: .init(tools: .init(listChanged: false)))
        let service = self.service, supervisor = self.supervisor, session = sessionID, runID = run
        await server.withMethodHandler(ListTools.self) { _ in
            let caller = try await service.caller(supervisor: supervisor, session: session, run: runID, origin: "mcp")
            let tools = await service.definitions(policy: caller.policy).map {
                Tool(name: $0.name, description: $0.description, inputSchema: $0.inputSchema.mcp)
            }
            return .init(tools: tools)
        }
        await server.withMethodHandler(CallTool.self) { params in
            var caller = try await service.caller(supervisor: supervisor, session: session, run: runID, origin: "mcp")
            if runID == nil { caller.connection = connection }
            let args = JSONValue.object((params.arguments ?? [:]).mapValues(JSONValue.init(mcp:)))
            let call = ToolCallRequest(id: "mcp-" + ToolService.newCallID(), name: params.name, arguments: args.encoded())
            let outcome = await service.call(call, by: caller, supervisor: supervisor)
            return .init(content: [.text(text: outcome.text, annotations: nil, _meta: nil)], isError: outcome.isError)
        }
        do { try await server.start(transport: transport) } catch {
            return (500, ["content-type": "application/json"], Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the endpoint could not start"}}"#.utf8))
        }
        let response = await transport.handleRequest(request)
        await server.stop()
        return (response.statusCode, response.headers, response.bodyData ?? Data())
    }
}

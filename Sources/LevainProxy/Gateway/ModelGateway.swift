#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The model gateway of one session: OpenAI-compatible
/// `/v1/chat/completions` and `/v1/models`, Anthropic-compatible
/// `/v1/messages`, streaming and not. It names the run by the placeholder
/// key of its environment, applies the policy and the budgets, adds the
/// real key on the way out, passes the answer on chunk by chunk while it
/// reads the usage, and reports every exchange.
public final class ModelGateway: Sendable {
    public typealias Identify = @Sendable (_ apiKey: String) -> GatewayCaller?
    public typealias Record = @Sendable (ModelExchangeRecord) -> Void

    let group: any EventLoopGroup
    let client: HTTPClient
    let ledger: UsageLedger
    let settings: @Sendable () -> GatewaySettings
    let identify: Identify
    let record: Record
    private let server = Mutex<[any Channel]>([])
    private let connections = ConnectionLimit(max: maxConnections)

    /// Connections at once; past it a connection gets 503 and is closed.
    public static let maxConnections = 256
    /// A connection with no byte either way for this long is closed (long
    /// enough for a model that thinks before its first token).
    public static let idleTimeout = TimeAmount.seconds(300)

    public init(group: any EventLoopGroup, client: HTTPClient, ledger: UsageLedger,
                settings: @escaping @Sendable () -> GatewaySettings, identify: @escaping Identify, record: @escaping Record) {
        self.group = group
        self.client = client
        self.ledger = ledger
        self.settings = settings
        self.identify = identify
        self.record = record
    }

    /// Serves on an already bound, listening socket (made by the supervisor
    /// inside a jail's network namespace); the gateway owns it from now on.
    public func serve(boundSocket fd: Int32) async throws {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .bind(fd, childChannelInitializer: Self.childInitializer)
        start(channel)
    }

    /// Serves on host:port (tests, benchmarks); returns the bound port.
    @discardableResult
    public func serve(host: String, port: Int) async throws -> Int {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port, childChannelInitializer: Self.childInitializer)
        start(channel)
        return channel.channel.localAddress?.port ?? port
    }

    /// Serves on a Unix socket too (the supervisor's own agent loop: the
    /// same checks, budgets and log as a jail's client); the caller makes
    /// the directory private.
    public func serve(unixPath: String) async throws {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .bind(unixDomainSocketPath: unixPath, cleanupExistingSocketFile: true, childChannelInitializer: Self.childInitializer)
        start(channel)
    }

    /// Stops accepting; exchanges in progress finish on their own.
    public func stop() {
        let channels = server.withLock { s -> [any Channel] in defer { s = [] }; return s }
        for c in channels { c.close(promise: nil) }
    }

    /// How much of a too-large body is read and dropped before the 413.
    static let maxDiscard = 64 << 20

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    @Sendable
    static func childInitializer(_ channel: any Channel) -> EventLoopFuture<Connection> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: idleTimeout), IdleCloser()])
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            return try Connection(wrappingChannelSynchronously: channel)
        }
    }

    private func start(_ channel: NIOAsyncChannel<Connection, Never>) {
        server.withLock { $0.append(channel.channel) }
        Task {
            await AcceptLoop.run(channel, limit: connections, handle: { await self.handle($0) }, refuse: { await self.refuseBusy($0) })
        }
    }

    private func refuseBusy(_ connection: Connection) async {
        try? await connection.executeThenClose { _, outbound in
            let answer = GatewayAnswer(status: .serviceUnavailable, type: "overloaded_error",
                                       message: "more than \(Self.maxConnections) connections to the gateway at once",
                                       decision: .error, rule: "gateway.connections", extraHeaders: [("x-levain-error", "gateway.connections")])
            let body = answer.body(for: nil)
            try await outbound.write(.head(answer.head(for: nil, keepAlive: false, contentLength: body.readableBytes)))
            try await outbound.write(.body(.byteBuffer(body)))
            try await outbound.write(.end(nil))
        }
    }

    /// One connection: requests one after another (keep-alive).
    private func handle(_ connection: Connection) async {
        try? await connection.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            while true {
                guard case .head(let head)? = try await iterator.next() else { return }
                let limit = settings().maxBodyBytes
                var body = ByteBuffer()
                var tooLarge = false
                var discarded = 0
                reading: while let part = try await iterator.next() {
                    switch part {
                    case .body(var chunk):
                        if tooLarge || body.readableBytes + chunk.readableBytes > limit {
                            // Read on (bounded) so the client gets the 413
                            // rather than a reset while it is still sending.
                            tooLarge = true
                            body.clear()
                            discarded += chunk.readableBytes
                            if discarded > Self.maxDiscard { break reading }
                        } else {
                            body.writeBuffer(&chunk)
                        }
                    case .end: break reading
                    case .head: return
                    }
                }
                let exchange = GatewayExchange(gateway: self, head: head, body: body)
                let keepAlive = !tooLarge && head.isKeepAlive
                if tooLarge {
                    _ = await exchange.refuse(.invalid("request.size", "the request body is larger than \(limit) bytes (gateway.max_body of the supervisor's config)",
                                                   status: .payloadTooLarge), outbound: outbound, keepAlive: false)
                    return
                }
                let ok = await exchange.run(outbound: outbound, keepAlive: keepAlive)
                if !ok || !keepAlive { return }
            }
        }
    }
}

/// Closes a connection the IdleStateHandler found idle.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

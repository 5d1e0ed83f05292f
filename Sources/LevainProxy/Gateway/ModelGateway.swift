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
    private let server = Mutex<(any Channel)?>(nil)

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

    /// Stops accepting; exchanges in progress finish on their own.
    public func stop() {
        let channel = server.withLock { s -> (any Channel)? in defer { s = nil }; return s }
        channel?.close(promise: nil)
    }

    /// How much of a too-large body is read and dropped before the 413.
    static let maxDiscard = 64 << 20

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    @Sendable
    static func childInitializer(_ channel: any Channel) -> EventLoopFuture<Connection> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            return try Connection(wrappingChannelSynchronously: channel)
        }
    }

    private func start(_ channel: NIOAsyncChannel<Connection, Never>) {
        server.withLock { $0 = channel.channel }
        Task {
            try? await withThrowingDiscardingTaskGroup { tasks in
                try await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        tasks.addTask { await self.handle(connection) }
                    }
                }
            }
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

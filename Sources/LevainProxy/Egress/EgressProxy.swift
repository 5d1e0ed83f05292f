import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The bounds of one egress proxy: nothing a jail does grows without limit.
public struct EgressLimits: Sendable {
    /// Open jail connections at once; beyond, a 503 and close.
    public var maxConnections: Int
    /// From accept to a complete request head.
    public var headTimeout: TimeAmount
    /// No bytes either way on a connection (a tunnel, a slow upstream).
    public var idleTimeout: TimeAmount
    /// How long the jail gets to close its side after the proxy's last byte.
    public var linger: TimeAmount

    public init(maxConnections: Int = 256, headTimeout: TimeAmount = .seconds(10),
                idleTimeout: TimeAmount = .seconds(60), linger: TimeAmount = .seconds(2)) {
        self.maxConnections = maxConnections
        self.headTimeout = headTimeout
        self.idleTimeout = idleTimeout
        self.linger = linger
    }
}

/// The egress proxy of one jail: an HTTP/1.1 forward proxy on a socket in
/// the jail's network namespace. Plain `http://` requests are forwarded
/// (with the policy's injected headers), `CONNECT` becomes a byte tunnel;
/// both only after the policy allows the destination, and only to an
/// address the proxy resolved and checked itself. Every request or tunnel
/// is reported once through `record`. One request per jail connection
/// (`connection: close`); see EgressConnectionHandler.
public final class EgressProxy: Sendable {
    private let group: any EventLoopGroup
    private let limits: EgressLimits
    private let settings: @Sendable () -> EgressSettings
    private let record: @Sendable (EgressRecord) -> Void
    private let state = Mutex(Live())

    private struct Live: Sendable {
        var servers: [any Channel] = []
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Connections being refused (503, drained close): bounded too.
        var refusing = 0
        var stopped = false
    }

    /// `settings` is asked once per request, so rules can change while the
    /// proxy runs; `record` is called on event-loop threads.
    public init(group: any EventLoopGroup, limits: EgressLimits = EgressLimits(),
                settings: @escaping @Sendable () -> EgressSettings,
                record: @escaping @Sendable (EgressRecord) -> Void) {
        self.group = group
        self.limits = limits
        self.settings = settings
        self.record = record
    }

    /// Serves on an already bound (and listening) socket: the supervisor's,
    /// in the jail's network namespace. The proxy owns `fd` from here: it is
    /// closed with the returned channel, and by NIO when serving fails after
    /// adopting it (only a descriptor NIO cannot adopt at all, such as one
    /// that is not a socket, is left to the caller).
    @discardableResult
    public func serve(boundSocket fd: Int32) async throws -> any Channel {
        let channel = try await bootstrap().withBoundSocket(fd).get()
        return try adopt(channel)
    }

    /// Serves on host:port (tests, benchmarks); port 0 picks one, see the
    /// channel's localAddress.
    @discardableResult
    public func serve(host: String, port: Int) async throws -> any Channel {
        let channel = try await bootstrap()
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port).get()
        return try adopt(channel)
    }

    /// Stops accepting and closes every open connection (tunnels included):
    /// the jail behind it is going away.
    public func stop() {
        let channels = state.withLock { live -> [any Channel] in
            live.stopped = true
            defer { live.servers = []; live.connections = [:] }
            return live.servers + Array(live.connections.values)
        }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Open jail connections (tests, diagnostics).
    public var openConnections: Int { state.withLock { $0.connections.count } }

    private struct Stopped: Error, CustomStringConvertible {
        var description: String { "the egress proxy was stopped" }
    }

    private func adopt(_ server: any Channel) throws -> any Channel {
        let added = state.withLock { live -> Bool in
            if live.stopped { return false }
            live.servers.append(server)
            return true
        }
        guard added else {
            server.close(promise: nil)
            throw Stopped()
        }
        return server
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            // A tunnel passes half-closes through; see EgressGlueHandler.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in initialize(channel) }
    }

    private func initialize(_ channel: any Channel) -> EventLoopFuture<Void> {
        let id = ObjectIdentifier(channel)
        let limits = self.limits, settings = self.settings, record = self.record
        enum Admission { case admitted, refused, dropped }
        let admission = state.withLock { live -> Admission in
            if live.stopped { return .dropped }
            if live.connections.count < limits.maxConnections {
                live.connections[id] = channel
                return .admitted
            }
            // Refusals linger a moment each; past as many again, a flood
            // gets closed without an answer (or a record).
            guard live.refusing < limits.maxConnections else { return .dropped }
            live.refusing += 1
            return .refused
        }
        switch admission {
        case .admitted:
            break
        case .dropped:
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        case .refused:
            channel.closeFuture.whenComplete { [self] _ in state.withLock { $0.refusing -= 1 } }
            let answer = EgressAnswer.overloaded(limit: limits.maxConnections)
            record(EgressRecord(decision: .error, rule: answer.rule, method: "", kind: "http", host: "", port: 0,
                                status: answer.status, message: answer.message))
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(EgressRefusal(answer: answer, linger: limits.linger))
            }
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.connections.removeValue(forKey: id) }
        }
        return channel.eventLoop.makeCompletedFuture {
            let limiter = EgressHeadLimiter(limit: settings().maxHeadBytes)
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = limiter.limit
            decoderLimits.maxHeaderListSize = limiter.limit
            var encoding = HTTPResponseEncoder.Configuration()
            // The relayed response is framed by its own headers (EgressRules.jailHead).
            encoding.automaticallySetFramingHeaders = false
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
            try sync.addHandler(limiter)
            try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(
                leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop,
                limitConfiguration: decoderLimits)))
            try sync.addHandler(HTTPResponseEncoder(configuration: encoding))
            try sync.addHandler(EgressConnectionHandler(
                settings: settings, limits: limits, limiter: limiter, exchange: EgressExchange(sink: record)))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdCore
import LevainJSON
import LevainSessionLog
import Logging
import NIOCore
import Synchronization

/// The open-files limit of `levain serve`. Every connection to the control
/// API is a descriptor; at the usual soft limit (1024) a thousand idle
/// connections exhaust it, and a failing accept(2) leaves the listening
/// socket readable, so an event loop would wake up for it forever.
public enum OpenFilesLimit {
    /// Raises the soft limit to the hard one (a process may, without any
    /// privilege); returns the limit before and after. Jails set their own.
    @discardableResult
    public static func raiseSoftLimit() -> (before: UInt64, after: UInt64) {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 else { return (1024, 1024) }
        let before = UInt64(r.rlim_cur)
        var target = UInt64(r.rlim_max)
        // An unlimited hard limit still stops at the kernel's nr_open.
        if r.rlim_max == rlim_t.max {
            target = SupervisorServer.readSmallText("/proc/sys/fs/nr_open")
                .flatMap { $0.split(whereSeparator: \.isWhitespace).first }.flatMap { UInt64($0) } ?? 1 << 20
        }
        guard target > before else { return (before, before) }
        r.rlim_cur = rlim_t(target)
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 else { return (before, before) }
        return (before, target)
    }

    /// The current soft limit.
    public static var current: UInt64 {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 else { return 1024 }
        return UInt64(r.rlim_cur)
    }
}

/// The connections of one control-API listener: at most `limit` open at
/// once. A connection past it is answered 503 and closed at once, so the
/// supervisor never runs out of descriptors for its sessions and its log
/// because of clients, and never spins on a failing accept(2). Each open
/// connection is kept, so shutdown can close what is left.
public final class APIConnections: Sendable {
    /// "unix:/run/levain/levain.sock", "tcp:127.0.0.1:7480".
    public let listener: String
    public let limit: Int
    public let timeouts: ConnectionTimeouts

    private struct State {
        var open: [ObjectIdentifier: (channel: any Channel, since: NIODeadline)] = [:]
        var refused = 0
    }

    private let state = Mutex(State())

    public init(listener: String, limit: Int, timeouts: ConnectionTimeouts) {
        self.listener = listener
        self.limit = max(1, limit)
        self.timeouts = timeouts
    }

    /// The default `supervisor.max_connections` of each listener: what the
    /// open-files limit leaves after a reserve for everything else the
    /// supervisor opens (sessions' sockets and cgroups, output spools, the
    /// log: half the limit, at most 4096), shared by the listeners; between
    /// 16 and 16384.
    public static func defaultLimit(openFiles: UInt64, listeners: Int) -> Int {
        let files = Int(min(openFiles, 1 << 30))
        let reserve = min(files / 2, 4096)
        return min(16384, max(16, (files - reserve) / max(1, listeners)))
    }

    /// Whether `limit` connections per listener fit in `openFiles` beside
    /// the reserve of `defaultLimit`.
    public static func fits(_ limit: Int, openFiles: UInt64, listeners: Int) -> Bool {
        let files = Int(min(openFiles, 1 << 30))
        return limit * max(1, listeners) <= files - min(files / 2, 4096)
    }

    /// Counts a new connection in; false when the listener is full (the
    /// connection is then refused).
    func admit(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLock { s in
            guard s.open.count < limit else {
                s.refused += 1
                return false
            }
            s.open[id] = (channel, .now())
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in
                _ = self.state.withLock { $0.open.removeValue(forKey: id) }
            }
        }
        return admitted
    }

    /// Connections open now.
    public var openCount: Int { state.withLock { $0.open.count } }
    /// Connections refused because the listener was full, since the start.
    public var refusedCount: Int { state.withLock { $0.refused } }

    /// Closes every connection still open that was opened before `before`
    /// (the end of a shutdown: younger ones only get a 503, and end).
    public func closeAll(openedBefore before: NIODeadline = .distantFuture) {
        let old = state.withLock { s in s.open.values.filter { $0.since < before }.map(\.channel) }
        for channel in old { channel.close(promise: nil) }
    }

    /// The HTTP/1.1 server of this listener: Hummingbird's, with each
    /// connection counted in (or refused) before it is served.
    func serverBuilder() -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(http1: HTTP1Channel(responder: responder), connections: self)
        }
    }

    /// Installs AcceptPause on a listener's server channel (onServerRunning).
    static func installAcceptPause(on channel: any Channel, listener: String) async {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(AcceptPause(listener: listener), position: .first)
        }.get()
    }
}

/// Hummingbird's HTTP/1.1 child channel behind APIConnections: a connection
/// over the listener's limit gets the 503 of RefuseConnection instead of
/// HTTP service; an admitted one gets its timeouts (ConnectionTimer, with
/// RequestPhases behind the HTTP decoder).
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel
    let connections: APIConnections

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admitted = connections.admit(channel)
        let limit = connections.limit
        let timeouts = connections.timeouts
        return http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            guard admitted else {
                try pipeline.addHandler(RefuseConnection(limit: limit), position: .first)
                return value
            }
            let timer = ConnectionTimer(timeouts)
            try pipeline.addHandler(timer, position: .first)
            // Between the HTTP decoding and Hummingbird's connection state.
            let state = try pipeline.handler(type: HTTPConnectionStateHandler.self)
            try pipeline.addHandler(RequestPhases(timer), position: .before(state))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        // A refused connection is closed by its RefuseConnection: the
        // HTTP loop sees the end of its input at once.
        await http1.handle(value: value, logger: logger)
    }
}

/// First in a refused connection's pipeline: answers 503 to the client's
/// first bytes (an answer before the request confuses HTTP clients) and
/// closes; a client that sends nothing within a second is closed without
/// one. Nothing it sends reaches HTTP.
final class RefuseConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let silence = TimeAmount.seconds(1)
    let limit: Int
    private var answered = false
    private var timer: Scheduled<Void>?

    init(limit: Int) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.silence) {
            self.answered = true
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        timer?.cancel()
        timer = nil
        let body = JSONValue.object(["error": ["code": "unavailable", "field": "connection",
                                               "message": .string("too many connections: this listener already holds its \(limit) (supervisor.max_connections); close some, or try again")]]).encoded() + "\n"
        let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        let buffer = context.channel.allocator.buffer(string: head + body)
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// First on a listener's server channel: when accept(2) fails for want of
/// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), stops reading
/// the listening socket for a moment. NIO's own AcceptBackoffHandler only
/// delays the next read request, while the socket stays registered for
/// readability and keeps waking the event loop (it is level-triggered and
/// the connection stays queued): a busy loop. Turning autoRead off takes
/// the socket out of the poll set until it is turned on again.
final class AcceptPause: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    static let pause = TimeAmount.milliseconds(500)
    let listener: String
    private var paused = false
    private var reported: NIODeadline? = nil

    init(listener: String) { self.listener = listener }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let e = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(e.errnoCode), !paused {
            paused = true
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
            let now = NIODeadline.now()
            if reported.map({ now - $0 > .seconds(60) }) ?? true {
                reported = now
                let line = "levain: \(listener): cannot accept a connection: \(String(cString: strerror(e.errnoCode))); pausing accepts (\(OpenFilesLimit.current) open files allowed)\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
            context.eventLoop.assumeIsolated().scheduleTask(in: Self.pause) {
                self.paused = false
                try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
            }
        }
        context.fireErrorCaught(error)
    }
}

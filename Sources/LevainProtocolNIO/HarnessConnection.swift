#if canImport(Glibc)
import Glibc
#endif
import LevainClock
import LevainProtocol
import NIOCore
import NIOPosix

/// Why a harness connection ended.
public enum HarnessEnd: Sendable, Equatable {
    /// The harness broke docs/PROTOCOL.md: the session ends, its jail is killed.
    case violation(ProtocolViolation)
    /// The socket closed (the harness died, or the session closed it).
    case closed
}

public struct HarnessError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// How the connection ended, when that is the error.
    public var end: HarnessEnd? = nil
    public var description: String { message }
}

/// The supervisor's end of one harness connection on swift-nio: framing
/// with a bounded buffer, every message through SupervisorConnectionState,
/// requests matched to responses, streams with credit, heartbeats. All
/// state lives on the channel's event loop; the async methods hop there.
public final class HarnessConnection: @unchecked Sendable {
    public let channel: Channel
    let handler: HarnessHandler

    /// Connects to the supervisor's end of the protocol socketpair (NIO
    /// takes the fd) and waits for the handshake.
    public static func open(fd: Int32, session: String, group: EventLoopGroup, maxFrame: Int, window: Int,
                            heartbeatMillis: Int, onEvent: @escaping @Sendable (Event) -> Void,
                            onEnd: @escaping @Sendable (HarnessEnd) -> Void) async throws -> HarnessConnection {
        let limit = ProtocolFrameLimit()
        let welcome = Welcome(protocolVersion: ProtocolLimits.protocolVersion, maxFrame: maxFrame,
                              heartbeatMillis: heartbeatMillis, window: UInt32(window), session: session)
        // The handler is kept as it is made, not looked up in the pipeline
        // afterwards: a harness that breaks the protocol at once (an
        // oversized HELLO) has its channel closed and its handlers removed
        // before a lookup could run, and the lookup's `notFound` would hide
        // the violation the handler recorded.
        let made = MadeHandler()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: false)
            // Bulk output comes in frames of up to max_frame: read big.
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: maxFrame + 4096))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addLevainProtocolHandlers(limit: limit, largestMaxFrame: maxFrame)
                    let handler = HarnessHandler(limit: limit, welcome: welcome, onEvent: onEvent, onEnd: onEnd)
                    made.handler = handler
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .withConnectedSocket(fd).get()
        guard let handler = made.handler else { throw HarnessError(message: "the protocol handler was not installed") }
        let connection = HarnessConnection(channel: channel, handler: handler)
        try await connection.awaitHandshake(timeoutMillis: ProtocolLimits.handshakeTimeoutMillis)
        return connection
    }

    /// The handler made by the channel initializer (on the event loop),
    /// read after the bootstrap's future completed (which orders the two).
    private final class MadeHandler: @unchecked Sendable {
        var handler: HarnessHandler?
    }

    private init(channel: Channel, handler: HarnessHandler) {
        self.channel = channel
        self.handler = handler
    }

    private func awaitHandshake(timeoutMillis: Int) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { self.handler.whenEstablished(promise) }
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeoutMillis))) {
            promise.fail(HarnessError(message: "no HELLO from the harness within \(timeoutMillis) ms"))
        }
        defer { timeout.cancel() }
        try await promise.futureResult.get()
    }

    /// Sends a request and waits for its response.
    public func request(_ operation: Operation) async throws -> Response {
        try await start(operation).get()
    }

    /// Queues a request now and returns its response's future: whatever is
    /// sent on the connection after this call goes after the request (a
    /// file.write's DATA must follow the request that opens its stream).
    public func start(_ operation: Operation) -> EventLoopFuture<Response> {
        let promise = channel.eventLoop.makePromise(of: Response.self)
        channel.eventLoop.execute { self.handler.send(operation, promise) }
        return promise.futureResult
    }

    /// Registers where an inbound stream's data goes. `sink` and `end` run
    /// on the event loop; credit returns to the harness as soon as `sink`
    /// returns, so it must not block long (a file write is fine).
    public func receive(stream: StreamID, sink: @escaping @Sendable ([UInt8]) -> Void, end: @escaping @Sendable () -> Void) {
        channel.eventLoop.execute { self.handler.sinks[stream] = (sink, end) }
    }

    /// Stops reading an inbound stream (data still in flight is dropped).
    public func abandon(stream: StreamID) {
        channel.eventLoop.execute {
            self.handler.sinks[stream] = nil
            self.handler.state.closeInbound(stream: stream)
        }
    }

    /// Sends bytes on an outbound stream (stdin, a file.write), within the
    /// harness's credit; returns once they are handed to the socket.
    public func send(_ bytes: [UInt8], on stream: StreamID) async throws {
        guard !bytes.isEmpty else { return }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { self.handler.enqueue(bytes, on: stream, promise) }
        try await promise.futureResult.get()
    }

    /// Ends an outbound stream (after everything queued on it).
    public func end(stream: StreamID) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { self.handler.enqueueEnd(on: stream, promise) }
        try await promise.futureResult.get()
    }

    public func close() {
        channel.close(promise: nil)
    }
}

/// Lives on the channel's event loop.
final class HarnessHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Message
    typealias OutboundOut = Message

    let limit: ProtocolFrameLimit
    let welcome: Welcome
    let onEvent: @Sendable (Event) -> Void
    let onEnd: @Sendable (HarnessEnd) -> Void
    var state: SupervisorConnectionState
    var context: ChannelHandlerContext?
    var established: EventLoopPromise<Void>?
    var isEstablished = false
    var ended = false
    /// Why it ended, for a handshake waiter that comes after the end.
    private var endError: HarnessError?
    var nextRequestID: UInt64 = 1
    var pending: [UInt64: EventLoopPromise<Response>] = [:]
    var sinks: [StreamID: (@Sendable ([UInt8]) -> Void, @Sendable () -> Void)] = [:]
    struct Outbound {
        var queue: [([UInt8], EventLoopPromise<Void>?)] = []
        var endPromise: EventLoopPromise<Void>?
    }
    var outbound: [StreamID: Outbound] = [:]
    var heartbeat: RepeatedTask?

    init(limit: ProtocolFrameLimit, welcome: Welcome, onEvent: @escaping @Sendable (Event) -> Void,
         onEnd: @escaping @Sendable (HarnessEnd) -> Void) {
        self.limit = limit
        self.welcome = welcome
        self.onEvent = onEvent
        self.onEnd = onEnd
        self.state = SupervisorConnectionState(now: Monotonic.nanos())
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let period = TimeAmount.milliseconds(Int64(max(50, welcome.heartbeatMillis / 2)))
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        heartbeat = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            bound.value.tick()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        heartbeat?.cancel()
        self.context = nil
    }

    func whenEstablished(_ promise: EventLoopPromise<Void>) {
        if isEstablished {
            promise.succeed(())
        } else if let endError {
            // Ended before anyone waited (a HELLO-less harness can break the
            // protocol at once): the waiter gets the same reason.
            promise.fail(endError)
        } else if ended {
            promise.fail(HarnessError(message: "the harness is gone"))
        } else {
            established = promise
        }
    }

    /// Answers written while reading a batch of frames, flushed once at
    /// the batch's end (channelReadComplete): a syscall per batch, not per
    /// PONG or window update, so a harness's frames are read as fast as it
    /// sends them and a flood is seen as one.
    private var flushPending = false

    private func write(_ message: Message, flush: Bool = true) -> Bool {
        guard let context, !ended else { return false }
        do {
            try state.willSend(message, now: Monotonic.nanos())
        } catch {
            return false
        }
        if flush {
            context.writeAndFlush(wrapOutboundOut(message), promise: nil)
        } else {
            context.write(wrapOutboundOut(message), promise: nil)
            flushPending = true
        }
        return true
    }

    /// When the frames being read arrived: one time for every frame of a
    /// read batch (they were in the socket together). The frame rate limits
    /// then measure how fast the harness sent, not how fast this process
    /// got to them: a burst read at once is a burst, however slowly a
    /// loaded supervisor decodes it.
    private var readBatchTime: UInt64?

    private func arrivalTime() -> UInt64 {
        if let t = readBatchTime { return t }
        let t = Monotonic.nanos()
        readBatchTime = t
        return t
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readBatchTime = nil
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func send(_ operation: Operation, _ promise: EventLoopPromise<Response>) {
        guard !ended, isEstablished else {
            promise.fail(HarnessError(message: "the harness is not connected"))
            return
        }
        let id = nextRequestID
        nextRequestID += 1
        let request = Message.request(Request(id: id, operation: operation))
        do {
            try state.willSend(request, now: Monotonic.nanos())
        } catch {
            promise.fail(HarnessError(message: "cannot send \(operation.kind.rawValue): \(error)"))
            return
        }
        pending[id] = promise
        context?.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    func enqueue(_ bytes: [UInt8], on stream: StreamID, _ promise: EventLoopPromise<Void>) {
        outbound[stream, default: Outbound()].queue.append((bytes, promise))
        pump(stream)
    }

    func enqueueEnd(on stream: StreamID, _ promise: EventLoopPromise<Void>) {
        outbound[stream, default: Outbound()].endPromise = promise
        pump(stream)
    }

    private func pump(_ stream: StreamID) {
        guard var out = outbound[stream] else { return }
        while !out.queue.isEmpty {
            guard let credit = state.credit(forOutbound: stream) else {
                // The harness no longer takes this stream (the run ended): drop.
                for (_, p) in out.queue { p?.succeed(()) }
                out.queue = []
                break
            }
            guard credit > 0 else { break }
            var (bytes, promise) = out.queue[0]
            let n = min(Int(credit), bytes.count, max(1024, limit.maxFrame - 16))
            let chunk = Array(bytes[0..<n])
            guard write(.data(stream: stream, bytes: chunk)) else { break }
            if n == bytes.count {
                out.queue.removeFirst()
                promise?.succeed(())
            } else {
                bytes.removeFirst(n)
                out.queue[0] = (bytes, promise)
            }
        }
        if out.queue.isEmpty, let end = out.endPromise {
            _ = state.credit(forOutbound: stream) != nil ? write(.data(stream: stream, bytes: [])) : true
            end.succeed(())
            outbound[stream] = nil
            return
        }
        outbound[stream] = out
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        let action: SupervisorConnectionState.Action?
        do {
            action = try state.receive(message, now: arrivalTime())
        } catch {
            fail(error, context: context)
            return
        }
        guard let action else { return }
        switch action {
        case .answerHello:
            var welcome = self.welcome
            if let hello = state.hello, let version = SupervisorConnectionState.version(answering: hello) {
                welcome.protocolVersion = version
            }
            if write(.welcome(welcome)) {
                limit.maxFrame = welcome.maxFrame
                isEstablished = true
                established?.succeed(())
                established = nil
            } else {
                fail(ProtocolViolation(.handshake, "no common protocol version with the harness"), context: context)
            }
        case .deliverResponse(let response, _):
            pending.removeValue(forKey: response.id)?.succeed(response)
        case .deliverEvent(let event):
            onEvent(event)
            if case .processExited = event {
                // Its stdin is retired: what is queued on it is dropped
                // and its writers resume, rather than wait for a WINDOW
                // that will never come.
                for stream in outbound.keys where state.credit(forOutbound: stream) == nil { pump(stream) }
            }
        case .deliverData(let stream, let bytes):
            if let sink = sinks[stream] { sink.0(bytes) }
            if let window = state.consumed(stream: stream, bytes: bytes.count) { _ = write(window, flush: false) }
        case .endOfStream(let stream):
            if let sink = sinks.removeValue(forKey: stream) { sink.1() }
        case .creditAvailable(let stream, _):
            pump(stream)
        case .sendPong(let nonce):
            _ = write(.pong(nonce: nonce), flush: false)
        }
    }

    private func tick() {
        guard let context, !ended else { return }
        do {
            if let ping = try state.tick(now: Monotonic.nanos()) { _ = write(ping) }
        } catch {
            fail(error, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let v = error as? ProtocolViolation, v.code == .truncatedFrame {
            // The connection ended inside a frame: the harness died (killed
            // mid-write), which is what its session's log must say.
            guard !ended else { return }
            finish(.closed)
            context.close(promise: nil)
        } else if let v = error as? ProtocolViolation {
            fail(v, context: context)
        } else {
            // Any other decoding error (an oversized cumulation buffer) is the
            // harness's fault too.
            fail(ProtocolViolation(.oversizedFrame, "\(error)"), context: context)
        }
    }

    private func fail(_ violation: ProtocolViolation, context: ChannelHandlerContext) {
        guard !ended else { return }
        finish(.violation(violation))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.closed)
        context.fireChannelInactive()
    }

    private func finish(_ end: HarnessEnd) {
        guard !ended else { return }
        ended = true
        heartbeat?.cancel()
        let error: HarnessError
        switch end {
        case .closed: error = HarnessError(message: "the harness connection closed", end: end)
        case .violation(let v): error = HarnessError(message: "protocol violation: \(v)", end: end)
        }
        endError = error
        established?.fail(error)
        established = nil
        for (_, p) in pending { p.fail(error) }
        pending = [:]
        for (_, out) in outbound {
            for (_, p) in out.queue { p?.fail(error) }
            out.endPromise?.fail(error)
        }
        outbound = [:]
        for (_, sink) in sinks { sink.1() }
        sinks = [:]
        onEnd(end)
    }
}

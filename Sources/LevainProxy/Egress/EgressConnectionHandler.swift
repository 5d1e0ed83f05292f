import NIOCore
import NIOHTTP1

/// One jail connection: reads one request head, decides, resolves,
/// connects, then either forwards the request (and relays the response)
/// or turns the connection into a tunnel. One request per connection:
/// every response says `connection: close`, which keeps the decision,
/// the record and the upstream connection one-to-one with a request.
final class EgressConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        case awaitingHead
        /// Allowed by the policy; resolving and connecting. Reads are held.
        case preparing
        case forwarding
        /// Handed over to the glue handlers.
        case tunnel
        /// The proxy answered on its own; draining until the jail closes.
        case answered
        /// The response is relayed; closing.
        case done
    }

    let settings: @Sendable () -> EgressSettings
    let limits: EgressLimits
    let limiter: EgressHeadLimiter
    let exchange: EgressExchange
    var state = State.awaitingHead
    var context: ChannelHandlerContext?
    private var headTimer: Scheduled<Void>?
    var pendingRead = false
    /// Body parts read while preparing; bounded because reads are held.
    var pendingParts: [HTTPServerRequestPart] = []
    var requestHead: HTTPRequestHead?
    var requestEnded = false
    var responseStarted = false
    var upstream: (any Channel)?
    var relay: EgressUpstreamRelay?

    init(settings: @escaping @Sendable () -> EgressSettings, limits: EgressLimits, limiter: EgressHeadLimiter,
         exchange: EgressExchange) {
        self.settings = settings
        self.limits = limits
        self.limiter = limiter
        self.exchange = exchange
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let exchange = self.exchange
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in exchange.end() }
        headTimer = context.eventLoop.assumeIsolated().scheduleTask(in: limits.headTimeout) { [self] in
            guard state == .awaitingHead else { return }
            if limiter.seen > 0 {
                answer(.badRequest("no complete request head within \(limits.headTimeout.nanoseconds / 1_000_000_000) s",
                                   status: 408, reason: "Request Timeout"))
            } else {
                self.context?.close(promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headTimer?.cancel()
        self.context = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = Self.unwrapInboundIn(data)
        switch (state, part) {
        case (.awaitingHead, .head(let head)):
            received(head, context: context)
        case (.preparing, .body), (.preparing, .end):
            pendingParts.append(part)
        case (.forwarding, _):
            forward(part)
        default:
            // A second (pipelined) request, or anything after an answer:
            // dropped, the connection closes after the first response.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if state == .forwarding { relay?.flush() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .awaitingHead where limiter.seen > 0:
            exchange.finish(.badRequest("the connection closed before a complete request head"))
        case .preparing:
            exchange.note("the client closed before the upstream answered")
        case .forwarding:
            exchange.note("the client closed before the response ended")
        default:
            break
        }
        state = .done
        upstream?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The jail half-closed: fine once a request is under way (its
            // response still goes out), the end otherwise.
            switch state {
            case .awaitingHead, .answered, .done: context.close(promise: nil)
            default: break
            }
        } else if event is IdleStateHandler.IdleStateEvent {
            if state == .forwarding || state == .preparing { exchange.note("closed after the idle timeout") }
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .awaitingHead where !(error is HTTPParserError || error is ByteToMessageDecoderError || error is EgressHeadLimiter.TooLarge):
            // A reset or another I/O error: nothing to answer.
            context.close(promise: nil)
        case .awaitingHead:
            if error is EgressHeadLimiter.TooLarge || (error as? HTTPParserError) == .headerOverflow {
                answer(.badRequest("the request head is larger than \(limiter.limit) bytes",
                                   status: 431, reason: "Request Header Fields Too Large"))
            } else {
                answer(.badRequest("not an HTTP proxy request (\(Self.describe(error))); send absolute-form requests (GET http://host/path) or CONNECT host:port"))
            }
        case .preparing, .forwarding:
            exchange.note("the request from the client was malformed: \(Self.describe(error))")
            context.close(promise: nil)
        case .tunnel, .answered, .done:
            break
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? ByteToMessageDecoderError, case .dataReceivedInErrorState(let inner, _) = e {
            return "\(inner)"
        }
        return "\(error)"
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { relay?.jailBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: outbound

    /// Holds the jail's reads while the upstream is being set up or cannot
    /// take more: the request body then waits in the jail's socket.
    func read(context: ChannelHandlerContext) {
        switch state {
        case .preparing:
            pendingRead = true
        case .forwarding where !(relay?.isWritable ?? true):
            pendingRead = true
        default:
            context.read()
        }
    }

    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }

    // MARK: the request

    private func received(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        headTimer?.cancel()
        limiter.headComplete = true
        requestHead = head
        let isConnect = head.method == .CONNECT
        exchange.begin(method: head.method.rawValue, kind: isConnect ? "connect" : "http",
                       proxyUser: EgressRules.proxyUser(head.headers))
        let target: EgressTarget
        do {
            target = isConnect ? try EgressTarget.connect(head.uri) : try EgressTarget.absolute(head.uri)
        } catch {
            answer(.badRequest(error.message))
            return
        }
        exchange.target(host: target.host, port: target.port)
        let settings = self.settings()
        if let denial = EgressRules.denial(method: head.method.rawValue, host: target.host, port: target.port,
                                           rules: settings.rules) {
            answer(.denied(denial.rule, host: target.host, port: target.port, message: denial.message))
            return
        }
        state = .preparing
        let loop = context.eventLoop
        let timeout = TimeAmount.milliseconds(Int64(max(0.001, settings.connectTimeout) * 1000))
        EgressResolver.resolve(host: target.host, port: target.port, settings: settings, on: loop, timeout: timeout)
            .flatMap { addresses in
                EgressResolver.connect(addresses, host: target.host, port: target.port, on: loop, timeout: timeout,
                                       tunnel: isConnect)
            }
            .assumeIsolated()
            .whenComplete { [self] result in
                upstreamReady(result, target: target, settings: settings)
            }
    }

    /// Answers on the proxy's own behalf, reports, and closes: the answer is
    /// written raw (the encoder leaves first), then the write side closes
    /// and what the jail still sends is drained for a moment, so the jail
    /// reads the answer instead of a reset.
    func answer(_ answer: EgressAnswer) {
        switch state {
        case .answered, .done, .tunnel: return
        case .awaitingHead, .preparing, .forwarding: break
        }
        exchange.finish(answer)
        state = .answered
        upstream?.close(promise: nil)
        guard let context else { return }
        resumeReading()  // drain from here on (a read may be held since the head)
        let sync = context.pipeline.syncOperations
        if let encoder = try? sync.handler(type: HTTPResponseEncoder.self) {
            sync.removeHandler(encoder, promise: nil)
        }
        closeGracefully(context, after: context.writeAndFlush(NIOAny(answer.buffer(context.channel.allocator))))
    }
}

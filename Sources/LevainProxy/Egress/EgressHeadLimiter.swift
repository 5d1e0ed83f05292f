import NIOCore

/// Bounds the request head, request line included (the HTTP decoder's own
/// limits cover header fields only, not the URL): bytes before the head is
/// complete are counted, and past `limit` the connection handler is told
/// (`EgressHeadLimiter.TooLarge`, answered 431) and nothing more is passed on.
/// The count is checked after each read is passed on, so a head and the
/// start of its body arriving in one read are not mistaken for a long head.
final class EgressHeadLimiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    struct TooLarge: Error {}

    let limit: Int
    /// Bytes seen before the head was complete (any at all: the jail spoke).
    private(set) var seen = 0
    /// Set by the connection handler when the decoder delivers the head.
    var headComplete = false
    private var tripped = false

    init(limit: Int) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if tripped { return }
        if headComplete {
            context.fireChannelRead(data)
            return
        }
        seen += Self.unwrapInboundIn(data).readableBytes
        context.fireChannelRead(data)
        if !headComplete && seen > limit {
            tripped = true
            context.fireErrorCaught(TooLarge())
        }
    }
}

/// Stands in for the HTTP handlers on a connection beyond the proxy's
/// limit: a 503 that says so, then the same drained close as any answer
/// (a close with the jail's request unread would reset the connection and
/// lose the 503). Nothing is parsed.
final class EgressRefusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let answer: EgressAnswer
    private let linger: TimeAmount

    init(answer: EgressAnswer, linger: TimeAmount) {
        self.answer = answer
        self.linger = linger
    }

    func channelActive(context: ChannelHandlerContext) {
        let linger = self.linger
        context.writeAndFlush(NIOAny(answer.buffer(context.channel.allocator))).assumeIsolated().whenComplete { _ in
            context.close(mode: .output, promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: linger) { context.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        }
    }
}

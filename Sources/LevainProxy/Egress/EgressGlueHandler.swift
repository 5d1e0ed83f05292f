import NIOCore

/// One end of a CONNECT tunnel: bytes read here are written to the partner
/// channel. Backpressure: a read on this side is held while the partner
/// cannot take more (its writability), and resumed when it can, so neither
/// side buffers more than a channel's high-water mark. An EOF is passed on
/// as a half-close once the pending writes are out; a full close or error
/// on one side closes the other, after its pending writes.
/// Both channels live on the same event loop.
final class EgressGlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case jail, upstream }

    private let side: Side
    private let exchange: EgressExchange
    private var partner: EgressGlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    private init(side: Side, exchange: EgressExchange) {
        self.side = side
        self.exchange = exchange
    }

    /// (jail end, upstream end).
    static func pair(_ exchange: EgressExchange) -> (EgressGlueHandler, EgressGlueHandler) {
        let jail = EgressGlueHandler(side: .jail, exchange: exchange)
        let upstream = EgressGlueHandler(side: .upstream, exchange: exchange)
        jail.partner = upstream
        upstream.partner = jail
        return (jail, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil  // breaks the pair's reference cycle
    }

    // MARK: called by the partner

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerEOF() {
        context?.flush()
        context?.close(mode: .output, promise: nil)
    }

    /// The partner is gone: flush what is pending to this side, then close it.
    private func partnerClosed() {
        guard let context else { return }
        context.flush()
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.close(mode: .output, promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: events of this side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        switch side {
        case .jail: exchange.up(buffer.readableBytes)
        case .upstream: exchange.down(buffer.readableBytes)
        }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClosed()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            partner?.partnerEOF()
        } else if event is IdleStateHandler.IdleStateEvent {
            exchange.note("closed after the idle timeout")
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

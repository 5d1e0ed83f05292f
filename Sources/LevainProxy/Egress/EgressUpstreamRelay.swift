import NIOCore
import NIOHTTP1

/// The last handler of a forwarded request's upstream channel: hands the
/// response to the jail's connection handler as it arrives, and holds
/// upstream reads while the jail's channel cannot take more (so a large
/// response streams at the jail's pace and is never buffered whole).
/// Same event loop as the jail's channel.
final class EgressUpstreamRelay: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The jail side; cleared when either side is done.
    var client: EgressConnectionHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    init(client: EgressConnectionHandler) {
        self.client = client
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        client = nil
    }

    // MARK: called by the jail side

    func send(_ part: HTTPClientRequestPart, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(part), promise: promise)
    }

    func flush() {
        context?.flush()
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func jailBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    // MARK: events of the upstream channel

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client?.upstreamPart(Self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client?.flushToJail()
    }

    func channelInactive(context: ChannelHandlerContext) {
        client?.upstreamClosed(error: nil)
        client = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        client?.upstreamClosed(error: error)
        client = nil
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            client?.upstreamClosed(error: EgressIdle())
            client = nil
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        client?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if client?.jailWritable ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

/// No bytes either way for the idle timeout.
struct EgressIdle: Error, CustomStringConvertible {
    var description: String { "idle timeout" }
}

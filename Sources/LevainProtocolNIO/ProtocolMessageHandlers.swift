import LevainProtocol
import NIOCore

/// Turns frames (from `BoundedFrameDecoder`) into `Message`s with
/// `MessageCodec`, as sent by `peer` (the harness, on the supervisor's side).
///
/// Errors reach the next handler's `errorCaught` as a `ProtocolViolation`:
/// its own, the decoder's, and the cumulation buffer's cap
/// (`oversizedFrame`). After the first violation nothing more is decoded or
/// reported; the connection is to be closed.
public final class ProtocolMessageDecoder: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Message

    public let peer: Peer
    private var failed = false

    public init(peer: Peer = .harness) {
        self.peer = peer
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var buffer = Self.unwrapInboundIn(data)
        guard let typeByte = buffer.readInteger(as: UInt8.self), let type = FrameType(rawValue: typeByte) else {
            // BoundedFrameDecoder checked this; only a misassembled pipeline gets here.
            fail(context: context, ProtocolViolation(.unknownFrameType, "frame without a known type byte"))
            return
        }
        // DATA is the bulk of the traffic: one copy, straight from the
        // buffer into the message (the general path copies twice).
        if type == .data && type.isSent(by: peer) {
            guard let stream = buffer.readInteger(endianness: .big, as: UInt32.self) else {
                fail(context: context, ProtocolViolation(.badLength, "DATA body of \(buffer.readableBytes) bytes (at least 4)"))
                return
            }
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            context.fireChannelRead(Self.wrapInboundOut(.data(stream: stream, bytes: bytes)))
            return
        }
        let frame = Frame(type: type, body: buffer.readBytes(length: buffer.readableBytes) ?? [])
        do {
            let message = try MessageCodec.decode(frame, sentBy: peer)
            context.fireChannelRead(Self.wrapInboundOut(message))
        } catch {
            fail(context: context, error)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let violation as ProtocolViolation:
            fail(context: context, violation)
        case is ByteToMessageDecoderError.PayloadTooLargeError:
            fail(context: context, ProtocolViolation(.oversizedFrame, "more buffered bytes than a frame may have"))
        case let decoderError as ByteToMessageDecoderError:
            if case .dataReceivedInErrorState = decoderError, failed { return }  // reported already
            context.fireErrorCaught(error)
        default:
            context.fireErrorCaught(error)
        }
    }

    private func fail(context: ChannelHandlerContext, _ violation: ProtocolViolation) {
        guard !failed else { return }
        failed = true
        context.fireErrorCaught(violation)
    }
}

/// Writes `Message`s as frames. A frame above the current `max_frame` fails
/// the write with `ProtocolMisuse.oversizedFrame` (nothing is written).
public final class ProtocolMessageEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Message

    public let limit: ProtocolFrameLimit

    public init(limit: ProtocolFrameLimit) {
        self.limit = limit
    }

    public func encode(data message: Message, out: inout ByteBuffer) throws {
        let start = out.writerIndex
        switch message {
        case .data(let stream, let bytes):
            // The hot path: no intermediate array.
            out.reserveCapacity(minimumWritableBytes: bytes.count + 9)
            out.writeInteger(UInt32(bytes.count + 5), endianness: .big)
            out.writeInteger(FrameType.data.rawValue)
            out.writeInteger(stream, endianness: .big)
            out.writeBytes(bytes)
        default:
            var bytes: [UInt8] = []
            MessageCodec.encode(message, into: &bytes)
            out.writeBytes(bytes)
        }
        let length = out.writerIndex - start - 4
        if length > limit.maxFrame {
            out.moveWriterIndex(to: start)
            throw ProtocolMisuse(
                .oversizedFrame, "\(message.frameType) frame of \(length) bytes exceeds max_frame \(limit.maxFrame)")
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the protocol's decoder and encoder:
    /// `ByteToMessageHandler(BoundedFrameDecoder)` → `ProtocolMessageDecoder`
    /// inbound, `MessageToByteHandler(ProtocolMessageEncoder)` outbound.
    ///
    /// - Parameters:
    ///   - limit: the current `max_frame` (starts at the handshake limit);
    ///     set `limit.maxFrame` to WELCOME's value after sending WELCOME.
    ///   - largestMaxFrame: the largest `max_frame` this connection will ever
    ///     use (what its WELCOME will say); caps the cumulation buffer at
    ///     `largestMaxFrame + 8` bytes.
    ///   - peer: who sends the frames this end decodes.
    public func addLevainProtocolHandlers(
        limit: ProtocolFrameLimit,
        largestMaxFrame: Int = ProtocolLimits.defaultMaxFrame,
        peer: Peer = .harness
    ) throws {
        try addHandler(ByteToMessageHandler(BoundedFrameDecoder(limit: limit),
                                            maximumBufferSize: max(largestMaxFrame, limit.maxFrame) + 8))
        try addHandler(ProtocolMessageDecoder(peer: peer))
        try addHandler(MessageToByteHandler(ProtocolMessageEncoder(limit: limit)))
    }
}

import LevainProtocol
import NIOCore
import NIOExtras
import Synchronization

/// The `max_frame` a connection currently accepts, shared between the
/// decoder, the encoder and the code that completes the handshake (which
/// raises it to WELCOME's `max_frame` right after sending WELCOME).
public final class ProtocolFrameLimit: Sendable {
    private let value: Atomic<Int>

    public init(_ maxFrame: Int = ProtocolLimits.handshakeMaxFrame) {
        precondition((1...ProtocolLimits.absoluteMaxFrame).contains(maxFrame), "maxFrame out of range")
        value = Atomic(maxFrame)
    }

    public var maxFrame: Int {
        get { value.load(ordering: .relaxed) }
        set {
            precondition((1...ProtocolLimits.absoluteMaxFrame).contains(newValue), "maxFrame out of range")
            value.store(newValue, ordering: .relaxed)
        }
    }
}

/// Splits the byte stream into frames (a `ByteBuffer` holding the type byte
/// and the body) with NIOExtras' `LengthFieldBasedFrameDecoder`, after
/// checking each header itself: a length of 0 or above `max_frame`, or an
/// unknown type byte, throws a `ProtocolViolation` as soon as those bytes are
/// here, before any body is buffered. Install it with
/// `ByteToMessageHandler(decoder, maximumBufferSize: ...)` (see
/// `addLevainProtocolHandlers`), which caps the cumulation buffer too.
public final class BoundedFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let limit: ProtocolFrameLimit
    private let frames = LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes, lengthFieldEndianness: .big)
    /// The length field was read (by `frames`) and the body is awaited.
    private var awaitingBody = false
    /// The awaited body's first byte (the type) has been checked.
    private var typeChecked = false

    public init(limit: ProtocolFrameLimit) {
        self.limit = limit
    }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if !awaitingBody {
            guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
                return .needMoreData
            }
            let typeByte = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
            if let violation = FrameDecoder.checkHeader(length: Int(length), typeByte: typeByte,
                                                        maxFrame: limit.maxFrame) {
                throw violation
            }
            typeChecked = typeByte != nil
        } else if !typeChecked {
            // The header came alone; the type byte is the first of the body.
            guard let typeByte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
            if FrameType(rawValue: typeByte) == nil {
                throw FrameDecoder.checkHeader(length: 1, typeByte: typeByte, maxFrame: 1)!
            }
            typeChecked = true
        }
        // `frames` reads the length field on its first call and forwards the
        // frame (without the length field) once the body is complete.
        let state = try frames.decode(context: context, buffer: &buffer)
        awaitingBody = state == .needMoreData
        if !awaitingBody { typeChecked = false }
        return state
    }

    public func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if awaitingBody || buffer.readableBytes > 0 {
            throw ProtocolViolation(.truncatedFrame, "the connection ended inside a frame")
        }
        return .needMoreData
    }
}

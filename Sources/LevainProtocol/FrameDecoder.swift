/// Splits a byte stream into frames, incrementally (the harness and the
/// fuzzer use it; the supervisor uses `BoundedFrameDecoder` on swift-nio).
///
/// A bad header fails as soon as its bytes are here: a length of 0 or above
/// `maxFrame` once the 4 length bytes arrived, an unknown type once the 5th
/// did. The decoder never waits for the body of a frame it will reject. After
/// a failure every `next()` throws the same violation.
///
/// Memory: `append` first drops the bytes already returned as frames, so the
/// buffer holds only what the caller appended and has not taken out with
/// `next()`; a caller that drains `next()` before appending more never makes
/// it hold more than one partial frame (`maxFrame + 4` bytes) plus the new
/// chunk.
public struct FrameDecoder: Sendable {
    /// The largest accepted length field. Starts at the handshake limit; the
    /// harness raises it to WELCOME's `max_frame`. Must be in
    /// `1...ProtocolLimits.absoluteMaxFrame`; applies to the next header read.
    public var maxFrame: Int {
        didSet {
            precondition((1...ProtocolLimits.absoluteMaxFrame).contains(maxFrame), "maxFrame out of range")
        }
    }

    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var failure: ProtocolViolation?

    public init(maxFrame: Int = ProtocolLimits.handshakeMaxFrame) {
        precondition((1...ProtocolLimits.absoluteMaxFrame).contains(maxFrame), "maxFrame out of range")
        self.maxFrame = maxFrame
    }

    /// Bytes appended and not yet returned in a frame.
    public var bufferedBytes: Int { buffer.count - readIndex }

    /// Whether a violation was found; the connection is to be closed.
    public var hasFailed: Bool { failure != nil }

    /// Adds received bytes. After a failure they are dropped: nothing more
    /// will be decoded.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        guard failure == nil else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil until more bytes arrive.
    public mutating func next() throws(ProtocolViolation) -> Frame? {
        if let failure { throw failure }
        let available = buffer.count - readIndex
        guard available >= 4 else { return nil }
        let length = Int(readUInt32(buffer, at: readIndex))
        if let violation = Self.checkHeader(length: length, typeByte: available >= 5 ? buffer[readIndex + 4] : nil,
                                            maxFrame: maxFrame) {
            failure = violation
            throw violation
        }
        guard available >= 4 + length else { return nil }
        let type = FrameType(rawValue: buffer[readIndex + 4])!  // checked above
        let body = Array(buffer[(readIndex + 5)..<(readIndex + 4 + length)])
        readIndex += 4 + length
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        return Frame(type: type, body: body)
    }

    /// The violation a frame header is, if any: shared with the NIO decoder.
    /// `typeByte` is nil while only the length has arrived.
    public static func checkHeader(length: Int, typeByte: UInt8?, maxFrame: Int) -> ProtocolViolation? {
        if length == 0 {
            return ProtocolViolation(.badLength, "frame length 0 (a frame has at least its type byte)")
        }
        if length > maxFrame {
            return ProtocolViolation(.oversizedFrame, "frame length \(length) exceeds max_frame \(maxFrame)")
        }
        if let typeByte, FrameType(rawValue: typeByte) == nil {
            return ProtocolViolation(.unknownFrameType, "unknown frame type \(hexByte(typeByte))")
        }
        return nil
    }

    private mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
        } else {
            buffer.removeSubrange(0..<readIndex)
        }
        readIndex = 0
    }
}

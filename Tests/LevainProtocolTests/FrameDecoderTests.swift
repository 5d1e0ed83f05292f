import LevainProtocol
import Testing

@Suite("FrameDecoder")
struct FrameDecoderTests {
    static let frames: [Frame] = [
        MessageCodec.encode(.hello(Fixtures.hello)),
        MessageCodec.encode(.data(stream: 7, bytes: Array(0..<200))),
        MessageCodec.encode(.ping(nonce: 99)),
        MessageCodec.encode(.data(stream: 7, bytes: [])),
    ]
    static let wire: [UInt8] = frames.flatMap { FrameEncoder.encode($0) }

    private func drain(_ decoder: inout FrameDecoder) throws -> [Frame] {
        var out: [Frame] = []
        while let frame = try decoder.next() { out.append(frame) }
        return out
    }

    @Test("many frames in one chunk")
    func oneChunk() throws {
        var decoder = FrameDecoder()
        decoder.append(Self.wire)
        #expect(try drain(&decoder) == Self.frames)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test("one byte at a time")
    func byteByByte() throws {
        var decoder = FrameDecoder()
        var out: [Frame] = []
        for byte in Self.wire {
            decoder.append(CollectionOfOne(byte))
            out += try drain(&decoder)
            #expect(decoder.bufferedBytes <= decoder.maxFrame + 4)
        }
        #expect(out == Self.frames)
    }

    @Test("every split point, including inside the header")
    func splits() throws {
        for split in 0...Self.wire.count {
            var decoder = FrameDecoder()
            decoder.append(Self.wire[..<split])
            var out = try drain(&decoder)
            Self.wire[split...].withUnsafeBytes { decoder.append($0) }
            out += try drain(&decoder)
            #expect(out == Self.frames, "split at \(split)")
        }
    }

    @Test("a split header waits without failing")
    func splitHeader() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0])
        #expect(try decoder.next() == nil)
        decoder.append([0, 9, FrameType.ping.rawValue])
        #expect(try decoder.next() == nil)
        decoder.append([0, 0, 0, 0, 0, 0, 0, 5])
        #expect(try decoder.next() == Frame(type: .ping, body: [0, 0, 0, 0, 0, 0, 0, 5]))
    }

    @Test("length 0 is rejected as soon as the 4 length bytes are here")
    func zeroLength() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0])
        #expect(try decoder.next() == nil)
        decoder.append([0])
        expectViolation(.badLength) { _ = try decoder.next() }
        #expect(decoder.hasFailed)
    }

    @Test("a length above max_frame is rejected after 4 bytes, without waiting for the body")
    func oversized() {
        var decoder = FrameDecoder(maxFrame: 4096)
        decoder.append([0, 0, 0x10, 0x01])  // 4097
        expectViolation(.oversizedFrame, key: "4097") { _ = try decoder.next() }
        // It stays failed.
        decoder.append([0, 0, 0, 1, 0x40])
        expectViolation(.oversizedFrame) { _ = try decoder.next() }

        var huge = FrameDecoder()
        huge.append([0xFF, 0xFF, 0xFF, 0xFF])
        expectViolation(.oversizedFrame) { _ = try huge.next() }
    }

    @Test("exactly max_frame is accepted")
    func exactlyMax() throws {
        var decoder = FrameDecoder(maxFrame: 4096)
        let frame = Frame(type: .data, body: [UInt8](repeating: 1, count: 4095))
        decoder.append(FrameEncoder.encode(frame))
        #expect(try decoder.next() == frame)
    }

    @Test("an unknown type byte is rejected before the body arrives", arguments: [0x00, 0x03, 0x12, 0x21, 0x32, 0x42, 0xFF])
    func unknownType(type: UInt8) {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0x10, 0, type])
        expectViolation(.unknownFrameType) { _ = try decoder.next() }
    }

    @Test("maxFrame can be raised after the handshake")
    func raiseMaxFrame() throws {
        var decoder = FrameDecoder()
        let big = Frame(type: .data, body: [UInt8](repeating: 2, count: 100_000))
        let wire = FrameEncoder.encode(big)
        decoder.append(wire[..<10])
        decoder.maxFrame = ProtocolLimits.defaultMaxFrame
        decoder.append(wire[10...])
        #expect(try decoder.next() == big)
    }

    @Test("the buffer holds only unconsumed bytes")
    func compaction() throws {
        var decoder = FrameDecoder(maxFrame: 4096)
        let frame = FrameEncoder.encode(Frame(type: .data, body: [UInt8](repeating: 3, count: 1000)))
        for _ in 0..<100 {
            decoder.append(frame + frame[..<500])
            #expect(try decoder.next() != nil)
            #expect(try decoder.next() == nil)
            #expect(decoder.bufferedBytes == 500)
            decoder.append(frame[500...])
            #expect(try decoder.next() != nil)
            #expect(decoder.bufferedBytes == 0)
        }
    }

    @Test("FrameEncoder writes length, type, body")
    func encoder() {
        #expect(FrameEncoder.encode(Frame(type: .pong, body: [1, 2])) == [0, 0, 0, 3, 0x41, 1, 2])
        var out: [UInt8] = [9]
        FrameEncoder.encode(Frame(type: .data, body: []), into: &out)
        #expect(out == [9, 0, 0, 0, 1, 0x30])
    }
}

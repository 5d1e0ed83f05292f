import LevainProtocol
import LevainProtocolNIO
import NIOCore
import NIOEmbedded
import Testing

/// Records what reaches the end of the pipeline.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = Message
    var messages: [Message] = []
    var errors: [any Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        messages.append(Self.unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }

    var violations: [ProtocolViolation] { errors.compactMap { $0 as? ProtocolViolation } }
}

@Suite("LevainProtocolNIO handlers")
struct NIOHandlerTests {
    let channel = EmbeddedChannel()
    let limit = ProtocolFrameLimit()
    let recorder = Recorder()

    init(largestMaxFrame: Int = ProtocolLimits.defaultMaxFrame) throws {
        try channel.pipeline.syncOperations.addLevainProtocolHandlers(limit: limit, largestMaxFrame: largestMaxFrame)
        try channel.pipeline.syncOperations.addHandler(recorder)
    }

    func write(_ bytes: [UInt8]) throws {
        try channel.writeInbound(channel.allocator.buffer(bytes: bytes))
    }

    @Test("bytes in, messages out: every harness message, in one write and byte by byte")
    func decodes() throws {
        let harnessMessages = Fixtures.allMessages.filter { $0.1 == .harness }.map(\.0)
        var wire: [UInt8] = []
        for message in harnessMessages { MessageCodec.encode(message, into: &wire) }
        try write(wire)
        #expect(recorder.messages == harnessMessages)
        for byte in wire { try write([byte]) }
        #expect(recorder.messages == harnessMessages + harnessMessages)
        #expect(recorder.errors.isEmpty)
    }

    @Test("an oversized length fails after 4 bytes, before the body")
    func oversized() throws {
        try write([0, 1, 0, 1])  // 65 537 > the handshake limit
        #expect(recorder.violations.map(\.code) == [.oversizedFrame])
        try write([0x01] + [UInt8](repeating: 0x20, count: 1000))
        #expect(recorder.violations.count == 1)  // reported once
        #expect(recorder.messages.isEmpty)
    }

    @Test("garbage fails at once", arguments: [
        Array("GET / HTTP/1.1\r\n".utf8), [0, 0, 0, 0], [0, 0, 0, 5, 0x99], [0, 0, 0, 3, 0x01, 0x7B, 0x7D],
        [0, 0, 0, 2, 0x40, 0x00],
    ])
    func garbage(bytes: [UInt8]) throws {
        try write(bytes)
        #expect(recorder.violations.count == 1)
        #expect(recorder.messages.isEmpty)
    }

    @Test("the type byte is checked when it arrives after the header")
    func lateType() throws {
        try write([0, 0, 0, 9])
        #expect(recorder.errors.isEmpty)
        try write([0x77])
        #expect(recorder.violations.map(\.code) == [.unknownFrameType])
    }

    @Test("a frame from the wrong sender is a violation")
    func wrongSender() throws {
        try write(FrameEncoder.encode(MessageCodec.encode(.welcome(Fixtures.welcome))))
        #expect(recorder.violations.map(\.code) == [.unexpectedFrame])
    }

    @Test("max_frame can be raised after WELCOME")
    func raise() throws {
        let big = Message.data(stream: 3, bytes: [UInt8](repeating: 9, count: 200_000))
        var wire: [UInt8] = []
        MessageCodec.encode(big, into: &wire)
        limit.maxFrame = ProtocolLimits.defaultMaxFrame
        try write(Array(wire[..<100_000]))
        try write(Array(wire[100_000...]))
        #expect(recorder.messages == [big])
        #expect(recorder.errors.isEmpty)
    }

    @Test("the cumulation buffer cap reports oversizedFrame too")
    func bufferCap() throws {
        let small = try NIOHandlerTests(largestMaxFrame: ProtocolLimits.handshakeMaxFrame)
        small.limit.maxFrame = ProtocolLimits.defaultMaxFrame  // beyond what the buffer was sized for
        var wire: [UInt8] = []
        MessageCodec.encode(.data(stream: 3, bytes: [UInt8](repeating: 9, count: 200_000)), into: &wire)
        try small.write(Array(wire[..<100_000]))
        #expect(small.recorder.violations.map(\.code) == [.oversizedFrame])
    }

    @Test("the connection ending inside a frame is a violation")
    func truncated() throws {
        try write([0, 0, 0, 9, 0x40, 1])
        #expect(recorder.errors.isEmpty)
        _ = try? channel.finish()
        #expect(recorder.violations.map(\.code) == [.truncatedFrame])
    }

    @Test("outbound messages are written exactly as FrameEncoder writes them")
    func encodes() throws {
        for (message, _) in Fixtures.allMessages {
            try channel.writeOutbound(message)
            var buffer = try #require(try channel.readOutbound(as: ByteBuffer.self))
            #expect(buffer.readBytes(length: buffer.readableBytes) == FrameEncoder.encode(MessageCodec.encode(message)))
        }
    }

    @Test("an outbound frame above max_frame fails the write")
    func outboundOversized() throws {
        #expect(throws: ProtocolMisuse.self) {
            try channel.writeOutbound(Message.data(stream: 1, bytes: [UInt8](repeating: 0, count: 65_536)))
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }
}

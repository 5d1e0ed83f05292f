/// The frame types of the protocol (docs/PROTOCOL.md, "Frames"; the same in versions 1 and 2).
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case welcome = 0x02
    case request = 0x10
    case response = 0x11
    case event = 0x20
    case data = 0x30
    case window = 0x31
    case ping = 0x40
    case pong = 0x41

    public var description: String {
        switch self {
        case .hello: "HELLO"
        case .welcome: "WELCOME"
        case .request: "REQUEST"
        case .response: "RESPONSE"
        case .event: "EVENT"
        case .data: "DATA"
        case .window: "WINDOW"
        case .ping: "PING"
        case .pong: "PONG"
        }
    }

    /// Whether `peer` may send frames of this type.
    public func isSent(by peer: Peer) -> Bool {
        switch self {
        case .hello, .response, .event: peer == .harness
        case .welcome, .request: peer == .supervisor
        case .data, .window, .ping, .pong: true
        }
    }
}

/// The two ends of the connection.
public enum Peer: Sendable, Equatable, CustomStringConvertible {
    case harness
    case supervisor

    public var description: String {
        switch self {
        case .harness: "harness"
        case .supervisor: "supervisor"
        }
    }
}

/// One frame: its type and its body (everything after the type byte). The
/// wire length is `body.count + 1`.
public struct Frame: Equatable, Sendable {
    public var type: FrameType
    public var body: [UInt8]

    public init(type: FrameType, body: [UInt8]) {
        self.type = type
        self.body = body
    }

    /// The value of the length field for this frame (type byte + body).
    public var length: Int { body.count + 1 }
}

/// Writes frames as `length: u32 BE | type: u8 | body`.
public enum FrameEncoder {
    /// The frame on the wire.
    public static func encode(_ frame: Frame) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(frame.body.count + ProtocolLimits.frameHeaderSize)
        encode(frame, into: &out)
        return out
    }

    /// Appends the frame on the wire to `out`.
    public static func encode(_ frame: Frame, into out: inout [UInt8]) {
        appendHeader(type: frame.type, bodyCount: frame.body.count, into: &out)
        out.append(contentsOf: frame.body)
    }

    /// Appends the 5 header bytes of a frame whose body is `bodyCount` bytes.
    public static func appendHeader(type: FrameType, bodyCount: Int, into out: inout [UInt8]) {
        precondition(bodyCount >= 0 && bodyCount < Int(UInt32.max), "frame body too large")
        appendUInt32(UInt32(bodyCount + 1), into: &out)
        out.append(type.rawValue)
    }
}

// MARK: Big-endian helpers

@inline(__always)
func appendUInt32(_ value: UInt32, into out: inout [UInt8]) {
    out.append(UInt8(truncatingIfNeeded: value >> 24))
    out.append(UInt8(truncatingIfNeeded: value >> 16))
    out.append(UInt8(truncatingIfNeeded: value >> 8))
    out.append(UInt8(truncatingIfNeeded: value))
}

@inline(__always)
func appendUInt64(_ value: UInt64, into out: inout [UInt8]) {
    appendUInt32(UInt32(truncatingIfNeeded: value >> 32), into: &out)
    appendUInt32(UInt32(truncatingIfNeeded: value), into: &out)
}

@inline(__always)
func readUInt32(_ bytes: [UInt8], at index: Int) -> UInt32 {
    UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
}

@inline(__always)
func readUInt64(_ bytes: [UInt8], at index: Int) -> UInt64 {
    UInt64(readUInt32(bytes, at: index)) << 32 | UInt64(readUInt32(bytes, at: index + 4))
}

/// `0x0a` style.
func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: [0x30, 0x78, digits[Int(byte >> 4)], digits[Int(byte & 0xf)]], as: UTF8.self)
}

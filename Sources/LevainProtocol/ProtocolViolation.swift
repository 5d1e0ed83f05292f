/// A peer broke docs/PROTOCOL.md. When the harness is the culprit the
/// supervisor logs `protocol.violation` with this description and kills the
/// jail; the harness treats one from the supervisor as fatal as well.
public struct ProtocolViolation: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// A frame length of 0, or a body too short for its frame type.
        case badLength
        /// A frame length above `max_frame`.
        case oversizedFrame
        /// The connection ended in the middle of a frame.
        case truncatedFrame
        /// A type byte that is not in the frame table.
        case unknownFrameType
        /// A body that is not one well-formed JSON object.
        case invalidJSON
        /// A required key is absent.
        case missingKey
        /// A key holds a value of the wrong JSON type.
        case wrongType
        /// A key holds a value of the right type outside what is allowed.
        case invalidValue
        /// A REQUEST `op` this version does not know.
        case unknownOperation
        /// An EVENT `event` this version does not know.
        case unknownEvent
        /// A frame type the sender must not send, or not now.
        case unexpectedFrame
        /// A RESPONSE whose `id` is not outstanding.
        case unknownRequest
        /// An event about a run that was not started (or has exited).
        case unknownRun
        /// DATA or WINDOW on a stream the receiver does not know.
        case unknownStream
        /// More DATA than the stream's credit allows.
        case windowExceeded
        /// DATA after the end of its stream.
        case streamClosed
        /// Too many frames (or events) per second.
        case flood
        /// HELLO missing, late, repeated or not first.
        case handshake
        /// More live runs than a session allows.
        case tooManyRuns
        /// PINGs unanswered for too long.
        case unresponsive
    }

    public let code: Code
    /// The key the violation is about, as a path (`argv[2]`, `error.code`), if any.
    public let key: String?
    /// A human-readable explanation naming the offending key or value.
    public let message: String

    public init(_ code: Code, _ message: String, key: String? = nil) {
        self.code = code
        self.key = key
        self.message = message
    }

    public var description: String { "protocol violation (\(code.rawValue)): \(message)" }
}

/// The local side asked a connection state machine to send something the
/// protocol does not allow (a supervisor or harness bug, or a limit such as
/// the number of live runs). Nothing was sent; the peer is not to blame.
public struct ProtocolMisuse: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The message cannot be sent in the current phase (before/after the handshake).
        case wrongPhase
        /// This side never sends that frame type.
        case notSendable
        /// The message fails validation (see `message`).
        case invalidMessage
        /// A request id that is still outstanding.
        case duplicateRequest
        /// A stream id that is in use.
        case duplicateStream
        /// A run id that is in use.
        case duplicateRun
        /// The session already has `maxRunsPerSession` live runs.
        case tooManyRuns
        /// DATA or WINDOW on a stream this side cannot send it on.
        case unknownStream
        /// DATA after the stream's end, or on a stream whose request is over.
        case streamClosed
        /// More DATA than the peer's credit allows.
        case windowExceeded
        /// The encoded frame exceeds the negotiated `max_frame`.
        case oversizedFrame
        /// A RESPONSE for a request that is not outstanding.
        case unknownRequest
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "protocol misuse (\(code.rawValue)): \(message)" }
}

/// A value quoted for an error message: at most 64 characters, with control
/// characters and quotes escaped so it cannot forge log lines.
func quoted(_ value: String) -> String {
    let limit = 64
    if value.utf8.count <= limit { return value.debugDescription }
    // Unicode scalars, not Characters: one Character can be any number of bytes.
    var prefix = String.UnicodeScalarView()
    prefix.append(contentsOf: value.unicodeScalars.prefix(limit))
    return String(prefix).debugDescription + "..."
}

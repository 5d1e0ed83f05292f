/// Flow-control bookkeeping for one end of the connection, shared by
/// `SupervisorConnectionState` and `HarnessConnectionState`.
///
/// Inbound streams are the ones the peer sends on: this end granted the
/// peer `credit` bytes, DATA spends it, WINDOW frames this end sends return
/// it. Outbound streams are the ones this end sends on, with the credit the
/// peer granted.
struct StreamTable: Sendable {
    struct Inbound: Sendable {
        /// Bytes the peer may still send.
        var credit: UInt32
        var received: UInt64 = 0
        var consumed: UInt64 = 0
        /// Consumed bytes whose credit has not been handed back yet.
        var unreturned: UInt64 = 0
        /// Most bytes the stream may carry in total (file.read's max_bytes).
        var limit: UInt64?
        var ended = false
        /// Keep the record after the end (file.read: the response checks it).
        var retainAfterEnd: Bool
    }

    struct Outbound: Sendable {
        /// Bytes this end may still send.
        var credit: UInt32
        var sent: UInt64 = 0
        var returned: UInt64 = 0
        var ended = false
    }

    enum DataOutcome: Equatable {
        case deliver
        case end
        case ignored
    }

    /// Abandoned inbound streams kept for their grace at most.
    static let maxGraceStreams = 256
    /// Ended inbound streams remembered to report `streamClosed` instead of `unknownStream`.
    static let maxRecentlyEnded = 64

    var window: UInt32
    /// Who the peer is, for messages.
    let peer: Peer
    /// The harness's mode: an outbound stream is forgotten as soon as this
    /// end sends its end, and a WINDOW for a stream this end does not know
    /// is ignored (it was in flight when the stream ended). The supervisor
    /// keeps ended outbound streams until their request is over and treats
    /// WINDOW for unknown streams as a violation.
    let forgetsEndedOutbound: Bool
    private(set) var inbound: [StreamID: Inbound] = [:]
    private(set) var outbound: [StreamID: Outbound] = [:]
    /// Abandoned inbound streams: the bytes still tolerated (the credit the peer had).
    private var grace: [StreamID: UInt32] = [:]
    private var graceOrder: [StreamID] = []
    private var recentlyEnded: [StreamID] = []

    init(window: UInt32, peer: Peer) {
        self.window = window
        self.peer = peer
        forgetsEndedOutbound = peer == .supervisor
    }

    func isInUse(_ stream: StreamID) -> Bool {
        inbound[stream] != nil || outbound[stream] != nil || grace[stream] != nil
    }

    mutating func openInbound(_ stream: StreamID, limit: UInt64? = nil, retainAfterEnd: Bool = false) {
        inbound[stream] = Inbound(credit: window, limit: limit, retainAfterEnd: retainAfterEnd)
    }

    mutating func openOutbound(_ stream: StreamID) {
        outbound[stream] = Outbound(credit: window)
    }

    // MARK: From the peer

    mutating func receiveData(stream: StreamID, count: Int) throws(ProtocolViolation) -> DataOutcome {
        if var state = inbound[stream] {
            if state.ended {
                throw ProtocolViolation(.streamClosed, "DATA on stream \(stream) after its end")
            }
            if count == 0 {
                if state.retainAfterEnd {
                    state.ended = true
                    inbound[stream] = state
                } else {
                    inbound[stream] = nil
                    rememberEnded(stream)
                }
                return .end
            }
            if count > Int(state.credit) {
                throw ProtocolViolation(
                    .windowExceeded, "DATA of \(count) bytes on stream \(stream) exceeds its credit of \(state.credit)")
            }
            if let limit = state.limit, state.received + UInt64(count) > limit {
                throw ProtocolViolation(
                    .invalidValue, "stream \(stream) carries more than its max_bytes of \(limit)", key: "max_bytes")
            }
            state.credit -= UInt32(count)
            state.received += UInt64(count)
            inbound[stream] = state
            return .deliver
        }
        if let remaining = grace[stream] {
            if count == 0 {
                removeGrace(stream)
            } else if count > Int(remaining) {
                throw ProtocolViolation(
                    .windowExceeded,
                    "DATA of \(count) bytes on abandoned stream \(stream) exceeds its remaining credit of \(remaining)")
            } else {
                grace[stream] = remaining - UInt32(count)
            }
            return .ignored
        }
        if outbound[stream] != nil {
            throw ProtocolViolation(.unknownStream, "DATA on stream \(stream), which only the \(peer) receives")
        }
        if recentlyEnded.contains(stream) {
            throw ProtocolViolation(.streamClosed, "DATA on stream \(stream) after its end")
        }
        throw ProtocolViolation(.unknownStream, "DATA on stream \(stream), which is not open")
    }

    /// The stream's new credit, or nil when the WINDOW needs no action (the
    /// stream has ended on this side).
    mutating func receiveWindow(stream: StreamID, credit: UInt32) throws(ProtocolViolation) -> UInt32? {
        guard var state = outbound[stream] else {
            if inbound[stream] != nil || grace[stream] != nil {
                throw ProtocolViolation(.unknownStream, "WINDOW for stream \(stream), which the \(peer) sends")
            }
            if forgetsEndedOutbound { return nil }
            throw ProtocolViolation(.unknownStream, "WINDOW for stream \(stream), which is not open")
        }
        let returned = state.returned + UInt64(credit)
        if returned > state.sent {
            throw ProtocolViolation(
                .windowExceeded,
                "WINDOW on stream \(stream) returns credit for \(returned) bytes, but only \(state.sent) were sent")
        }
        state.returned = returned
        // credit + (sent - returned) == initial window, so this fits.
        state.credit = UInt32(clamping: UInt64(state.credit) + UInt64(credit))
        outbound[stream] = state
        // After the end the record stays until its request is over
        // (`retireOutbound`): the file.write response checks its size.
        return state.ended ? nil : state.credit
    }

    // MARK: From this end

    mutating func sendData(stream: StreamID, count: Int) throws(ProtocolMisuse) {
        guard var state = outbound[stream] else {
            if inbound[stream] != nil || grace[stream] != nil {
                throw ProtocolMisuse(.unknownStream, "DATA on stream \(stream), which the \(peer) sends")
            }
            throw ProtocolMisuse(.unknownStream, "DATA on stream \(stream), which is not open")
        }
        if state.ended { throw ProtocolMisuse(.streamClosed, "DATA on stream \(stream) after its end") }
        if count > Int(state.credit) {
            throw ProtocolMisuse(
                .windowExceeded, "DATA of \(count) bytes on stream \(stream) exceeds the credit of \(state.credit)")
        }
        state.credit -= UInt32(count)
        state.sent += UInt64(count)
        if count == 0 { state.ended = true }
        outbound[stream] = state.ended && forgetsEndedOutbound ? nil : state
    }

    mutating func sendWindow(stream: StreamID, credit: UInt32) throws(ProtocolMisuse) {
        guard var state = inbound[stream], !state.ended else {
            throw ProtocolMisuse(.streamClosed, "WINDOW for stream \(stream), which is not open for receiving")
        }
        guard UInt64(state.credit) + UInt64(credit) <= UInt64(UInt32.max) else {
            throw ProtocolMisuse(.windowExceeded, "WINDOW would raise the credit of stream \(stream) above 2^32-1")
        }
        state.credit += credit
        inbound[stream] = state
    }

    /// Records that the consumer took `bytes` of an inbound stream; returns
    /// a WINDOW once a quarter of the window is consumed and not yet returned.
    mutating func consumed(stream: StreamID, bytes: Int) -> Message? {
        guard bytes > 0, var state = inbound[stream], !state.ended else { return nil }
        let taken = min(UInt64(bytes), state.received - state.consumed)
        state.consumed += taken
        state.unreturned += taken
        defer { inbound[stream] = state }
        guard state.unreturned >= max(1, UInt64(window / 4)) else { return nil }
        let credit = UInt32(clamping: state.unreturned)
        state.unreturned -= UInt64(credit)
        return .window(stream: stream, credit: credit)
    }

    // MARK: Retiring

    /// This end stops reading an inbound stream; DATA the peer still had
    /// credit for is ignored, then its end. More is a violation.
    mutating func abandonInbound(_ stream: StreamID) {
        guard let state = inbound.removeValue(forKey: stream) else { return }
        if state.ended { return }
        if graceOrder.count >= Self.maxGraceStreams {
            grace[graceOrder.removeFirst()] = nil
        }
        grace[stream] = state.credit
        graceOrder.append(stream)
    }

    mutating func retireInbound(_ stream: StreamID) {
        inbound[stream] = nil
    }

    mutating func retireOutbound(_ stream: StreamID) {
        outbound[stream] = nil
    }

    private mutating func removeGrace(_ stream: StreamID) {
        grace[stream] = nil
        if let index = graceOrder.firstIndex(of: stream) { graceOrder.remove(at: index) }
    }

    private mutating func rememberEnded(_ stream: StreamID) {
        if recentlyEnded.count >= Self.maxRecentlyEnded { recentlyEnded.removeFirst() }
        recentlyEnded.append(stream)
    }
}

/// A token bucket: `perSecond` tokens a second, holding at most one second's
/// worth. Time is the caller's monotonic clock in nanoseconds.
struct TokenBucket: Sendable {
    private static let scale: UInt64 = 1_000_000_000
    private let rate: UInt64
    private let capacity: UInt64
    private var level: UInt64
    private var last: UInt64

    init(perSecond: Int, now: UInt64) {
        rate = UInt64(min(max(perSecond, 1), 1_000_000_000))
        capacity = rate * Self.scale
        level = capacity
        last = now
    }

    mutating func take(now: UInt64) -> Bool {
        if now > last {
            let elapsed = min(now - last, Self.scale)
            level = min(capacity, level + elapsed * rate)
            last = now
        }
        guard level >= Self.scale else { return false }
        level -= Self.scale
        return true
    }
}

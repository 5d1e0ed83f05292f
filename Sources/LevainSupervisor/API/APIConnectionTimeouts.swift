#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import LevainJSON
import LevainSessionLog
import NIOCore
import NIOHTTPTypes

/// The two timeouts of a control-API connection (docs/SUPERVISOR.md):
/// a request's head must be complete within `header` of its first byte (a
/// client sending its headers a byte at a time is cut off), and a
/// connection waiting on its client, with no request in progress or in the
/// middle of a request body, is closed after `idle` without a byte. Nothing
/// is timed while the supervisor answers: an event stream, a followed
/// output, or a `wait: true` run may take as long as they take. Neither is
/// a stdin upload's body (`PUT /v1/runs/{id}/stdin`), which goes at the
/// pace of whatever feeds the run, a person typing included.
public struct ConnectionTimeouts: Sendable {
    public var header: TimeAmount
    public var idle: TimeAmount

    public init(header: Double, idle: Double) {
        self.header = .nanoseconds(Int64(header * 1e9))
        self.idle = .nanoseconds(Int64(idle * 1e9))
    }
}

/// First in a connection's pipeline: sees every byte as it arrives, keeps
/// the connection's one timer, and closes the connection when it expires
/// (with a 408 when a request's head was cut off between requests).
/// RequestPhases, behind the HTTP decoder, tells it where requests begin
/// and end. Both run on the connection's event loop.
final class ConnectionTimer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let timeouts: ConnectionTimeouts
    private var context: ChannelHandlerContext?
    /// Requests whose head was read and whose response has not ended.
    private var inFlight = 0
    /// A request's body is being read.
    private var readingBody = false
    /// That body may pause for as long as it likes (a stdin upload).
    private var bodyUntimed = false
    /// The first byte of a head not decoded yet.
    private var headStarted: NIODeadline?
    /// The last byte received, or the end of the last response.
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var timerAt: NIODeadline?

    init(_ timeouts: ConnectionTimeouts) { self.timeouts = timeouts }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        lastActivity = .now()
        arm()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        lastActivity = now
        if !readingBody && headStarted == nil { headStarted = now }
        // The decoder behind runs now, and may see a head or an end.
        context.fireChannelRead(data)
        arm()
    }

    // MARK: from RequestPhases

    func requestHead(untimedBody: Bool) {
        headStarted = nil
        inFlight += 1
        readingBody = true
        bodyUntimed = untimedBody
        lastActivity = .now()
        arm()
    }

    func requestEnd() {
        readingBody = false
        bodyUntimed = false
        arm()
    }

    func responseEnd() {
        inFlight = max(0, inFlight - 1)
        let now = NIODeadline.now()
        lastActivity = now
        // Bytes of a next request that came meanwhile: its head's time starts now.
        if headStarted != nil { headStarted = now }
        arm()
    }

    // MARK: the timer

    /// When the connection expires as things stand; nil while the
    /// supervisor answers (or reads a body that may pause).
    private var deadline: NIODeadline? {
        if readingBody { return bodyUntimed ? nil : lastActivity + timeouts.idle }
        if inFlight > 0 { return nil }
        if let headStarted { return headStarted + timeouts.header }
        return lastActivity + timeouts.idle
    }

    /// Makes sure a check is due no later than the deadline. A check that
    /// finds the deadline moved on schedules the next one; one that finds
    /// none lets the next event arm it.
    private func arm() {
        guard let context, let due = deadline else { return }
        if let timerAt, timerAt <= due { return }
        timer?.cancel()
        timerAt = due
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { self.check() }
    }

    private func check() {
        timer = nil
        timerAt = nil
        guard let context, context.channel.isActive, let due = deadline else { return }
        guard due <= .now() else {
            arm()
            return
        }
        if readingBody || inFlight > 0 {
            // A body stopped arriving: its handler is waiting for it; the
            // end of the connection ends the wait.
            context.close(promise: nil)
        } else if headStarted != nil {
            let body = JSONValue.object(["error": ["code": "request_timeout", "field": "connection",
                                                   "message": .string("the request's head did not arrive within supervisor.header_timeout")]]).encoded() + "\n"
            let text = "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        } else {
            context.close(promise: nil)
        }
    }
}

/// Behind the HTTP decoder: tells the connection's ConnectionTimer where
/// each request's head and end are, and where each response ends.
final class RequestPhases: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let timer: ConnectionTimer

    init(_ timer: ConnectionTimer) { self.timer = timer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): timer.requestHead(untimedBody: Self.bodyMayPause(head))
        case .body: break
        case .end: timer.requestEnd()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { timer.responseEnd() }
        context.write(data, promise: promise)
    }

    /// `PUT /v1/runs/{id}/stdin`: a run's stdin, as slow as its source.
    static func bodyMayPause(_ head: HTTPRequest) -> Bool {
        guard head.method == .put, let target = head.path else { return false }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 5 && parts[0].isEmpty && parts[1] == "v1" && parts[2] == "runs" && parts[4] == "stdin"
    }
}

import Foundation
import LevainJSON
import Logging
import MCP

/// One MCP session over streamable HTTP, bounded: each POSTed request is
/// answered on its own server-sent-event stream, which carries the progress
/// notifications of that request (routed by their progress token) and then
/// its response, and ends. Nothing is stored for replay (no `Last-Event-ID`
/// resumption) and there is no standalone GET stream (GET is 405, as the
/// specification allows): what the server holds for a client is one queue
/// per request in flight, and progress beyond `maxPendingProgress` bytes
/// that the client has not read yet is dropped (the result still carries
/// the output). The swift-sdk's own stateful transport keeps every event it
/// sent for the life of the session, which a long session (or a chatty run
/// inside a jail) would grow without bound.
public actor HTTPSessionTransport: Transport {
    public nonisolated let logger = Logger(label: "levain.mcp.http", factory: { _ in SwiftLogNoOpLogHandler() })
    public nonisolated let sessionID: String
    private let incoming: AsyncThrowingStream<Data, Error>
    private let incomingContinuation: AsyncThrowingStream<Data, Error>.Continuation
    /// The open request streams, by the request's id as JSON text.
    private var streams: [String: EventQueue] = [:]
    /// Progress token (JSON text) -> request id (JSON text).
    private var progressRoutes: [String: String] = [:]
    private var ended = false

    /// Unread progress bytes a request's stream holds before it drops more.
    public static let maxPendingProgress = 1 << 20
    /// Requests in flight at once in one session.
    public static let maxStreams = 32

    public init(sessionID: String) {
        self.sessionID = sessionID
        (incoming, incomingContinuation) = AsyncThrowingStream<Data, Error>.makeStream()
    }

    public var openStreams: Int { streams.count }

    public func connect() async throws {}

    public func disconnect() async {
        guard !ended else { return }
        ended = true
        incomingContinuation.finish()
        for queue in streams.values { await queue.finish() }
        streams = [:]
        progressRoutes = [:]
    }

    public func receive() -> AsyncThrowingStream<Data, Error> { incoming }

    /// What the server sends: a response ends its request's stream; a
    /// progress notification goes to the stream of the request its token
    /// names; anything else has no stream to go to and is dropped.
    public func send(_ data: Data) async throws {
        guard let message = try? JSONValue.parse(utf8: Array(data)), let object = message.objectValue else { return }
        if let id = object["id"], object["result"] != nil || object["error"] != nil {
            let key = id.encoded()
            guard let queue = streams.removeValue(forKey: key) else { return }
            progressRoutes = progressRoutes.filter { $0.value != key }
            await queue.push(data, droppable: false)
            await queue.finish()
            return
        }
        if object["method"]?.stringValue == "notifications/progress",
           let token = object["params"]?["progressToken"], let key = progressRoutes[token.encoded()], let queue = streams[key] {
            await queue.push(data, droppable: true)
        }
    }

    /// One HTTP request of this session (after `MCPSessions` matched its
    /// `Mcp-Session-Id`, or made the session for an initialize).
    public func handle(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        guard !ended else { return .error(statusCode: 404, .invalidRequest("Not Found: the MCP session has ended")) }
        switch request.method.uppercased() {
        case "POST": return await post(request)
        case "DELETE":
            await disconnect()
            return .ok(headers: [HTTPHeaderName.sessionID: sessionID])
        case "GET":
            return .error(statusCode: 405, .invalidRequest("Method Not Allowed: this server sends nothing outside a request's own stream"),
                          sessionID: sessionID, extraHeaders: [HTTPHeaderName.allow: "POST, DELETE"])
        default:
            return .error(statusCode: 405, .invalidRequest("Method Not Allowed"), sessionID: sessionID,
                          extraHeaders: [HTTPHeaderName.allow: "POST, DELETE"])
        }
    }

    private func post(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        let accept = request.header(HTTPHeaderName.accept) ?? ""
        guard accept.contains("text/event-stream") || accept.contains("*/*") else {
            return .error(statusCode: 406, .invalidRequest("Not Acceptable: Accept must include text/event-stream"), sessionID: sessionID)
        }
        guard (request.header(HTTPHeaderName.contentType) ?? "").lowercased().hasPrefix("application/json") else {
            return .error(statusCode: 415, .invalidRequest("Unsupported Media Type: the body must be application/json"), sessionID: sessionID)
        }
        guard let body = request.body, let message = try? JSONValue.parse(utf8: Array(body)), let object = message.objectValue else {
            return .error(statusCode: 400, .parseError("the body is not one JSON-RPC message"), sessionID: sessionID)
        }
        guard let id = object["id"], object["method"]?.stringValue != nil else {
            // A notification or a response to the server: accepted.
            incomingContinuation.yield(body)
            return .accepted(headers: [HTTPHeaderName.sessionID: sessionID])
        }
        let key = id.encoded()
        guard streams[key] == nil else {
            return .error(statusCode: 409, .invalidRequest("a request with id \(key) is already in flight"), sessionID: sessionID)
        }
        guard streams.count < Self.maxStreams else {
            return .error(statusCode: 429, .invalidRequest("more than \(Self.maxStreams) requests in flight in this MCP session"),
                          sessionID: sessionID)
        }
        let queue = EventQueue(maxDroppable: Self.maxPendingProgress)
        streams[key] = queue
        if let token = object["params"]?["_meta"]?["progressToken"] {
            progressRoutes[token.encoded()] = key
        }
        incomingContinuation.yield(body)
        let stream = AsyncThrowingStream<Data, Error>(unfolding: { await queue.next() })
        return .stream(stream, headers: [HTTPHeaderName.sessionID: sessionID, HTTPHeaderName.contentType: "text/event-stream",
                                         HTTPHeaderName.cacheControl: "no-cache"])
    }
}

/// One request's events, in order, as SSE bytes: at most `maxDroppable`
/// unread bytes of droppable ones (progress); the response always fits.
actor EventQueue {
    private var queue: [(Data, Bool)] = []
    private var droppableBytes = 0
    private let maxDroppable: Int
    private var waiter: CheckedContinuation<Data?, Never>?
    private var finished = false

    init(maxDroppable: Int) {
        self.maxDroppable = maxDroppable
    }

    func push(_ message: Data, droppable: Bool) {
        guard !finished else { return }
        let event = Self.event(message)
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: event)
            return
        }
        if droppable {
            guard droppableBytes + event.count <= maxDroppable else { return }
            droppableBytes += event.count
        }
        queue.append((event, droppable))
    }

    func finish() {
        finished = true
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: nil)
        }
    }

    func next() async -> Data? {
        if !queue.isEmpty {
            let (event, droppable) = queue.removeFirst()
            if droppable { droppableBytes -= event.count }
            return event
        }
        if finished { return nil }
        return await withCheckedContinuation { waiter = $0 }
    }

    /// `event: message` with the JSON on `data:` lines.
    static func event(_ message: Data) -> Data {
        var out = Data("event: message\n".utf8)
        for line in message.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            out.append(contentsOf: "data: ".utf8)
            out.append(contentsOf: line)
            out.append(UInt8(ascii: "\n"))
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }
}

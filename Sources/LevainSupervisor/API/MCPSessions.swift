import Foundation
import LevainAPI
import LevainJSON
import LevainMCP
import MCP

/// The daemon's MCP sessions (streamable HTTP at `/mcp`): one MCP server
/// and `HTTPSessionTransport` per `Mcp-Session-Id`, each a `ControlServer`
/// whose tool calls go to this supervisor's own Unix socket. The route is
/// behind the listener's authentication (the socket's permissions, or the
/// bearer token on TCP), so an MCP client can do what an API client of that
/// listener can, no more. Bounded: at most `maxSessions` at once. A session
/// is idle when it has no request in flight; one idle for `idleSeconds` is
/// ended, and when a new session needs room the least recently used idle
/// one is ended (with none idle, the new one is refused with 503).
actor MCPSessions {
    private struct Entry {
        let server: Server
        let transport: HTTPSessionTransport
        let control: ControlServer
        var lastUsed: ContinuousClock.Instant
    }

    static let maxSessions = 64
    static let idleSeconds = 1800
    private var entries: [String: Entry] = [:]
    /// Sessions being made (counted against the limit before their awaits).
    private var making = 0
    private let client: APIClient
    private let version: String

    init(socketPath: String, version: String) {
        client = APIClient(address: .unix(socketPath))
        self.version = version
    }

    func handle(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        if let id = request.header(HTTPHeaderName.sessionID) {
            guard var entry = entries[id] else {
                return .error(statusCode: 404, .invalidRequest("Not Found: no MCP session \(id) here (it was ended or expired); initialize a new one"))
            }
            entry.lastUsed = .now
            entries[id] = entry
            let response = await entry.transport.handle(request)
            if request.method.uppercased() == "DELETE" { end(id) }
            return response
        }
        guard request.method.uppercased() == "POST", Self.isInitialize(request.body) else {
            return .error(statusCode: 400, .invalidRequest("Bad Request: an Mcp-Session-Id header is required (initialize with a POST first)"))
        }
        await sweep()
        if entries.count + making >= Self.maxSessions {
            guard let idle = await leastRecentlyUsedIdle() else {
                return .error(statusCode: 503, .internalError("\(Self.maxSessions) MCP sessions are busy; end one (DELETE /mcp) or retry later"))
            }
            end(idle)
        }
        // Checked again with no await before the count goes up.
        guard entries.count + making < Self.maxSessions else {
            return .error(statusCode: 503, .internalError("\(Self.maxSessions) MCP sessions are busy; retry later"))
        }
        making += 1
        let id = UUID().uuidString.lowercased()
        let transport = HTTPSessionTransport(sessionID: id)
        let control = ControlServer(client: client)
        let server = await control.makeServer(version: version)
        do {
            try await server.start(transport: transport)
        } catch {
            making -= 1
            return .error(statusCode: 500, .internalError("the MCP server could not start: \(error)"))
        }
        entries[id] = Entry(server: server, transport: transport, control: control, lastUsed: .now)
        making -= 1
        return await transport.handle(request)
    }

    /// Ends every session (shutdown): their streams finish.
    func endAll() {
        for id in Array(entries.keys) { end(id) }
    }

    private func end(_ id: String) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        Task {
            await entry.transport.disconnect()
            await entry.server.stop()
            await entry.control.shutdown()
        }
    }

    /// Ends the sessions idle for longer than `idleSeconds`.
    private func sweep() async {
        let now = ContinuousClock.now
        for (id, entry) in entries where now - entry.lastUsed > .seconds(Self.idleSeconds) {
            if await entry.transport.openStreams == 0 { end(id) }
        }
    }

    private func leastRecentlyUsedIdle() async -> String? {
        var best: (String, ContinuousClock.Instant)? = nil
        for (id, entry) in entries where await entry.transport.openStreams == 0 {
            if best == nil || entry.lastUsed < best!.1 { best = (id, entry.lastUsed) }
        }
        return best?.0
    }

    static func isInitialize(_ body: Data?) -> Bool {
        guard let body, let message = try? JSONValue.parse(utf8: Array(body)) else { return false }
        return message["method"]?.stringValue == "initialize"
    }
}

/// Refuses requests from web pages (an `Origin` header): the control API
/// is for programs, and a page must not drive a session through a user's
/// local socket or token.
enum BrowserCheck {
    static func refusal(_ request: MCP.HTTPRequest) -> MCP.HTTPResponse? {
        guard request.header(HTTPHeaderName.origin) != nil else { return nil }
        return .error(statusCode: 403, .invalidRequest("Forbidden: requests from web pages (with an Origin header) are not served"))
    }
}

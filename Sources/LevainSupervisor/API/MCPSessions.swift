import Foundation
import LevainAPI
import LevainMCP
import MCP

/// The daemon's MCP sessions (streamable HTTP at `/mcp`): one MCP server
/// and stateful transport per `Mcp-Session-Id`, each a `ControlServer`
/// whose tool calls go to this supervisor's own Unix socket. The route is
/// behind the listener's authentication (the socket's permissions, or the
/// bearer token on TCP), so an MCP client can do what an API client of that
/// listener can, no more. Bounded: at most `maxSessions` at once; one
/// unused for `idleSeconds` is ended when room is needed or at the next
/// sweep.
actor MCPSessions {
    private struct Entry {
        let server: Server
        let transport: StatefulHTTPServerTransport
        let control: ControlServer
        var lastUsed: ContinuousClock.Instant
    }

    static let maxSessions = 64
    static let idleSeconds = 1800
    private var entries: [String: Entry] = [:]
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
            let response = await entry.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE" { await end(id) }
            return response
        }
        guard request.method.uppercased() == "POST" else {
            return .error(statusCode: 400, .invalidRequest("Bad Request: Mcp-Session-Id header is required (initialize with a POST first)"))
        }
        sweep()
        if entries.count >= Self.maxSessions, let oldest = entries.min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
            await end(oldest.key)
        }
        let transport = StatefulHTTPServerTransport(validationPipeline: StandardValidationPipeline(validators: [
            NoBrowserOrigin(), AcceptHeaderValidator(mode: .sseRequired), ContentTypeValidator(),
            ProtocolVersionValidator(), SessionValidator(),
        ]))
        let control = ControlServer(client: client)
        let server = await control.makeServer(version: version)
        do {
            try await server.start(transport: transport)
        } catch {
            return .error(statusCode: 500, .internalError("the MCP server could not start: \(error)"))
        }
        let response = await transport.handleRequest(request)
        if let id = response.headers.first(where: { $0.key.lowercased() == HTTPHeaderName.sessionID.lowercased() })?.value {
            entries[id] = Entry(server: server, transport: transport, control: control, lastUsed: .now)
        } else {
            // Not an initialize (refused by the transport): nothing to keep.
            await server.stop()
        }
        return response
    }

    /// Ends every session (shutdown): their SSE streams finish.
    func endAll() async {
        for id in Array(entries.keys) { await end(id) }
    }

    var count: Int { entries.count }

    private func end(_ id: String) async {
        guard let entry = entries.removeValue(forKey: id) else { return }
        await entry.server.stop()
        await entry.transport.disconnect()
        await entry.control.shutdown()
    }

    private func sweep() {
        let now = ContinuousClock.now
        let stale = entries.filter { now - $0.value.lastUsed > .seconds(Self.idleSeconds) }.map(\.key)
        for id in stale {
            Task { await self.end(id) }
        }
    }
}

/// Refuses requests from web pages (an `Origin` header): the control API
/// is for programs, and a page must not drive a session through a user's
/// local socket or token.
struct NoBrowserOrigin: HTTPRequestValidator {
    func validate(_ request: MCP.HTTPRequest, context: HTTPValidationContext) -> MCP.HTTPResponse? {
        guard request.header(HTTPHeaderName.origin) != nil else { return nil }
        return .error(statusCode: 403, .invalidRequest("Forbidden: requests from web pages (with an Origin header) are not served"),
                      sessionID: context.sessionID)
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import MCP
import NIOCore

extension APIServer {
    /// `/mcp`: Levain's MCP tools over streamable HTTP (MCPSessions.swift).
    func addMCPRoutes(_ router: Router<BasicRequestContext>, _ sessions: MCPSessions) {
        let api = self
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            var request = request
            let body: ByteBuffer
            do {
                body = try await request.collectBody(upTo: api.config.maxRequestBytes)
            } catch {
                return Self.mcpResponse(.error(statusCode: 413, .invalidRequest("the request body is larger than \(api.config.maxRequestBytes) bytes")), gate: api.gate, sessions: sessions)
            }
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let mcpRequest = MCP.HTTPRequest(method: request.method.rawValue, headers: headers,
                                             body: body.readableBytes == 0 ? nil : Data(body.readableBytesView), path: "/mcp")
            if let refusal = BrowserCheck.refusal(mcpRequest) { return Self.mcpResponse(refusal, gate: api.gate, sessions: sessions) }
            return Self.mcpResponse(await sessions.handle(mcpRequest), gate: api.gate, sessions: sessions)
        }
        router.post("/mcp", use: handler)
        router.get("/mcp", use: handler)
        router.delete("/mcp", use: handler)
    }

    /// The transport's answer as Hummingbird's; an SSE stream ends at
    /// shutdown (MCPSessions.endAll finishes it).
    static func mcpResponse(_ r: MCP.HTTPResponse, gate: APIGate, sessions: MCPSessions) -> Response {
        var fields = HTTPFields()
        for (name, value) in r.headers {
            if let n = HTTPField.Name(name) { fields[n] = value }
        }
        let status = HTTPResponse.Status(code: r.statusCode)
        switch r {
        case .stream(let stream, _):
            return Response(status: status, headers: fields, body: ResponseBody { writer in
                // Shutdown wakes streams: ending the MCP sessions finishes theirs.
                let id = gate.streamStarted(waker: { Task { await sessions.endAll() } })
                defer { gate.streamEnded(id) }
                do {
                    for try await data in stream { try await writer.write(ByteBuffer(bytes: data)) }
                } catch {}
                try await writer.finish(nil)
            })
        default:
            let data = r.bodyData ?? Data()
            return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainJSON
import LevainProtocol
import LevainSessionLog
import NIOCore

/// The control API: HTTP/1.1 + JSON (docs/API.md, docs/openapi.yaml).
public struct APIServer: Sendable {
    public let supervisor: Supervisor
    let config: SupervisorConfig
    /// Closed at shutdown (APIShutdown.swift), for every listener.
    public let gate = APIGate()
    /// The MCP sessions of `/mcp` (both listeners share them).
    let mcpSessions: MCPSessions

    public init(supervisor: Supervisor) {
        self.supervisor = supervisor
        self.config = supervisor.context.config
        self.mcpSessions = MCPSessions(socketPath: config.socketPath, version: Self.version)
    }

    public static let version = "0.2.0"

    /// The routes; with a token, every request must carry
    /// `Authorization: Bearer TOKEN` (the TCP listener). Each resource's
    /// routes are in Routes/, over the narrow protocol of what they need of
    /// the supervisor (Backends.swift).
    public func router(tokens: TokenStore? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ShutdownGate(gate: gate))
        if let tokens { router.add(middleware: BearerAuth(tokens: tokens)) }
        router.add(middleware: PathGuard())
        addServiceRoutes(router, supervisor)
        addSessionRoutes(router, supervisor)
        addRunRoutes(router, supervisor)
        addToolRoutes(router, supervisor)
        addFileRoutes(router, supervisor)
        addArchiveRoutes(router, supervisor)
        addLogRoutes(router, supervisor)
        addMCPRoutes(router, mcpSessions)
        return router
    }
    // MARK: the JSON shapes of the log's records (LevainAPI's APIJSON)

    static func json(_ s: SessionRecord) -> JSONValue { APIJSON.session(s) }
    static func json(_ e: LoggedEvent) -> JSONValue { APIJSON.event(e) }
    static func json(_ r: VerifyReport) -> JSONValue { APIJSON.verify(r) }

    // MARK: handlers' helpers

    /// Runs a handler; a thrown SupervisorError (or anything else) becomes
    /// a JSON error response.
    func respond(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let e as SupervisorError {
            return error(e)
        } catch let e as HTTPError {
            return error(SupervisorError(e.status.code == 413 ? .tooLarge : .invalid, "\(e)"))
        } catch {
            return self.error(SupervisorError(.internalError, "\(error)", cause: error))
        }
    }

    /// A JSON error answer; a failure while the API shuts down (the log
    /// closing under a late handler) is 503, not 500.
    func error(_ e: SupervisorError) -> Response {
        if e.code == .internalError, gate.isClosing {
            return Self.error(SupervisorError(.unavailable, APIGate.shuttingDown))
        }
        return Self.error(e)
    }

    static func error(_ e: SupervisorError) -> Response {
        .json(HTTPResponse.Status(code: e.httpStatus), e.json)
    }

    func jsonBody(_ request: Request) async throws -> JSONObject {
        var request = request
        let tooLarge = SupervisorError(.tooLarge, "the request body is larger than \(config.maxRequestBytes) bytes (limits.max_request)", field: "body")
        // A declared size above the limit is refused before a byte is read.
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > config.maxRequestBytes { throw tooLarge }
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: config.maxRequestBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw tooLarge
        } catch {
            throw SupervisorError(.invalid, "the request body could not be read: \(error)", field: "body", cause: error)
        }
        if buffer.readableBytes == 0 { return [:] }
        do {
            // The bytes as they came: invalid UTF-8 is an error, not U+FFFD.
            return try JSONValue.parseObject(utf8: Array(buffer.readableBytesView))
        } catch {
            if let path = error.duplicateKeyPath {
                throw SupervisorError(.invalid, "the key \(path) appears twice in the body: give each key once", field: path)
            }
            throw SupervisorError(.invalid, "the body is not a JSON object: \(error.message)", field: "body")
        }
    }

    /// A read of the session log: its failure is the supervisor's (500);
    /// errors of the request (SupervisorError) are not caught here.
    static func logRead<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as SupervisorError {
            throw e
        } catch {
            throw SupervisorError(.internalError, "\(error)", cause: error)
        }
    }

    func param(_ context: BasicRequestContext, _ name: String) throws -> String {
        guard let v = context.parameters.get(name) else { throw SupervisorError(.invalid, "missing \(name)", field: name) }
        return v
    }

    func doubleQuery(_ request: Request, _ name: String, max: Double = 1e9) throws -> Double? {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let v = Double(raw), v.isFinite, v >= 0, v <= max else {
            throw SupervisorError(.invalid, "query parameter \(name)=\(raw) is not a number between 0 and \(max)", field: name)
        }
        return v
    }

    /// A whole-number query parameter in 0...max.
    func intQuery(_ request: Request, _ name: String, max: Int64) throws -> Int64? {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let v = Int64(raw), v >= 0, v <= max else {
            throw SupervisorError(.invalid, "query parameter \(name)=\(raw) is not a whole number between 0 and \(max)", field: name)
        }
        return v
    }

    func enumQuery<E: RawRepresentable & CaseIterable>(_ request: Request, _ name: String, _: E.Type) throws -> E? where E.RawValue == String {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let v = E(rawValue: String(raw)) else {
            throw SupervisorError(.invalid, "\(name) must be one of \(E.allCases.map(\.rawValue).joined(separator: ", "))", field: name)
        }
        return v
    }

}

extension Response {
    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        var buffer = ByteBuffer(string: value.encoded())
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer))
    }
}


#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainProtocol
import LevainSessionLog
import NIOCore

extension APIServer {
    /// Sessions: open, list, read, close, reopen, and a session's events.
    func addSessionRoutes(_ router: Router<BasicRequestContext>, _ s: some SessionsBackend & EventsBackend) {
        let api = self
        router.post("/v1/sessions") { request, _ in
            await api.respond {
                let body = try await api.jsonBody(request)
                let spec = try SessionSpec(request: body, defaultPolicy: api.config.defaultPolicy)
                let record = try await s.createSession(spec)
                return .json(.created, APIServer.json(record))
            }
        }
        router.get("/v1/sessions") { request, _ in
            await api.respond {
                let status = try api.enumQuery(request, "status", SessionStatus.self)
                let list = try await s.sessions(tenant: request.uri.queryParameters["tenant"].map(String.init), status: status)
                return .json(.ok, ["sessions": .array(list.map(APIServer.json))])
            }
        }
        router.get("/v1/sessions/:id") { _, context in
            await api.respond { .json(.ok, APIServer.json(try await s.session(try api.param(context, "id")))) }
        }
        router.delete("/v1/sessions/:id") { _, context in
            await api.respond { .json(.ok, APIServer.json(try await s.closeSession(try api.param(context, "id")))) }
        }
        router.post("/v1/sessions/:id/reopen") { _, context in
            await api.respond { .json(.ok, APIServer.json(try await s.reopenSession(try api.param(context, "id")))) }
        }
        router.get("/v1/sessions/:id/events") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                _ = try await s.session(id)
                return try api.eventStream(request, session: id, run: nil, s)
            }
        }
    }
}

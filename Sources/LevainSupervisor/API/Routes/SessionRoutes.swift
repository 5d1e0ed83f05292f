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

extension APIServer {
    /// A session as the API shows it: the log's record and whether it is paused.
    static func json(_ record: SessionRecord, _ s: some SessionsBackend) async -> JSONValue {
        guard case .object(var o) = APIJSON.session(record) else { return APIJSON.session(record) }
        o["paused"] = .bool(record.status == .open ? await s.isPaused(record.id) : false)
        return .object(o)
    }

    /// Sessions: open, list, read, close, reopen, and a session's events.
    func addSessionRoutes(_ router: Router<BasicRequestContext>, _ s: some SessionsBackend & EventsBackend) {
        let api = self
        router.post("/v1/sessions") { request, _ in
            await api.respond {
                let body = try await api.jsonBody(request)
                let spec = try SessionSpec(request: body, defaultPolicy: api.config.defaultPolicy)
                let record = try await s.createSession(spec)
                return .json(.created, await APIServer.json(record, s))
            }
        }
        router.get("/v1/sessions") { request, _ in
            await api.respond {
                let status = try api.enumQuery(request, "status", SessionStatus.self)
                let list = try await s.sessions(tenant: request.uri.queryParameters["tenant"].map(String.init), status: status)
                var out: [JSONValue] = []
                for record in list { out.append(await APIServer.json(record, s)) }
                return .json(.ok, ["sessions": .array(out)])
            }
        }
        router.get("/v1/sessions/:id") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.session(try api.param(context, "id")), s)) }
        }
        router.delete("/v1/sessions/:id") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.closeSession(try api.param(context, "id")), s)) }
        }
        router.post("/v1/sessions/:id/reopen") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.reopenSession(try api.param(context, "id")), s)) }
        }
        // Pause and resume: the runs' cgroups frozen and thawed (SessionPause.swift).
        router.post("/v1/sessions/:id/pause") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.setPaused(try api.param(context, "id"), true), s)) }
        }
        router.post("/v1/sessions/:id/resume") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.setPaused(try api.param(context, "id"), false), s)) }
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

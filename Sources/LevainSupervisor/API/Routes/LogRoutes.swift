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
    /// The session log: events, verify, export, usage, and the tail.
    func addLogRoutes(_ router: Router<BasicRequestContext>, _ s: some EventsBackend) {
        let api = self
        router.get("/v1/log/events") { request, _ in
            await api.respond {
                let log = s.log
                // Every number is checked before the log is read: a bad one
                // is the client's 400, never the log's 500.
                let limit = Int(try api.intQuery(request, "limit", max: 10_000) ?? 1000)
                let tail = try api.intQuery(request, "tail", max: 10_000)
                let afterSeq = try api.intQuery(request, "after_seq", max: Int64.max / 2) ?? 0
                let afterID = try api.intQuery(request, "after_id", max: Int64.max / 2) ?? 0
                if let tail {
                    let (list, last) = try APIServer.logRead {
                        let last = try log.lastEventID()
                        return (try log.events(afterID: max(0, last - tail), limit: 10_000), last)
                    }
                    return .json(.ok, ["events": .array(list.map(APIServer.json)), "last_id": .int(last)])
                }
                let events: [LoggedEvent] = try APIServer.logRead {
                    if let run = request.uri.queryParameters["run"] { return try log.events(run: String(run)) }
                    if let session = request.uri.queryParameters["session"] {
                        return try log.events(session: String(session), afterSeq: afterSeq, limit: limit)
                    }
                    return try log.events(afterID: afterID, limit: limit)
                }
                return .json(.ok, ["events": .array(events.map(APIServer.json))])
            }
        }
        router.get("/v1/log/verify") { request, _ in
            await api.respond {
                let session = request.uri.queryParameters["session"].map(String.init)
                if let session { _ = try await s.session(session) }
                let report = try APIServer.logRead { try s.log.verify(session: session) }
                return .json(.ok, APIServer.json(report))
            }
        }
        router.get("/v1/log/export") { request, _ in
            await api.respond {
                let session = request.uri.queryParameters["session"].map(String.init)
                // An unknown session is 404, as for /v1/log/verify (not an empty export).
                if let session { _ = try await s.session(session) }
                var lines: [UInt8] = []
                do {
                    try s.log.exportJSONL(session: session) { line in lines.append(contentsOf: line.utf8); lines.append(10) }
                } catch {
                    throw SupervisorError(.internalError, "\(error)", cause: error)
                }
                return Response(status: .ok, headers: [.contentType: "application/x-ndjson"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: lines)))
            }
        }
        router.get("/v1/usage") { request, _ in
            await api.respond {
                let q = request.uri.queryParameters
                let by = q["by"].map(String.init) ?? "model"
                guard let grouping = SessionLog.UsageGrouping(rawValue: by) else {
                    throw SupervisorError(.invalid, "by: one of \(SessionLog.UsageGrouping.allCases.map(\.rawValue).joined(separator: ", "))", field: "by")
                }
                do {
                    let u = try s.log.modelUsage(session: q["session"].map(String.init), tenant: q["tenant"].map(String.init),
                                                         run: q["run"].map(String.init), groupBy: grouping)
                    return .json(.ok, APIJSON.usage(u.total, rows: u.rows, by: grouping.rawValue))
                } catch {
                    throw SupervisorError(.internalError, "\(error)", cause: error)
                }
            }
        }
        router.get("/v1/log/tail") { request, _ in
            await api.respond { try api.eventStream(request, session: nil, run: nil, s) }
        }
    }

    /// Server-sent events of a run, a session, or the whole log; resumable
    /// with Last-Event-ID (a session's seq, or the log's id for the tail).
    func eventStream(_ request: Request, session: String?, run: String?, _ s: some EventsBackend) throws -> Response {
        let log = s.log
        var fromHeader: Int64? = nil
        if let raw = HTTPField.Name("Last-Event-ID").flatMap({ request.headers[$0] }) {
            guard let v = Int64(raw), v >= 0, v <= Int64.max / 2 else {
                throw SupervisorError(.invalid, "Last-Event-ID: \(raw) is not an event id (a whole number between 0 and \(Int64.max / 2))", field: "Last-Event-ID")
            }
            fromHeader = v
        }
        let fromQuery: Int64? = try intQuery(request, "after", max: Int64.max / 2)
        // The whole log's tail starts at its end unless a cursor is given.
        let resume: Int64 = (session == nil && run == nil && fromHeader == nil && fromQuery == nil)
            ? ((try? log.lastEventID()) ?? 0) : (fromHeader ?? fromQuery ?? 0)
        let follow = request.uri.queryParameters["follow"].map { $0 != "false" && $0 != "0" } ?? true
        let gate = self.gate
        var headers: HTTPFields = [.contentType: "text/event-stream"]
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            // At shutdown the stream sends what the log holds, then ends
            // (the log is closed only after it).
            let stream = gate.streamStarted()
            defer { gate.streamEnded(stream) }
            var cursor = resume
            var idle = 0
            while true {
                let closing = gate.isClosing
                let events: [LoggedEvent]
                if let session {
                    events = (try? log.events(session: session, afterSeq: cursor, limit: 500)) ?? []
                } else {
                    events = (try? log.events(afterID: cursor, limit: 500)) ?? []
                }
                var out = ""
                var finished = false
                for e in events {
                    cursor = session != nil ? e.seq : e.id
                    if let run, e.runID != run { continue }
                    out += "id: \(cursor)\nevent: \(e.type)\ndata: \(APIServer.json(e).encoded())\n\n"
                    if let run, e.runID == run, e.type == EventType.runFinished { finished = true }
                }
                if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                if finished || ((!follow || closing) && events.count < 500) { break }
                if let run, events.isEmpty, let r = try? await s.run(run), r.status.isTerminal {
                    idle += 1
                    if idle > 3 { break }
                }
                if events.count < 500 { try await Task.sleep(nanoseconds: 100_000_000) }
            }
            try await writer.finish(nil)
        })
    }
}

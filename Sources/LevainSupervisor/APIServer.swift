#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import HTTPTypes
import Hummingbird
import LevainAgent
import LevainPolicy
import LevainProtocol
import LevainSandbox
import LevainSessionLog
import NIOCore
import Synchronization

/// The control API: HTTP/1.1 + JSON (docs/API.md, docs/openapi.yaml).
public struct APIServer: Sendable {
    public let supervisor: Supervisor
    let config: SupervisorConfig
    /// Closed at shutdown (APIShutdown.swift), for every listener.
    public let gate = APIGate()

    public init(supervisor: Supervisor) {
        self.supervisor = supervisor
        self.config = supervisor.context.config
    }

    public static let version = "0.2.0"

    /// The routes; with a token, every request must carry
    /// `Authorization: Bearer TOKEN` (the TCP listener).
    public func router(tokens: TokenStore? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ShutdownGate(gate: gate))
        if let tokens { router.add(middleware: BearerAuth(tokens: tokens)) }
        router.add(middleware: PathGuard())
        let s = supervisor
        let api = self

        router.get("/v1/health") { _, _ in
            await api.respond {
                let (running, waiting) = await s.slotsInUse()
                let verify = await s.startupVerify
                // 503 while the log cannot be written: no work is accepted.
                if let failure = s.log.writeFailure {
                    return .json(.serviceUnavailable, [
                        "status": "log_unwritable", "reason": .string(failure.message),
                        "failed_writes": JSONValue(failure.failures),
                        "sessions": JSONValue(await s.sessionCount),
                        "runs_running": JSONValue(running), "runs_waiting": JSONValue(waiting),
                    ])
                }
                return .json(.ok, [
                    "status": .string(await s.isAccepting ? "ok" : "shutting_down"),
                    "sessions": JSONValue(await s.sessionCount),
                    "runs_running": JSONValue(running), "runs_waiting": JSONValue(waiting),
                    "log": ["verified_at_start": .bool(verify?.ok ?? false), "problems": JSONValue(verify?.problems.count ?? 0),
                            "verifying": .bool(await s.verifyingAtStart)],
                ])
            }
        }
        router.get("/v1/version") { _, _ in
            Response.json(.ok, ["levain": .string(APIServer.version), "protocol": .int(Int64(ProtocolLimits.protocolVersion))])
        }

        // Sessions.
        router.post("/v1/sessions") { request, _ in
            await api.respond {
                let body = try await api.jsonBody(request)
                let spec = try APIServer.sessionSpec(body, defaultPolicy: api.config.defaultPolicy)
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
                return try api.eventStream(request, session: id, run: nil)
            }
        }

        // Runs.
        router.post("/v1/sessions/:id/runs") { request, context in
            let arrival = RunState.tracing ? RunState.now() : nil
            return await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                let spec = try APIServer.runSpec(body)
                let (record, created) = try await s.submitRun(session: id, spec, arrival: arrival)
                if body["wait"]?.boolValue == true {
                    let done = await (try await s.runState(record.id)).wait(timeout: nil)
                    return .json(created ? .created : .ok, await api.json(done))
                }
                return .json(created ? .created : .ok, await api.json(record))
            }
        }
        // Agents, tools and approvals (docs/TOOLS.md).
        router.post("/v1/sessions/:id/agent-runs") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                try Fields(body, allowed: ["agent", "agent_file", "input", "wait"]).check()
                guard let text = body["agent"]?.stringValue else {
                    throw SupervisorError(.invalid, "agent must be the text of an agent file (TOML)", field: "agent")
                }
                guard let input = body["input"]?.stringValue else { throw SupervisorError(.invalid, "input must be a string", field: "input") }
                let file = body["agent_file"]?.stringValue ?? "agent.toml"
                let spec: AgentSpec
                do throws(PolicyError) { spec = try AgentSpec.parse(text, file: file) } catch {
                    throw SupervisorError(.invalid, "\(error)", field: "agent")
                }
                let record = try await s.submitAgentRun(session: id, agent: spec, input: input)
                if body["wait"]?.boolValue == true {
                    let done = await (try await s.runState(record.id)).wait(timeout: nil)
                    return .json(.created, await api.json(done))
                }
                return .json(.created, await api.json(record))
            }
        }
        router.get("/v1/sessions/:id/tools") { _, context in
            await api.respond {
                let host = try await s.host(ready: try api.param(context, "id"))
                let tools = await s.context.tools.definitions(policy: host.policy.tools)
                let policy = host.policy.tools
                return .json(.ok, ["tools": .array(tools.map { d in
                    ["name": .string(d.name), "description": .string(d.description), "input_schema": d.inputSchema,
                     "approval": .bool(policy.needsApproval(d.name)), "timeout_s": .double(policy.timeout(for: d.name)),
                     "max_output": .int(Int64(policy.maxOutput(for: d.name)))]
                })])
            }
        }
        router.get("/v1/approvals") { request, _ in
            await api.respond {
                let session = request.uri.queryParameters["session"].map(String.init)
                let list = await s.context.tools.approvals.list(session: session)
                return .json(.ok, ["approvals": .array(list.map(\.json))])
            }
        }
        router.post("/v1/approvals/:id") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                try Fields(body, allowed: ["decision", "reason", "by"]).check()
                guard let d = body["decision"]?.stringValue, d == "allow" || d == "deny" else {
                    throw SupervisorError(.invalid, "decision must be \"allow\" or \"deny\"", field: "decision")
                }
                let reason = body["reason"]?.stringValue ?? ""
                guard reason.utf8.count <= 4096 else { throw SupervisorError(.invalid, "reason is at most 4 KiB", field: "reason") }
                let by = String((body["by"]?.stringValue ?? "api").prefix(128))
                guard let p = try await s.context.tools.approvals.decide(id, allow: d == "allow", by: by, reason: reason) else {
                    throw SupervisorError(.notFound, "no tool call \(id) waits for approval (decided, timed out, or never asked); see GET /v1/approvals", field: "id")
                }
                var o = p.json.objectValue ?? [:]
                o["decision"] = .string(d)
                o["by"] = .string(by)
                o["reason"] = .string(reason)
                return .json(.ok, .object(o))
            }
        }
        router.get("/v1/runs") { request, _ in
            await api.respond {
                let status = try api.enumQuery(request, "status", RunStatus.self)
                let list = try await s.runs(session: request.uri.queryParameters["session"].map(String.init), status: status)
                var out: [JSONValue] = []
                for r in list { out.append(await api.json(r)) }
                return .json(.ok, ["runs": .array(out)])
            }
        }
        router.get("/v1/runs/:id") { _, context in
            await api.respond { .json(.ok, await api.json(try await s.run(try api.param(context, "id")))) }
        }
        router.post("/v1/runs/:id/wait") { request, context in
            await api.respond {
                let state = try await s.runState(try api.param(context, "id"))
                let timeout = try api.doubleQuery(request, "timeout", max: 86_400 * 365)
                return .json(.ok, await api.json(await state.wait(timeout: timeout)))
            }
        }
        router.post("/v1/runs/:id/cancel") { _, context in
            await api.respond {
                let id = try api.param(context, "id")
                _ = try await s.cancelRun(id)
                let state = try await s.runState(id)
                return .json(.ok, await api.json(await state.wait(timeout: 5)))
            }
        }
        router.post("/v1/runs/:id/signal") { request, context in
            await api.respond {
                let body = try await api.jsonBody(request)
                try Fields(body, allowed: ["signal"]).check()
                let signal: Int32
                if let n = body["signal"]?.intValue, (1...64).contains(n) {
                    signal = Int32(n)
                } else if let name = body["signal"]?.stringValue, let n = SignalNames.number(name) {
                    signal = n
                } else {
                    throw SupervisorError(.invalid, "signal must be a number 1-64 or a name like \"TERM\" or \"SIGINT\"", field: "signal")
                }
                return .json(.ok, await api.json(try await s.signalRun(try api.param(context, "id"), signal: signal)))
            }
        }
        router.get("/v1/runs/:id/output/:stream") { request, context in
            await api.respond {
                let state = try await s.runState(try api.param(context, "id"))
                let name = try api.param(context, "stream")
                guard name == "stdout" || name == "stderr" else {
                    throw SupervisorError(.invalid, "stream must be stdout or stderr, not \(name)", field: "stream")
                }
                let spool = name == "stdout" ? state.stdout : state.stderr
                let offset = UInt64(try api.intQuery(request, "offset", max: 1 << 62) ?? 0)
                let follow = request.uri.queryParameters["follow"].map { $0 != "false" && $0 != "0" } ?? true
                return APIServer.outputResponse(spool, offset: offset, follow: follow, gate: api.gate)
            }
        }
        router.put("/v1/runs/:id/stdin") { request, context in
            await api.respond {
                let state = try await s.runState(try api.param(context, "id"))
                guard state.spec.stdinStream else {
                    throw SupervisorError(.conflict, "run \(state.id) was not started with stdin_stream: true", field: "stdin_stream")
                }
                guard let sink = await state.stdinSink() else {
                    throw SupervisorError(.conflict, "run \(state.id) has ended, or its stdin was sent already (one upload per run)")
                }
                var total = 0
                do {
                    for try await buffer in request.body {
                        total += buffer.readableBytes
                        try await sink(Array(buffer.readableBytesView))
                    }
                } catch {
                    // The upload broke off: the run sees the end of its input.
                    try? await sink(nil)
                    throw SupervisorError(.invalid, "the stdin upload broke off after \(total) bytes: \(error)", field: "body")
                }
                try await sink(nil)
                return .json(.ok, ["bytes": JSONValue(total)])
            }
        }
        router.get("/v1/runs/:id/events") { request, context in
            await api.respond {
                let record = try await s.run(try api.param(context, "id"))
                return try api.eventStream(request, session: record.sessionID, run: record.id)
            }
        }

        // Files in a session's workspace.
        router.get("/v1/sessions/:id/files") { request, context in
            await api.respond {
                let path = request.uri.queryParameters["path"].map(String.init) ?? "."
                let r = try await api.fileRequest(try api.param(context, "id"), .fileList(FileList(path: try APIServer.checkPath(path, allowRoot: true))))
                return .json(.ok, ["path": .string(path), "entries": .array((r.entries ?? []).map(APIServer.json))])
            }
        }
        router.get("/v1/sessions/:id/stat/**") { _, context in
            await api.respond {
                let path = try APIServer.checkPath(APIServer.workspacePath(context), allowRoot: true)
                let r = try await api.fileRequest(try api.param(context, "id"), .fileStat(FileStat(path: path)))
                guard let st = r.stat else { throw SupervisorError(.internalError, "the harness sent no stat") }
                var o = APIServer.json(DirEntry(name: path, type: st.type, size: st.size, mode: st.mode, mtime: st.mtime)).objectValue ?? [:]
                o["path"] = .string(path)
                return .json(.ok, .object(o))
            }
        }
        router.get("/v1/sessions/:id/files/**") { _, context in
            await api.respond {
                let path = try APIServer.checkPath(APIServer.workspacePath(context))
                return try await api.readFile(try api.param(context, "id"), path)
            }
        }
        router.put("/v1/sessions/:id/files/**") { request, context in
            await api.respond {
                let path = try APIServer.checkPath(APIServer.workspacePath(context))
                let mode = try api.intQuery(request, "mode", max: 0o7777).map { UInt32($0) } ?? 0o644
                return try await api.writeFile(try api.param(context, "id"), path, request: request, mode: mode)
            }
        }
        router.delete("/v1/sessions/:id/files/**") { request, context in
            await api.respond {
                let path = try APIServer.checkPath(APIServer.workspacePath(context))
                let recursive = ["true", "1"].contains(request.uri.queryParameters["recursive"] ?? "")
                _ = try await api.fileRequest(try api.param(context, "id"), .fileDelete(FileDelete(path: path, recursive: recursive)))
                let id = try api.param(context, "id")
                let tenant = (try? await s.session(id))?.tenant ?? ""
                _ = try? await s.context.log.append(NewEvent(sessionID: id, tenant: tenant, type: "file.deleted", payload: ["path": .string(path)]))
                return Response(status: .noContent)
            }
        }

        // The session log.
        router.get("/v1/log/events") { request, _ in
            await api.respond {
                let log = s.context.log
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
                let report = try APIServer.logRead { try s.context.log.verify(session: session) }
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
                    try s.context.log.exportJSONL(session: session) { line in lines.append(contentsOf: line.utf8); lines.append(10) }
                } catch {
                    throw SupervisorError(.internalError, "\(error)")
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
                    let u = try s.context.log.modelUsage(session: q["session"].map(String.init), tenant: q["tenant"].map(String.init),
                                                         run: q["run"].map(String.init), groupBy: grouping)
                    return .json(.ok, APIJSON.usage(u.total, rows: u.rows, by: grouping.rawValue))
                } catch {
                    throw SupervisorError(.internalError, "\(error)")
                }
            }
        }
        router.get("/v1/log/tail") { request, _ in
            await api.respond { try api.eventStream(request, session: nil, run: nil) }
        }
        return router
    }

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
            return self.error(SupervisorError(.internalError, "\(error)"))
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
        var o: JSONObject = ["code": .string(e.code.rawValue), "message": .string(e.message)]
        if let f = e.field { o["field"] = .string(f) }
        return .json(HTTPResponse.Status(code: e.httpStatus), ["error": .object(o)])
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
            throw SupervisorError(.invalid, "the request body could not be read: \(error)", field: "body")
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
            throw SupervisorError(.internalError, "\(error)")
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

    /// The workspace path of a file route: the catch-all's segments,
    /// percent-decoded (a file named "a b.txt" is "a%20b.txt" in the URL).
    static func workspacePath(_ context: BasicRequestContext) throws -> String {
        var parts: [String] = []
        for segment in context.parameters.getCatchAll() {
            guard let decoded = percentDecode(String(segment)) else {
                throw SupervisorError(.invalid, "the path segment \(segment) has a bad percent escape or is not UTF-8", field: "path")
            }
            parts.append(decoded)
        }
        return parts.joined(separator: "/")
    }

    static func percentDecode(_ s: String) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            it = it.dropFirst(2)
            bytes.append(v)
        }
        guard !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// A workspace path from a URL: relative, no "..", no NUL.
    static func checkPath(_ path: String, allowRoot: Bool = false) throws -> String {
        let p = path.isEmpty ? "." : path
        if p == "." && allowRoot { return p }
        guard p != ".", !p.hasPrefix("/"), !p.utf8.contains(0), p.utf8.count <= 4096 else {
            throw SupervisorError(.invalid, "path \(p) must be relative to the workspace", field: "path")
        }
        guard !p.split(separator: "/").contains("..") else {
            throw SupervisorError(.invalid, "path \(p) leaves the workspace", field: "path")
        }
        return p
    }

    func fileRequest(_ session: String, _ operation: Operation) async throws -> HarnessResponse {
        let host = try await supervisor.host(ready: session)
        let r = try await host.fileRequest(operation)
        guard r.ok else { throw Self.fileError(r) }
        return r
    }

    static func fileError(_ r: LevainProtocol.Response) -> SupervisorError {
        let code = r.error?.code ?? "EIO"
        let message = r.error?.message ?? "failed"
        switch code {
        case "ENOENT", "ENOTDIR": return SupervisorError(.notFound, message, field: "path")
        case "EXDEV": return SupervisorError(.invalid, "\(message) (the path leaves the workspace)", field: "path")
        case "ELOOP": return SupervisorError(.invalid, "\(message) (a symlink: it leads out of the workspace, or it is where the file would go)", field: "path")
        case "EFBIG": return SupervisorError(.tooLarge, message, field: "body")
        case "EISDIR", "ENOTEMPTY", "EEXIST": return SupervisorError(.conflict, message, field: "path")
        case "EACCES", "EPERM", "EROFS": return SupervisorError(.conflict, message, field: "path")
        default: return SupervisorError(.invalid, "\(code): \(message)", field: "path")
        }
    }

    func readFile(_ session: String, _ path: String) async throws -> Response {
        let host = try await supervisor.host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        // Through a spool file: the harness is never held by a slow client.
        var name = [UInt8](repeating: 0, count: 6)
        _ = name.withUnsafeMutableBytes { lv_random_fill($0) }
        let tmp = config.stateDirectory + "/tmp"
        _ = mkdir(tmp, 0o700)
        let spool = OutputSpool(path: tmp + "/read-" + name.map { String($0, radix: 16) }.joined(), limit: config.maxFileBytes)
        connection.receive(stream: stream, sink: { bytes in _ = bytes.withUnsafeBytes { spool.append($0) } }, end: { spool.finish() })
        let r = try await host.fileRequest(.fileRead(FileRead(path: path, stream: stream, maxBytes: config.maxFileBytes)))
        guard r.ok else {
            unlink(spool.path)
            throw Self.fileError(r)
        }
        await spool.wait(beyond: UInt64.max - 1)
        let size = spool.length
        let path = spool.path
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentLength: String(size)],
                        body: ResponseBody(contentLength: Int(size)) { writer in
                            defer { unlink(path) }
                            var offset: UInt64 = 0
                            while offset < size {
                                let chunk = spool.read(from: offset, max: 256 << 10)
                                if chunk.isEmpty { break }
                                offset += UInt64(chunk.count)
                                try await writer.write(ByteBuffer(bytes: chunk))
                            }
                            try await writer.finish(nil)
                        })
    }

    func writeFile(_ session: String, _ path: String, request: Request, mode: UInt32) async throws -> Response {
        guard let lengthText = request.headers[.contentLength], let length = UInt64(lengthText) else {
            throw SupervisorError(.invalid, "a file upload needs a Content-Length header", field: "Content-Length")
        }
        guard length <= config.maxFileBytes else {
            throw SupervisorError(.tooLarge, "\(length) bytes is more than the \(config.maxFileBytes) bytes a file may have", field: "body")
        }
        let host = try await supervisor.host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        // The harness renames the file into place only when exactly
        // `length` bytes arrived (file.write's size): a client that stops
        // early, or sends more, leaves nothing.
        // Queued before any of its DATA (one event loop, in order).
        let response = connection.start(.fileWrite(FileWrite(path: path, stream: stream, maxBytes: length, mode: mode, size: length)))
        var sent: UInt64 = 0
        var bodyError: (any Error)? = nil
        do {
            for try await buffer in request.body {
                guard sent + UInt64(buffer.readableBytes) <= length else { sent += UInt64(buffer.readableBytes); break }
                sent += UInt64(buffer.readableBytes)
                try await connection.send(Array(buffer.readableBytesView), on: stream)
            }
        } catch {
            bodyError = error
        }
        try? await connection.end(stream: stream)
        let r: HarnessResponse
        do { r = try await response.get() } catch { throw SupervisorError(.unavailable, "the session's harness: \(error)") }
        guard r.ok, sent == length, bodyError == nil else {
            if !r.ok, sent == length, bodyError == nil { throw Self.fileError(r) }
            throw SupervisorError(.invalid, "the upload stopped at \(sent) of \(length) bytes (Content-Length); nothing was written", field: "body")
        }
        let tenant = (try? await supervisor.session(session))?.tenant ?? ""
        _ = try? await supervisor.context.log.append(NewEvent(sessionID: session, tenant: tenant, type: "file.written",
                                                              payload: ["path": .string(path), "size": .int(Int64(length))]))
        return .json(.created, ["path": .string(path), "size": .int(Int64(r.size ?? length))])
    }

    static func outputResponse(_ spool: OutputSpool, offset: UInt64, follow: Bool, gate: APIGate) -> Response {
        Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody { writer in
            // At shutdown: what the spool holds is sent, then the end.
            let stream = gate.streamStarted(waker: { spool.wakeWaiters() })
            defer { gate.streamEnded(stream) }
            var offset = offset
            let reader = spool.reader()
            let allocator = ByteBufferAllocator()
            while true {
                let chunk = reader.read(from: offset, max: 1 << 20, allocator: allocator)
                if chunk.readableBytes > 0 {
                    offset += UInt64(chunk.readableBytes)
                    try await writer.write(chunk)
                    continue
                }
                if !follow || spool.isFinished && offset >= spool.length { break }
                if gate.isClosing && offset >= spool.length { break }
                await spool.wait(beyond: offset, batch: 1 << 20, maxDelay: 0.005)
            }
            try await writer.finish(nil)
        })
    }

    /// Server-sent events of a run, a session, or the whole log; resumable
    /// with Last-Event-ID (a session's seq, or the log's id for the tail).
    func eventStream(_ request: Request, session: String?, run: String?) throws -> Response {
        let log = supervisor.context.log
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
        let s = supervisor
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
                    if let run, e.runID == run, e.type == "run.finished" { finished = true }
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

    // MARK: JSON shapes

    static func json(_ s: SessionRecord) -> JSONValue { APIJSON.session(s) }
    static func json(_ e: LoggedEvent) -> JSONValue { APIJSON.event(e) }
    static func json(_ r: VerifyReport) -> JSONValue { APIJSON.verify(r) }

    func json(_ r: RunRecord) async -> JSONValue {
        var o = APIJSON.run(r).objectValue ?? [:]
        if let state = try? await supervisor.runState(r.id) {
            o["stdout_bytes"] = .int(Int64(state.stdout.length))
            o["stderr_bytes"] = .int(Int64(state.stderr.length))
            // Kept output is not the whole output: the cap, or a state
            // directory that could not take it.
            if state.stdout.isTruncated || state.stderr.isTruncated { o["output_truncated"] = true }
            for (name, spool) in [("stdout", state.stdout), ("stderr", state.stderr)] {
                if let loss = spool.loss { o["\(name)_lost_bytes"] = .int(Int64(clamping: loss.bytes)) }
            }
        }
        return .object(o)
    }

    static func json(_ e: DirEntry) -> JSONValue {
        ["name": .string(e.name), "type": .string(e.type.rawValue), "size": .int(Int64(e.size)),
         "mode": .int(Int64(e.mode)), "mtime": .int(e.mtime)]
    }

    // MARK: request bodies

    static func sessionSpec(_ o: JSONObject, defaultPolicy: String) throws -> SessionSpec {
        try Fields(o, allowed: ["policy", "tenant", "labels", "limits", "binds", "harness"]).check()
        var spec = SessionSpec(policy: try Fields.string(o, "policy") ?? defaultPolicy)
        spec.tenant = try Fields.string(o, "tenant") ?? ""
        guard spec.tenant.utf8.count <= 128 else { throw SupervisorError(.invalid, "tenant is longer than 128 bytes", field: "tenant") }
        if let labels = o["labels"] {
            guard let obj = labels.objectValue else { throw SupervisorError(.invalid, "labels must be an object of strings", field: "labels") }
            for (k, v) in obj {
                guard let s = v.stringValue else { throw SupervisorError(.invalid, "labels.\(k) must be a string", field: "labels.\(k)") }
                spec.labels[k] = s
            }
        }
        if let limits = o["limits"] {
            guard let l = limits.objectValue else { throw SupervisorError(.invalid, "limits must be an object", field: "limits") }
            try Fields(l, allowed: ["memory", "cpus", "pids", "timeout"], prefix: "limits.").check()
            if let m = l["memory"] {
                if let s = m.stringValue, let v = Quantity.parseSize(s), v >= 4 << 20 { spec.memory = v }
                else if let i = m.intValue, i >= 4 << 20 { spec.memory = UInt64(i) }
                else { throw SupervisorError(.invalid, "limits.memory must be a size of at least 4M (\"256M\" or bytes)", field: "limits.memory") }
            }
            if let c = l["cpus"] {
                guard let v = c.doubleValue, v >= 0.01, v <= 4096 else {
                    throw SupervisorError(.invalid, "limits.cpus must be a number of cores between 0.01 and 4096", field: "limits.cpus")
                }
                spec.cpus = v
            }
            if let p = l["pids"] {
                guard let v = p.intValue, v >= 1, v <= 4_194_304 else {
                    throw SupervisorError(.invalid, "limits.pids must be a whole number, 1 or more", field: "limits.pids")
                }
                spec.pids = Int(v)
            }
            if let t = l["timeout"] {
                guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v > 0, v < 1e7 else {
                    throw SupervisorError(.invalid, "limits.timeout must be seconds (under 10^7) or a duration like \"30s\"", field: "limits.timeout")
                }
                spec.timeout = v
            }
        }
        if let binds = o["binds"] {
            guard let b = binds.objectValue else { throw SupervisorError(.invalid, "binds must be {\"ro\": [...], \"rw\": [...]}", field: "binds") }
            try Fields(b, allowed: ["ro", "rw"], prefix: "binds.").check()
            for (key, writable) in [("ro", false), ("rw", true)] {
                guard let list = b[key] else { continue }
                guard let items = list.arrayValue?.compactMap(\.stringValue), items.count == list.arrayValue?.count else {
                    throw SupervisorError(.invalid, "binds.\(key) must be an array of \"HOST[:JAIL]\" strings", field: "binds.\(key)")
                }
                for item in items {
                    do {
                        spec.binds.append(try PolicyLoader.parseBind(item, writable: writable, optional: false, file: "binds", line: nil, key: "binds.\(key)"))
                    } catch {
                        throw SupervisorError(.invalid, error.message, field: "binds.\(key)")
                    }
                }
            }
        }
        spec.harness = try Fields.string(o, "harness")
        return spec
    }

    static func runSpec(_ o: JSONObject) throws -> RunSpec {
        try Fields(o, allowed: ["argv", "command", "stdin", "stdin_base64", "stdin_stream", "env", "cwd", "timeout",
                                "cpu_time", "file_size", "idempotency_key", "retry", "wait"]).check()
        var argv: [String]
        if let a = o["argv"] {
            let arr: [JSONValue] = a.arrayValue ?? []
            let strings: [String] = arr.compactMap { $0.stringValue }
            guard !arr.isEmpty, strings.count == arr.count else {
                throw SupervisorError(.invalid, "argv must be a non-empty array of strings", field: "argv")
            }
            argv = strings
            guard o["command"] == nil else { throw SupervisorError(.invalid, "give argv or command, not both", field: "command") }
        } else if let c = try Fields.string(o, "command") {
            guard !c.isEmpty else { throw SupervisorError(.invalid, "command is empty", field: "command") }
            argv = ["/bin/sh", "-c", c]
        } else {
            throw SupervisorError(.invalid, "a run needs argv (an array) or command (a shell command line)", field: "argv")
        }
        guard argv.count <= ProtocolLimits.maxArgvElements, argv.allSatisfy({ !$0.utf8.contains(0) }) else {
            throw SupervisorError(.invalid, "argv has more than \(ProtocolLimits.maxArgvElements) elements or a NUL byte", field: "argv")
        }
        guard argv.allSatisfy({ $0.utf8.count <= ProtocolLimits.maxArgumentBytes }),
              argv.reduce(0, { $0 + $1.utf8.count + 1 }) <= ProtocolLimits.maxArgvTotalBytes else {
            throw SupervisorError(.invalid, "argv is too large: at most \(ProtocolLimits.maxArgumentBytes) bytes per element and \(ProtocolLimits.maxArgvTotalBytes) in all", field: "argv")
        }
        var spec = RunSpec(argv: argv)
        if let s = try Fields.string(o, "stdin") { spec.stdin = Array(s.utf8) }
        if o["stdin"].map({ !$0.isNull }) == true && o["stdin_base64"].map({ !$0.isNull }) == true {
            throw SupervisorError(.invalid, "give stdin or stdin_base64, not both", field: "stdin_base64")
        }
        if let b = try Fields.string(o, "stdin_base64") {
            guard let bytes = Base64.decode(b) else { throw SupervisorError(.invalid, "stdin_base64 is not valid base64", field: "stdin_base64") }
            spec.stdin = bytes
        }
        if let v = o["stdin_stream"], v.boolValue == nil {
            throw SupervisorError(.invalid, "stdin_stream must be true or false", field: "stdin_stream")
        }
        spec.stdinStream = o["stdin_stream"]?.boolValue ?? false
        if spec.stdinStream && spec.stdin != nil {
            throw SupervisorError(.invalid, "stdin_stream and stdin cannot both be given", field: "stdin_stream")
        }
        if let env = o["env"] {
            guard let e = env.objectValue else { throw SupervisorError(.invalid, "env must be an object of strings", field: "env") }
            for (k, v) in e {
                guard PolicyLoader.isValidEnvName(k), k.utf8.count <= ProtocolLimits.maxEnvKeyBytes else { throw SupervisorError(.invalid, "env key \(k) is not a valid variable name", field: "env.\(k)") }
                guard let s = v.stringValue, !s.utf8.contains(0) else { throw SupervisorError(.invalid, "env.\(k) must be a string", field: "env.\(k)") }
                spec.env[k] = s
            }
            guard e.count <= ProtocolLimits.maxEnvEntries / 2,
                  e.reduce(0, { $0 + $1.key.utf8.count + ($1.value.stringValue?.utf8.count ?? 0) + 2 }) <= ProtocolLimits.maxEnvTotalBytes / 2 else {
                throw SupervisorError(.invalid, "env is too large: at most \(ProtocolLimits.maxEnvEntries / 2) entries and \(ProtocolLimits.maxEnvTotalBytes / 2) bytes", field: "env")
            }
        }
        if let cwd = try Fields.string(o, "cwd") {
            guard cwd.hasPrefix("/"), !cwd.utf8.contains(0) else { throw SupervisorError(.invalid, "cwd must be an absolute path in the jail", field: "cwd") }
            spec.cwd = cwd
        }
        if let t = o["timeout"] {
            guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v > 0, v < 1e7 else {
                throw SupervisorError(.invalid, "timeout must be a positive number of seconds or a duration like \"30s\"", field: "timeout")
            }
            spec.timeout = v
        }
        if let t = o["cpu_time"] {
            guard let v = t.doubleValue ?? t.stringValue.flatMap(Quantity.parseDuration), v >= 1, v < 1e9 else {
                throw SupervisorError(.invalid, "cpu_time must be at least 1 second (a number or a duration like \"10s\")", field: "cpu_time")
            }
            spec.cpuTime = UInt64(v.rounded(.up))
        }
        if let f = o["file_size"] {
            guard let v = f.intValue.flatMap({ $0 >= 0 ? UInt64($0) : nil }) ?? f.stringValue.flatMap(Quantity.parseSize) else {
                throw SupervisorError(.invalid, "file_size must be a size (\"100M\" or bytes)", field: "file_size")
            }
            spec.fileSize = v
        }
        if let k = try Fields.string(o, "idempotency_key") {
            guard !k.isEmpty, k.utf8.count <= 256 else { throw SupervisorError(.invalid, "idempotency_key must be 1-256 bytes", field: "idempotency_key") }
            spec.idempotencyKey = k
        }
        if let r = try Fields.string(o, "retry") {
            guard let p = RetryPolicy(rawValue: r) else { throw SupervisorError(.invalid, "retry must be \"fail\" or \"retry\"", field: "retry") }
            spec.retry = p
            if p == .retry && (spec.stdin != nil || spec.stdinStream) {
                throw SupervisorError(.invalid, "a run with stdin cannot be retried after a restart (its stdin is not kept): use retry \"fail\"", field: "retry")
            }
        }
        if let w = o["wait"], w.boolValue == nil { throw SupervisorError(.invalid, "wait must be true or false", field: "wait") }
        return spec
    }
}

typealias HarnessResponse = LevainProtocol.Response

/// The API's JSON shapes of the log's records (docs/API.md); the CLI uses
/// them too when it reads the log file directly, so both print the same.
public enum APIJSON {
    /// `GET /v1/usage` and `levain usage --json`.
    public static func usage(_ total: ModelUsage, rows: [ModelUsageRow], by: String) -> JSONValue {
        func one(_ u: ModelUsage) -> JSONObject {
            ["requests": .int(u.requests), "input_tokens": .int(u.inputTokens), "output_tokens": .int(u.outputTokens),
             "tokens": .int(u.tokens), "cost": .double(u.cost)]
        }
        return .object(["total": .object(one(total)), "by": .string(by),
                        "rows": .array(rows.map { r in var o = one(r.usage); o["key"] = .string(r.key); return .object(o) })])
    }

    public static func session(_ s: SessionRecord) -> JSONValue {
        var o: JSONObject = [
            "id": .string(s.id), "tenant": .string(s.tenant), "kind": .string(s.kind.rawValue), "policy": .string(s.policy),
            "labels": .object(s.labels.mapValues { .string($0) }), "status": .string(s.status.rawValue),
            "limits": .object(s.limits), "created_at": .string(s.createdAt.rfc3339),
        ]
        o["workspace"] = s.workspace.map { .string($0) } ?? .null
        o["closed_at"] = s.closedAt.map { .string($0.rfc3339) } ?? .null
        return .object(o)
    }

    public static func run(_ r: RunRecord) -> JSONValue {
        var o: JSONObject = [
            "id": .string(r.id), "session": .string(r.sessionID), "tenant": .string(r.tenant), "status": .string(r.status.rawValue),
            "request": .object(r.request), "attempt": JSONValue(r.attempt), "created_at": .string(r.createdAt.rfc3339),
            "retry": .string(r.retryPolicy.rawValue),
        ]
        o["idempotency_key"] = r.idempotencyKey.map { .string($0) } ?? .null
        o["exit_code"] = r.exitCode.map { JSONValue($0) } ?? .null
        o["signal"] = r.signal.map { JSONValue($0) } ?? .null
        o["error"] = r.error.map { .string($0) } ?? .null
        o["started_at"] = r.startedAt.map { .string($0.rfc3339) } ?? .null
        o["finished_at"] = r.finishedAt.map { .string($0.rfc3339) } ?? .null
        if r.status.isTerminal {
            let outcome = (r.exitCode != nil || r.signal != nil)
                ? ProcessOutcome(code: r.exitCode, signal: r.signal, userMicros: 0, systemMicros: 0, maxRSSKilobytes: 0) : nil
            o["exit_status"] = JSONValue(Supervisor.exitStatus(status: r.status, outcome: outcome))
        } else {
            o["exit_status"] = .null
        }
        return .object(o)
    }

    public static func event(_ e: LoggedEvent) -> JSONValue {
        var o: JSONObject = [
            "id": .int(e.id), "session": .string(e.sessionID), "seq": .int(e.seq), "tenant": .string(e.tenant),
            "time": .string(e.time), "type": .string(e.type), "payload": .object((try? JSONValue.parseObject(e.payloadJSON)) ?? [:]),
            "prev_hash": .string(e.prevHash), "hash": .string(e.hash),
        ]
        o["run"] = e.runID.map { .string($0) } ?? .null
        return .object(o)
    }

    public static func verify(_ r: VerifyReport) -> JSONValue {
        var o: JSONObject = ["ok": .bool(r.ok), "problems": .array(r.problems.map { .string($0.description) }),
                             "sessions_checked": JSONValue(r.sessionsChecked), "events_checked": JSONValue(r.eventsChecked),
                             "integrity_errors": .array(r.integrityErrors.map { .string($0) }), "report": .string(r.description)]
        if let first = r.problems.first {
            o["first_bad_event"] = ["session": .string(first.sessionID), "seq": .int(first.seq), "id": .int(first.eventID)]
        }
        return .object(o)
    }
}

/// Checks a JSON object's keys and reads typed fields with errors naming them.
struct Fields {
    let object: JSONObject
    let allowed: Set<String>
    let prefix: String

    init(_ object: JSONObject, allowed: Set<String>, prefix: String = "") {
        self.object = object
        self.allowed = allowed
        self.prefix = prefix
    }

    func check() throws {
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw SupervisorError(.invalid, "unknown field \(prefix)\(key); known: \(allowed.sorted().joined(separator: ", "))", field: prefix + key)
        }
    }

    static func string(_ o: JSONObject, _ key: String) throws -> String? {
        guard let v = o[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw SupervisorError(.invalid, "\(key) must be a string", field: key) }
        return s
    }
}

extension Response {
    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        var buffer = ByteBuffer(string: value.encoded())
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer))
    }
}

/// `Authorization: Bearer TOKEN` on every request (the TCP listener).
struct BearerAuth: RouterMiddleware {
    typealias Context = BasicRequestContext
    let tokens: TokenStore

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let header = request.headers[.authorization] ?? ""
        let given = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : ""
        let message: String
        switch tokens.check(given) {
        case .valid:
            return try await next(request, context)
        case .missing: message = "missing bearer token (Authorization: Bearer TOKEN)"
        case .expired: message = "the bearer token has expired"
        case .unknown: message = "wrong bearer token"
        }
        var r = APIServer.error(SupervisorError(.unauthorized, message, field: "Authorization"))
        r.headers[.wwwAuthenticate] = "Bearer"
        return r
    }
}

/// Refuses request paths with dot segments or empty segments (raw or
/// percent-encoded) before routing: a workspace path is relative and plain,
/// and the answer names the field instead of a bare 404.
struct PathGuard: RouterMiddleware {
    typealias Context = BasicRequestContext

    static func isClean(_ rawPath: String) -> Bool {
        let path = rawPath.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? rawPath
        let decoded = path.replacingPercentDots()
        let segments = decoded.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        return !segments.contains { $0 == ".." || $0 == "." || $0.isEmpty } || decoded == "/"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.isClean(request.uri.string) else {
            return APIServer.error(SupervisorError(.invalid, "the path \(request.uri.path) has a '..', '.' or empty segment: workspace paths are relative to the workspace and stay inside it", field: "path"))
        }
        do {
            return try await next(request, context)
        } catch let e as HTTPError where e.status == .notFound || e.status == .methodNotAllowed {
            // No such route: a JSON error like every other answer.
            return APIServer.error(SupervisorError(.notFound, "no route \(request.method.rawValue) \(request.uri.path) (see docs/API.md)", field: "path"))
        }
    }
}

extension String {
    /// "%2e" and "%2E" as ".", "%2f"/"%2F" as "/" (what a router would decode).
    func replacingPercentDots() -> String {
        var out = ""
        var it = self.makeIterator()
        var pending: [Character] = []
        while let c = it.next() {
            if c == "%" || !pending.isEmpty {
                pending.append(c)
                if pending.count == 3 {
                    let code = String(pending[1...]).lowercased()
                    if code == "2e" { out.append(".") } else if code == "2f" { out.append("/") } else { out.append(contentsOf: pending) }
                    pending = []
                }
                continue
            }
            out.append(c)
        }
        out.append(contentsOf: pending)
        return out
    }
}

/// The bearer tokens of the TCP listener, from `tcp.token_file`: one token
/// per line (at least 16 characters), optionally `TOKEN not_after=RFC3339`;
/// `#` starts a comment. The file is read again when it changes (checked
/// at most once a second), so tokens can be rotated without a restart.
public final class TokenStore: Sendable {
    public enum Verdict: Equatable, Sendable { case valid, missing, expired, unknown }

    struct Entry: Sendable {
        var token: [UInt8]
        var notAfter: Int64?
    }

    private struct State: Sendable {
        var entries: [Entry] = []
        var mtime: Int64 = -1
        var checkedAt: UInt64 = 0
    }

    let path: String
    private let state = Mutex(State())

    public init(path: String) throws(SupervisorError) {
        self.path = path
        guard reload(force: true), !state.withLock({ $0.entries.isEmpty }) else {
            throw SupervisorError(.invalid, "tcp.token_file \(path) holds no token of at least 16 characters")
        }
    }

    /// Parses a token file's text.
    static func parse(_ text: String) -> [Entry] {
        var out: [Entry] = []
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = words.first, first.utf8.count >= 16 else { continue }
            var entry = Entry(token: Array(first.utf8), notAfter: nil)
            for w in words.dropFirst() where w.hasPrefix("not_after=") {
                entry.notAfter = LogTimestamp(rfc3339: String(w.dropFirst(10)))?.microsecondsSinceEpoch ?? 0
            }
            out.append(entry)
        }
        return out
    }

    @discardableResult
    func reload(force: Bool = false) -> Bool {
        let now = LevainSandbox.Clock.monotonicNanos()
        let due = state.withLock { s in force || now &- s.checkedAt > 1_000_000_000 }
        guard due else { return true }
        var st = stat()
        guard stat(path, &st) == 0 else {
            // The file is gone: no token is valid any more (fail closed).
            state.withLock { s in
                s.entries = []
                s.mtime = -1
            }
            return false
        }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let changed = state.withLock { s in
            s.checkedAt = now
            return s.mtime != mtime
        }
        guard changed || force, let text = SupervisorServer.readSmallText(path, limit: 1 << 20) else { return true }
        let entries = Self.parse(text)
        state.withLock { s in
            s.entries = entries
            s.mtime = mtime
        }
        return true
    }

    public func check(_ given: String) -> Verdict {
        guard !given.isEmpty else { return .missing }
        reload()
        let g = Array(given.utf8)
        let entries = state.withLock { $0.entries }
        let now = LogTimestamp.now().microsecondsSinceEpoch
        var verdict = Verdict.unknown
        for e in entries {
            // Constant time over each token's length.
            var diff = UInt8(g.count == e.token.count ? 0 : 1)
            for i in 0..<e.token.count { diff |= e.token[i] ^ (i < g.count ? g[i] : 0) }
            if diff == 0 {
                if let na = e.notAfter, now > na { verdict = .expired } else { return .valid }
            }
        }
        return verdict
    }
}

/// Signal names for the API ("TERM", "SIGTERM", "term").
enum SignalNames {
    static let table: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1, "USR2": SIGUSR2,
        "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "CONT": SIGCONT, "STOP": SIGSTOP, "TSTP": SIGTSTP,
        "WINCH": SIGWINCH,
    ]

    static func number(_ name: String) -> Int32? {
        var n = name.uppercased()
        if n.hasPrefix("SIG") { n.removeFirst(3) }
        return table[n]
    }
}

enum Base64 {
    static func decode(_ s: String) -> [UInt8]? {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(c)] = Int8(i) }
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in s.utf8 {
            if c == UInt8(ascii: "=") || c == 10 || c == 13 { continue }
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xff))
            }
        }
        return out
    }
}

private func lv_random_fill(_ buf: UnsafeMutableRawBufferPointer) -> Int32 {
    guard let base = buf.baseAddress else { return 0 }
    return lv_random_bytes(base, buf.count)
}

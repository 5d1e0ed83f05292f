#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainClock
import LevainJSON
import LevainProtocol
import LevainRuns
import LevainSessionLog
import NIOCore

extension APIServer {
    /// Runs: submit, list, read, wait, cancel, signal, output, stdin, events.
    func addRunRoutes(_ router: Router<BasicRequestContext>, _ s: some RunsBackend & EventsBackend) {
        let api = self
        router.post("/v1/sessions/:id/runs") { request, context in
            let arrival = RunState.tracing ? Monotonic.nanos() : nil
            return await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                let run = try RunRequest(json: body)
                // A waiting client is told nothing before the run's end,
                // which is fsynced: the queued record need not be on its own.
                let (record, created) = try await s.submitRun(session: id, run.spec, arrival: arrival,
                                                              durability: run.wait ? .written : .durable)
                if run.wait {
                    let state = try await s.runState(record.id)
                    let done = await state.wait(timeout: nil)
                    // Released without an end: the log could not take it
                    // (a full disk); the run is not told finished until it is.
                    guard done.status.isTerminal else {
                        throw SupervisorError(.unavailable, "run \(record.id) ended but the session log cannot record its end yet; GET /v1/runs/\(record.id) later",
                                              field: "wait")
                    }
                    var answer = await APIServer.json(done, s)
                    if let most = run.inlineOutput, done.status.isTerminal {
                        answer = APIServer.inline(state, most: most, into: answer)
                    }
                    return .json(created ? .created : .ok, answer)
                }
                return .json(created ? .created : .ok, await APIServer.json(record, s))
            }
        }
        router.get("/v1/runs") { request, _ in
            await api.respond {
                let status = try api.enumQuery(request, "status", RunStatus.self)
                let list = try await s.runs(session: request.uri.queryParameters["session"].map(String.init), status: status)
                var out: [JSONValue] = []
                for r in list { out.append(await APIServer.json(r, s)) }
                return .json(.ok, ["runs": .array(out)])
            }
        }
        router.get("/v1/runs/:id") { _, context in
            await api.respond { .json(.ok, await APIServer.json(try await s.run(try api.param(context, "id")), s)) }
        }
        router.post("/v1/runs/:id/wait") { request, context in
            await api.respond {
                let state = try await s.runState(try api.param(context, "id"))
                let timeout = try api.doubleQuery(request, "timeout", max: 86_400 * 365)
                return .json(.ok, await APIServer.json(await state.wait(timeout: timeout), s))
            }
        }
        router.post("/v1/runs/:id/cancel") { _, context in
            await api.respond {
                let id = try api.param(context, "id")
                _ = try await s.cancelRun(id)
                let state = try await s.runState(id)
                return .json(.ok, await APIServer.json(await state.wait(timeout: 5), s))
            }
        }
        router.post("/v1/runs/:id/signal") { request, context in
            await api.respond {
                let body = try await api.jsonBody(request)
                let signal = try SignalRequest(json: body).signal
                return .json(.ok, await APIServer.json(try await s.signalRun(try api.param(context, "id"), signal: signal), s))
            }
        }
        router.post("/v1/runs/:id/resize") { request, context in
            await api.respond {
                let body = try await api.jsonBody(request)
                try Fields(body, allowed: ["rows", "cols"]).check()
                let size = try RunSpec.size(body)
                return .json(.ok, await APIServer.json(try await s.resizeRun(try api.param(context, "id"), to: size), s))
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
                    throw SupervisorError(.invalid, "the stdin upload broke off after \(total) bytes: \(error)", field: "body", cause: error)
                }
                try await sink(nil)
                return .json(.ok, ["bytes": JSONValue(total)])
            }
        }
        router.get("/v1/runs/:id/events") { request, context in
            await api.respond {
                let record = try await s.run(try api.param(context, "id"))
                return try api.eventStream(request, session: record.sessionID, run: record.id, s)
            }
        }
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

    /// `inline_output`: each stream kept whole and at most `most` bytes
    /// long, base64 in the answer; a longer one is read from its output route.
    static func inline(_ state: RunState, most: Int, into answer: JSONValue) -> JSONValue {
        guard var o = answer.objectValue else { return answer }
        for (name, spool) in [("stdout", state.stdout), ("stderr", state.stderr)] {
            let length = spool.length
            guard length <= UInt64(most), !spool.isTruncated, spool.loss == nil else { continue }
            let bytes = length == 0 ? [] : spool.read(from: 0, max: Int(length))
            guard bytes.count == Int(length) else { continue }
            o[name + "_base64"] = .string(Base64.encode(bytes))
        }
        return .object(o)
    }

    /// A run's record as the API shows it, with what its live state adds
    /// (output sizes, truncation, loss).
    static func json(_ r: RunRecord, _ runs: some RunsBackend) async -> JSONValue {
        var o = APIJSON.run(r).objectValue ?? [:]
        if let state = try? await runs.runState(r.id) {
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
}

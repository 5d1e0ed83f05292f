import Foundation
import LevainAPI
import LevainJSON
import MCP

/// Levain as an MCP server: sessions, commands (streamed), long-running
/// processes with stdin, files and pause/resume as MCP tools, each one a
/// call of the control API through `APIClient`. `levain mcp` serves it over
/// stdio; `levain serve` over streamable HTTP at `/mcp`. A failed call
/// (a closed session, a path outside the jail, a refused policy) is a tool
/// result with `isError: true` and the API's message, never a protocol
/// error or a crash.
public final class ControlServer: Sendable {
    let client: APIClient
    let pipes = StdinPipes()

    public init(client: APIClient) {
        self.client = client
    }

    /// A server with the tools registered; the caller starts it on a transport.
    public func makeServer(version: String) async -> Server {
        let server = Server(name: "levain", version: version,
                            instructions: "Levain runs commands in isolated sandboxes (sessions). Open one with create_session, run commands with exec, and close it with close_session when done.",
                            capabilities: .init(tools: .init(listChanged: false)))
        await server.withMethodHandler(ListTools.self) { _ in
            .init(tools: ControlTool.allCases.map { tool in
                Tool(name: tool.rawValue, description: tool.description, inputSchema: tool.inputSchema.mcp,
                     annotations: .init(readOnlyHint: tool.readOnly, destructiveHint: tool == .closeSession || tool == .cancelProcess,
                                        openWorldHint: false))
            })
        }
        await server.withMethodHandler(CallTool.self) { [self, weak server] params in
            guard let tool = ControlTool(rawValue: params.name) else {
                return .init(content: [.text(text: "no tool \(params.name); the tools are \(ControlTool.allCases.map(\.rawValue).joined(separator: ", "))", annotations: nil, _meta: nil)], isError: true)
            }
            let args = JSONObject(uniqueKeysWithValues: (params.arguments ?? [:]).map { ($0.key, JSONValue(mcp: $0.value)) })
            var progress: Progress? = nil
            if let token = params._meta?.progressToken, let server { progress = Progress(server: server, token: token) }
            do {
                let (text, structured) = try await self.call(tool, try Arguments(tool, args), progress: progress)
                return .init(content: [.text(text: text, annotations: nil, _meta: nil)], structuredContent: Optional(structured.mcp), isError: false)
            } catch let failure as ToolFailure {
                return .init(content: [.text(text: failure.message, annotations: nil, _meta: nil)], isError: true)
            } catch {
                return .init(content: [.text(text: "\(tool.rawValue): the supervisor could not be reached: \(error)", annotations: nil, _meta: nil)], isError: true)
            }
        }
        return server
    }

    /// Ends what the server holds open (the stdin uploads).
    public func shutdown() async {
        await pipes.closeAll()
    }

    // MARK: the tools

    func call(_ tool: ControlTool, _ a: Arguments, progress: Progress?) async throws -> (String, JSONValue) {
        switch tool {
        case .createSession:
            var body: JSONObject = [:]
            for k in ["policy", "tenant", "labels"] { if let v = a[k] { body[k] = v } }
            var limits: JSONObject = [:]
            for k in ["memory", "cpus", "pids", "timeout"] { if let v = a[k] { limits[k] = v } }
            if !limits.isEmpty { body["limits"] = .object(limits) }
            let s = try await api("POST", "/v1/sessions", json: .object(body))
            return ("session \(s["id"]?.stringValue ?? "?") is open (policy \(s["policy"]?.stringValue ?? "?"))", s)
        case .listSessions:
            var q: [(String, String)] = []
            if let v = try a.string("status") { q.append(("status", v)) }
            if let v = try a.string("tenant") { q.append(("tenant", v)) }
            let r = try await api("GET", URLQuery.path("/v1/sessions", q))
            let list = r["sessions"]?.arrayValue ?? []
            let lines = list.map { s in
                "\(s["id"]?.stringValue ?? "?") \(s["status"]?.stringValue ?? "?")\(s["paused"] == .bool(true) ? " (paused)" : "") policy=\(s["policy"]?.stringValue ?? "?") created=\(s["created_at"]?.stringValue ?? "?")"
            }
            return (lines.isEmpty ? "no sessions" : lines.joined(separator: "\n"), r)
        case .closeSession:
            let s = try await api("DELETE", "/v1/sessions/\(try a.id("session"))")
            return ("session \(s["id"]?.stringValue ?? "?") is \(s["status"]?.stringValue ?? "?")", s)
        case .pauseSession, .resumeSession:
            let verb = tool == .pauseSession ? "pause" : "resume"
            let s = try await api("POST", "/v1/sessions/\(try a.id("session"))/\(verb)")
            return ("session \(s["id"]?.stringValue ?? "?") is \(s["paused"] == .bool(true) ? "paused" : "running")", s)
        case .exec:
            return try await exec(a, progress: progress)
        case .startProcess:
            return try await startProcess(a)
        case .pollProcess:
            return try await poll(a)
        case .writeStdin:
            let run = try a.id("run")
            let data = try a.string("data") ?? ""
            let eof = try a.bool("eof") ?? false
            let written = try await pipes.write(run: run, Array(data.utf8), eof: eof)
            return (eof ? "wrote \(data.utf8.count) bytes; stdin closed (\(written) bytes in all)" : "wrote \(data.utf8.count) bytes", ["run": .string(run), "bytes": .int(Int64(data.utf8.count)), "closed": .bool(eof)])
        case .signalProcess:
            guard let signal = a["signal"] else { throw ToolFailure("signal_process: signal is required") }
            let r = try await api("POST", "/v1/runs/\(try a.id("run"))/signal", json: ["signal": signal])
            return ("signal sent; the run is \(r["status"]?.stringValue ?? "?")", r)
        case .cancelProcess:
            let r = try await api("POST", "/v1/runs/\(try a.id("run"))/cancel")
            return ("the run is \(r["status"]?.stringValue ?? "?")", r)
        case .readFile:
            return try await readFile(a)
        case .writeFile:
            let path = try a.required("path")
            guard let content = try a.string("content") else { throw ToolFailure("write_file: content is required (it may be empty)") }
            let bytes: [UInt8]
            switch try a.string("encoding") ?? "utf-8" {
            case "utf-8": bytes = Array(content.utf8)
            case "base64":
                guard let d = Data(base64Encoded: content, options: .ignoreUnknownCharacters) else { throw ToolFailure("write_file: content is not base64") }
                bytes = Array(d)
            case let other: throw ToolFailure("write_file: encoding \(other.debugDescription) is not utf-8 or base64")
            }
            let reply = try await client.request("PUT", URLQuery.path("/v1/sessions/\(try a.id("session"))/file", [("path", path)]), body: bytes,
                                                 contentType: "application/octet-stream")
            let r = try Self.check(reply)
            return ("wrote \(bytes.count) bytes to \(path)", r)
        case .listFiles:
            let path = try a.string("path") ?? "."
            let r = try await api("GET", URLQuery.path("/v1/sessions/\(try a.id("session"))/files", [("path", path)]))
            let lines = (r["entries"]?.arrayValue ?? []).map { e in
                "\(e["type"]?.stringValue ?? "?")\t\(e["size"]?.intValue.map(String.init) ?? "-")\t\(e["name"]?.stringValue ?? "?")"
            }
            return (lines.isEmpty ? "(empty)" : lines.joined(separator: "\n"), r)
        case .statFile:
            let r = try await api("GET", URLQuery.path("/v1/sessions/\(try a.id("session"))/stat", [("path", try a.required("path"))]))
            return (r.encoded(), r)
        }
    }

    /// Submits the run and waits, following both streams meanwhile.
    private func exec(_ a: Arguments, progress: Progress?) async throws -> (String, JSONValue) {
        var body = try Self.runBody(a)
        if let stdin = try a.string("stdin") { body["stdin"] = .string(stdin) }
        let cap = Int(try a.number("max_output_bytes", max: Double(ControlLimits.maxOutputBytes)) ?? Double(ControlLimits.defaultOutputBytes))
        let run = try await api("POST", "/v1/sessions/\(try a.id("session"))/runs", json: .object(body))
        guard let id = run["id"]?.stringValue else { throw ToolFailure("exec: the supervisor answered without a run id") }
        let client = self.client
        async let out = Output.read(client, run: id, stream: "stdout", from: 0, cap: cap, follow: true, progress: progress)
        async let err = Output.read(client, run: id, stream: "stderr", from: 0, cap: cap, follow: true, progress: progress)
        let (o, e) = try await (out, err)
        let final = try await api("POST", "/v1/runs/\(id)/wait")
        return Self.result(final, stdout: o, stderr: e)
    }

    private func startProcess(_ a: Arguments) async throws -> (String, JSONValue) {
        var body = try Self.runBody(a)
        let stdin = try a.bool("stdin") ?? false
        let session = try a.id("session")
        if stdin {
            guard await pipes.reserve() else {
                throw ToolFailure("start_process: \(ControlLimits.maxStdinPipes) processes already have stdin open; close one with write_stdin eof: true")
            }
            body["stdin_stream"] = true
        }
        let run: JSONValue
        do {
            run = try await api("POST", "/v1/sessions/\(session)/runs", json: .object(body))
        } catch {
            if stdin { await pipes.release() }
            throw error
        }
        guard let id = run["id"]?.stringValue else {
            if stdin { await pipes.release() }
            throw ToolFailure("start_process: the supervisor answered without a run id")
        }
        if stdin { await pipes.open(run: id, client: client) }
        return ("started run \(id) (\(run["status"]?.stringValue ?? "?")); poll it with poll_process", run)
    }

    private func poll(_ a: Arguments) async throws -> (String, JSONValue) {
        let id = try a.id("run")
        let wait = try a.number("wait", max: ControlLimits.maxPollWait) ?? 0
        let cap = Int(try a.number("max_output_bytes", max: Double(ControlLimits.maxOutputBytes)) ?? Double(ControlLimits.defaultOutputBytes))
        let outAt = Int(try a.number("stdout_offset", max: Double(Int64.max / 2)) ?? 0)
        let errAt = Int(try a.number("stderr_offset", max: Double(Int64.max / 2)) ?? 0)
        let run = wait > 0 ? try await api("POST", "/v1/runs/\(id)/wait?timeout=\(wait)") : try await api("GET", "/v1/runs/\(id)")
        let o = try await Output.read(client, run: id, stream: "stdout", from: outAt, cap: cap, follow: false, progress: nil)
        let e = try await Output.read(client, run: id, stream: "stderr", from: errAt, cap: cap, follow: false, progress: nil)
        if run["exit_status"] != nil, run["exit_status"] != .null { await pipes.forget(run: id) }
        return Self.result(run, stdout: o, stderr: e)
    }

    private func readFile(_ a: Arguments) async throws -> (String, JSONValue) {
        let path = try a.required("path")
        var status = 0
        var bytes: [UInt8] = []
        var tooLarge = false
        try await client.stream("GET", URLQuery.path("/v1/sessions/\(try a.id("session"))/file", [("path", path)]), onHead: { s, _ in status = s }) { chunk in
            if bytes.count + chunk.count > ControlLimits.maxFileBytes { tooLarge = true; return false }
            bytes.append(contentsOf: chunk)
            return true
        }
        guard status == 200 else { _ = try Self.check(APIClient.Reply(status: status, headers: [], body: bytes)); return ("", .null) }
        if tooLarge { throw ToolFailure("read_file: \(path) is larger than \(ControlLimits.maxFileBytes >> 20) MiB; read parts of it with exec (head -c, tail -c)") }
        if let text = String(validating: bytes, as: UTF8.self) {
            return (text, ["path": .string(path), "size": .int(Int64(bytes.count)), "encoding": "utf-8", "content": .string(text)])
        }
        let b64 = Data(bytes).base64EncodedString()
        return (b64, ["path": .string(path), "size": .int(Int64(bytes.count)), "encoding": "base64", "content": .string(b64)])
    }

    // MARK: helpers

    /// A run submission's common fields, checked for shape; the API checks the values.
    static func runBody(_ a: Arguments) throws(ToolFailure) -> JSONObject {
        var body: JSONObject = [:]
        switch (a["command"], a["argv"]) {
        case (let c?, nil): body["command"] = c
        case (nil, let v?): body["argv"] = v
        case (nil, nil): throw ToolFailure("\(a.tool.rawValue): give command (a shell line) or argv")
        default: throw ToolFailure("\(a.tool.rawValue): give command or argv, not both")
        }
        for k in ["cwd", "env", "timeout"] { if let v = a[k] { body[k] = v } }
        return body
    }

    /// A run's result as text (for the model) and structure.
    static func result(_ run: JSONValue, stdout: Output, stderr: Output) -> (String, JSONValue) {
        let status = run["status"]?.stringValue ?? "?"
        var lines: [String] = []
        if let code = run["exit_status"]?.intValue {
            lines.append("exit status \(code) (\(status))")
        } else {
            lines.append("status \(status)")
        }
        if let error = run["error"]?.stringValue { lines.append("error: \(error)") }
        for (name, o) in [("stdout", stdout), ("stderr", stderr)] where !o.text.isEmpty || o.more {
            lines.append("--- \(name) ---")
            lines.append(o.text)
            if o.more { lines.append("[\(name) goes on: poll_process with \(name)_offset \(o.next)]") }
        }
        var s: JSONObject = run.objectValue ?? [:]
        s["stdout"] = .string(stdout.text)
        s["stderr"] = .string(stderr.text)
        s["stdout_offset"] = .int(Int64(stdout.next))
        s["stderr_offset"] = .int(Int64(stderr.next))
        s["output_cut"] = .bool(stdout.more || stderr.more)
        return (lines.joined(separator: "\n"), .object(s))
    }

    func api(_ method: String, _ path: String, json: JSONValue? = nil) async throws -> JSONValue {
        try Self.check(try await client.request(method, path, json: json))
    }

    /// The reply's JSON, or the API's error as a tool failure.
    static func check(_ reply: APIClient.Reply) throws(ToolFailure) -> JSONValue {
        let json = (try? JSONValue.parse(utf8: reply.body)) ?? .null
        guard (200..<300).contains(reply.status) else {
            if let e = APIError(status: reply.status, json: json.objectValue) {
                var m = "\(e.code.rawValue) (HTTP \(reply.status)): \(e.message)"
                if let f = e.field { m += " [field \(f)]" }
                if let n = e.errno { m += " [\(n)]" }
                throw ToolFailure(m)
            }
            throw ToolFailure("the supervisor answered HTTP \(reply.status)")
        }
        return json
    }
}

/// Progress notifications of one call (`notifications/progress` with the
/// call's token): each piece of output as its message (cut at UTF-8
/// character boundaries, a piece at most `progressChunk` bytes, stderr's
/// marked), the bytes so far as the progress.
actor Progress {
    let server: Server
    let token: ProgressToken
    private var sent = 0
    /// Per stream, the start of a character a chunk cut in two.
    private var carry: [String: [UInt8]] = [:]

    init(server: Server, token: ProgressToken) {
        self.server = server
        self.token = token
    }

    func output(_ stream: String, _ chunk: [UInt8]) async {
        var bytes = (carry[stream] ?? []) + chunk
        // Keep back an incomplete last character (at most 3 bytes).
        var end = bytes.count
        var back = 0
        while back < 3, end - back - 1 >= 0, bytes[end - back - 1] & 0xC0 == 0x80 { back += 1 }
        if end - back - 1 >= 0 {
            let lead = bytes[end - back - 1]
            let width = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if width > back + 1 { end = end - back - 1 }
        }
        carry[stream] = Array(bytes[end...])
        bytes.removeSubrange(end...)
        var at = 0
        while at < bytes.count {
            var stop = min(bytes.count, at + ControlLimits.progressChunk)
            while stop < bytes.count, stop > at, bytes[stop] & 0xC0 == 0x80 { stop -= 1 }
            if stop == at { stop = min(bytes.count, at + ControlLimits.progressChunk) }
            let piece = bytes[at..<stop]
            sent += piece.count
            let text = String(decoding: piece, as: UTF8.self)
            try? await server.notify(ProgressNotification.message(.init(progressToken: token, progress: Double(sent),
                                                                         message: stream == "stderr" ? "[stderr] " + text : text)))
            at = stop
        }
    }
}

/// One stream's output, read from an offset up to a cap.
struct Output: Sendable {
    var text: String
    /// The offset to read on from.
    var next: Int
    /// Whether more was there than the cap let through.
    var more: Bool

    static func read(_ client: APIClient, run: String, stream: String, from offset: Int, cap: Int, follow: Bool,
                     progress: Progress?) async throws -> Output {
        var status = 0
        var kept: [UInt8] = []
        var seen = 0
        var errorBody: [UInt8] = []
        let path = "/v1/runs/\(run)/output/\(stream)?offset=\(offset)&follow=\(follow)"
        try await client.stream("GET", path, onHead: { s, _ in status = s }) { chunk in
            guard status == 200 else { errorBody.append(contentsOf: chunk.prefix(65536 - errorBody.count)); return errorBody.count < 65536 }
            if let progress { await progress.output(stream, chunk) }
            seen += chunk.count
            if kept.count < cap { kept.append(contentsOf: chunk.prefix(cap - kept.count)) }
            // Without anyone to stream to, stop at the cap; with progress, go on (the client sees it all).
            return follow ? true : kept.count < cap
        }
        if status != 200 { _ = try ControlServer.check(APIClient.Reply(status: status, headers: [], body: errorBody)) }
        let more = seen > kept.count
        return Output(text: String(decoding: kept, as: UTF8.self), next: offset + kept.count, more: more)
    }
}

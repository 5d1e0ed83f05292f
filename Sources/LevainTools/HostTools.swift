#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import LevainAPI
import LevainAgent
import LevainJSON
import LevainMCP
import LevainPolicy
import LevainProxy
import LevainRuns
import LevainSessionLog
import Logging
import MCP
import Synchronization

/// Host tools: MCP servers, each with a session of the supervisor of its own
/// (the server's policy, tenant "levain", label levain.mcp=NAME), spoken to
/// with the MCP swift-sdk's client. A stdio server is a run of that session
/// (a process in its jail); a URL server is reached through an egress proxy
/// under that session's policy. Their tools are registered as
/// `mcp__SERVER__TOOL` once their input schemas pass JSONSchema's check; a
/// server that dies, writes garbage or does not answer fails the call in
/// progress and is started again on the next.
public actor HostTools {
    private let servers: [HostServer]
    private var registered: [String: (HostServer, ToolDefinition, String)] = [:]

    init(servers: [ToolsConfig.Server]) {
        self.servers = servers.map(HostServer.init)
    }

    public func definitions() -> [ToolDefinition] { registered.values.map(\.1).sorted { $0.name < $1.name } }
    func definition(_ name: String) -> ToolDefinition? { registered[name]?.1 }

    /// Starts every server and registers its tools; a server that fails is
    /// left out, and what went wrong returned (levain serve prints it).
    public func start(supervisor: any ToolHost) async -> [String] {
        var problems: [String] = []
        for s in servers {
            do {
                let tools = try await s.start(supervisor: supervisor)
                for (original, def) in tools { registered[def.name] = (s, def, original) }
            } catch {
                problems.append("MCP server \(s.config.name): \(error.message)")
            }
        }
        return problems
    }

    func call(_ name: String, _ args: JSONObject, timeout: Double) async throws(BuiltinTools.Failure) -> String {
        guard let (server, _, original) = registered[name] else { throw .init("no host tool \(name)") }
        return try await server.call(original, args, timeout: timeout)
    }

    public func stop(supervisor: any ToolHost) async {
        for s in servers { await s.stop(supervisor: supervisor) }
    }
}

actor HostServer {
    let config: ToolsConfig.Server
    private var supervisor: (any ToolHost)?
    private var client: Client?
    private var transport: (any Transport)?
    /// A URL server's way out: an egress proxy under its policy, and the
    /// HTTP client that goes through it.
    private var egress: EgressProxy?
    private var http: HTTPClient?
    private let lastDenialBox = DenialBox()
    private var session: String?
    private var run: String?
    private var signal = FailureSignal()

    init(_ config: ToolsConfig.Server) { self.config = config }

    /// Starts the server (its jail, its process, initialize, tools/list);
    /// returns its tools whose schemas are usable (original name, definition).
    func start(supervisor: any ToolHost) async throws(APIError) -> [(String, ToolDefinition)] {
        self.supervisor = supervisor
        let tools = try await connect(supervisor)
        var out: [(String, ToolDefinition)] = []
        var rejected: [JSONValue] = []
        for t in tools {
            let name = "mcp__\(config.name)__\(t.name)"
            let schema = JSONValue(mcp: t.inputSchema)
            guard ToolName.isValid(name) else {
                rejected.append(["tool": .string(t.name), "error": "the name is not usable (letters, digits, _ and -, 64 at most with its prefix)"])
                continue
            }
            do {
                _ = try JSONSchema(schema, requireObject: true)
            } catch {
                rejected.append(["tool": .string(t.name), "error": .string(error.description)])
                continue
            }
            out.append((t.name, ToolDefinition(name: name, description: t.description ?? "", inputSchema: schema)))
        }
        if let session {
            let tenant = "levain"
            _ = try? await supervisor.log.append(NewEvent(sessionID: session, runID: run, tenant: tenant, type: EventType.mcpRegistered, payload: [
                Attribute.mcpServer: .string(config.name), Attribute.tools: JSONValue(out.map(\.1.name)), Attribute.rejected: .array(rejected),
            ]))
        }
        for r in rejected {
            FileHandle.standardError.write(Data("levain: MCP server \(config.name): tool \(r["tool"]?.stringValue ?? "?") not registered: \(r["error"]?.stringValue ?? "")\n".utf8))
        }
        return out
    }

    private func connect(_ supervisor: any ToolHost) async throws(APIError) -> [Tool] {
        if session == nil {
            var spec = SessionSpec(policy: config.policy ?? supervisor.defaultPolicy)
            spec.tenant = "levain"
            spec.labels = ["levain.mcp": config.name]
            for b in config.binds {
                do {
                    spec.binds.append(try PolicyLoader.parseBind(b, writable: false, optional: false, file: "mcp.\(config.name)", line: nil, key: "binds"))
                } catch {
                    throw APIError(.invalid, error.message, field: "mcp.\(config.name).binds")
                }
            }
            session = try await supervisor.openHostToolSession(spec).id
        }
        signal = FailureSignal()
        let transport: any Transport
        if let url = config.url {
            let denial = lastDenialBox
            denial.withLock { $0 = nil }
            transport = HTTPMCPTransport(client: try await httpClient(supervisor), url: url, signal: signal,
                                         denial: { denial.withLock { $0 } })
            run = nil
        } else {
            var spec = RunSpec(argv: config.command)
            spec.env = config.env
            spec.stdinStream = true
            spec.timeout = 30 * 86400
            let (record, _) = try await supervisor.submitRun(session: session!, spec)
            run = record.id
            let state = try await supervisor.runState(record.id)
            transport = JailStdioTransport(state: state, signal: signal)
        }
        let client = Client(name: "levain", version: "1")
        let timeout = config.startTimeout
        let signal = self.signal
        let result: Result<[Tool], APIError>? = await Race.first(timeout: timeout, [
            {
                do {
                    _ = try await client.connect(transport: transport)
                    var tools: [Tool] = []
                    var cursor: String? = nil
                    repeat {
                        let page = try await client.listTools(cursor: cursor)
                        tools += page.tools
                        cursor = page.nextCursor
                    } while cursor != nil && tools.count < 1000
                    return .success(tools)
                } catch {
                    return .failure(APIError(.unavailable, "\(error)", cause: error))
                }
            },
            {
                guard let why = await signal.waitOrCancel() else { return nil }
                return .failure(APIError(.unavailable, why))
            },
        ])
        switch result {
        case .success(let tools)?:
            self.client = client
            self.transport = transport
            return tools
        case .failure(let e)?:
            await kill(supervisor)
            throw e
        case nil:
            await kill(supervisor)
            throw APIError(.unavailable, "no answer to initialize and tools/list within \(timeout)s")
        }
    }

    /// The HTTP client of a URL server, through an egress proxy of its own
    /// (127.0.0.1, an ephemeral port; no injected secrets, so it lends a
    /// host process nothing it could not do itself) under the [network]
    /// rules of the server's policy, logged in the server's session.
    private func httpClient(_ supervisor: any ToolHost) async throws(APIError) -> HTTPClient {
        if let http { return http }
        guard let session else { throw APIError(.internalError, "no session for MCP server \(config.name)") }
        let denial = lastDenialBox
        let proxy = try await supervisor.hostToolEgress(session: session) { reason in denial.withLock { $0 = reason } }
        let port: Int
        do {
            let channel = try await proxy.serve(host: "127.0.0.1", port: 0)
            guard let p = channel.localAddress?.port else { throw APIError(.internalError, "no port") }
            port = p
        } catch {
            throw APIError(.internalError, "the egress proxy of MCP server \(config.name): \(error)", cause: error)
        }
        var configuration = HTTPClient.Configuration()
        configuration.proxy = .server(host: "127.0.0.1", port: port)
        // A refusal of the proxy is final: no retries until the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        // Idle connections close soon, so each burst of calls is logged
        // (the proxy logs a tunnel when it closes) within seconds.
        configuration.connectionPool.idleTimeout = .seconds(2)
        let client = HTTPClient(eventLoopGroup: supervisor.eventLoopGroup, configuration: configuration)
        egress = proxy
        http = client
        return client
    }

    private func kill(_ supervisor: any ToolHost) async {
        if let run { _ = try? await supervisor.cancelRun(run) }
        // Not waited for: the client ends its pending requests, and a dead
        // server's transport must not hold this actor.
        if let client { Task { await client.disconnect() } }
        signal.fail("stopped")
        client = nil
        transport = nil
        run = nil
    }

    func call(_ tool: String, _ args: JSONObject, timeout: Double) async throws(BuiltinTools.Failure) -> String {
        guard let supervisor else { throw .init("MCP server \(config.name) was never started") }
        if client == nil {
            do { _ = try await connect(supervisor) } catch { throw .init("MCP server \(config.name) could not be started again: \(error.message)") }
        }
        guard let client else { throw .init("MCP server \(config.name) is not running") }
        let signal = self.signal
        let arguments = args.mapValues(\.mcp)
        let name = config.name
        /// How a call ended: the server answered, or it failed under it.
        enum End: Sendable {
            case answered(Result<String, BuiltinTools.Failure>)
            case serverFailed(String)
        }
        let end: End? = await Race.first(timeout: timeout, [
            {
                do {
                    let (content, isError) = try await client.callTool(name: tool, arguments: arguments)
                    let text = content.map(HostServer.text).joined(separator: "\n")
                    return .answered(isError == true ? .failure(.init(text)) : .success(text))
                } catch {
                    if Task.isCancelled { return nil }
                    return .answered(.failure(.init("MCP server \(name): \(error)")))
                }
            },
            {
                guard let why = await signal.waitOrCancel() else { return nil }
                return .serverFailed(why)
            },
        ])
        switch end {
        case .answered(let result)?:
            return try result.get()
        case .serverFailed(let why)?:
            // Dead or garbled mid-call: a fresh process next time.
            await kill(supervisor)
            throw .init("MCP server \(name) failed during the call: \(why)")
        case nil:
            // Abandoned (cancelled or timed out): a fresh process next time.
            await kill(supervisor)
            throw Task.isCancelled ? .init("cancelled", .cancelled) : .init("timed out after \(timeout)s (MCP server \(name) is restarted)", .timeout)
        }
    }

    func stop(supervisor: any ToolHost) async {
        await kill(supervisor)
        egress?.stop()
        try? await http?.shutdown()
        http = nil
    }

    static func text(_ c: Tool.Content) -> String {
        switch c {
        case .text(let t, _, _): t
        case .image(_, let mime, _, _): "[image \(mime)]"
        case .audio(_, let mime, _, _): "[audio \(mime)]"
        case .resource(let r, _, _): "[resource \(r.uri)]"
        default: "[content]"
        }
    }
}

final class DenialBox: Sendable {
    private let m = Mutex<String?>(nil)
    func withLock<T>(_ body: (inout String?) -> T) -> T { m.withLock { body(&$0) } }
}

/// Resolves every waiter once, with why the server failed.
final class FailureSignal: Sendable {
    private struct State {
        var why: String?
        var next = 0
        var waiters: [Int: CheckedContinuation<String?, Never>] = [:]
    }
    private let state = Mutex(State())

    func fail(_ why: String) {
        let waiters = state.withLock { s -> [CheckedContinuation<String?, Never>] in
            guard s.why == nil else { return [] }
            s.why = why
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume(returning: why) }
    }

    /// Why the server failed, when it does; nil if the waiting task is
    /// cancelled first (only that waiter is woken).
    func waitOrCancel() async -> String? {
        let id = state.withLock { s -> Int in s.next += 1; return s.next }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
                let now: String?? = state.withLock { s in
                    if let w = s.why { return .some(w) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters[id] = c
                    return .none
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let w = state.withLock { $0.waiters.removeValue(forKey: id) }
            w?.resume(returning: nil)
        }
    }
}

/// The MCP stdio transport over a run of a session: newline-delimited
/// JSON-RPC written to the run's stdin, read from its stdout spool. A line
/// that is not a JSON object, or longer than 4 MiB, or the process's end,
/// fails the transport (and the call in progress).
actor JailStdioTransport: Transport {
    nonisolated let logger = Logger(label: "levain.mcp.stdio", factory: { _ in SwiftLogNoOpLogHandler() })
    private let state: RunState
    private let signal: FailureSignal
    private var sink: (@Sendable ([UInt8]?) async throws -> Void)?
    private let stream: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    private var reader: Task<Void, Never>?
    static let maxLine = 4 << 20

    struct Failed: Error, CustomStringConvertible { var description: String }

    init(state: RunState, signal: FailureSignal) {
        self.state = state
        self.signal = signal
        (stream, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
    }

    func connect() async throws {
        guard let sink = await state.stdinSink() else {
            let why = "the server's process ended before it read anything (\(state.record.error ?? "exit \(state.record.exitCode.map(String.init) ?? "?")"))"
            signal.fail(why)
            throw Failed(description: why)
        }
        self.sink = sink
        let state = self.state, continuation = self.continuation, signal = self.signal
        reader = Task {
            var offset: UInt64 = 0
            var line: [UInt8] = []
            while !Task.isCancelled {
                let chunk = state.stdout.read(from: offset, max: 1 << 20)
                if chunk.isEmpty {
                    if state.stdout.isFinished && offset >= state.stdout.length {
                        _ = await state.wait(timeout: 2)
                        let r = state.record
                        let why = "its process ended (\(r.exitCode.map { "exit \($0)" } ?? r.signal.map { "signal \($0)" } ?? r.status.rawValue))"
                        signal.fail(why)
                        continuation.finish(throwing: Failed(description: why))
                        return
                    }
                    await state.stdout.wait(beyond: offset, batch: 1, maxDelay: 0.005)
                    continue
                }
                offset += UInt64(chunk.count)
                for byte in chunk {
                    if byte != 0x0A {
                        line.append(byte)
                        if line.count > Self.maxLine {
                            let why = "it wrote a line longer than \(Self.maxLine) bytes"
                            signal.fail(why)
                            continuation.finish(throwing: Failed(description: why))
                            return
                        }
                        continue
                    }
                    defer { line.removeAll(keepingCapacity: true) }
                    let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    guard (try? JSONValue.parse(text))?.objectValue != nil else {
                        let why = "it wrote something that is not JSON-RPC: \(String(text.prefix(120)).debugDescription)"
                        signal.fail(why)
                        continuation.finish(throwing: Failed(description: why))
                        return
                    }
                    continuation.yield(Data(text.utf8))
                }
            }
        }
    }

    func disconnect() async {
        if let sink { Task { try? await sink(nil) } }
        sink = nil
        reader?.cancel()
        continuation.finish()
    }

    func send(_ data: Data) async throws {
        guard let sink else { throw Failed(description: "not connected") }
        try await sink(Array(data) + [0x0A])
    }

    func receive() -> AsyncThrowingStream<Data, any Error> { stream }
}

#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import LevainAPI
import LevainJSON
import LevainPolicy
import LevainProxy
import LevainSessionLog
import LevainSystem
import LevainTools
import NIOCore
import Synchronization

/// A session's two ways out of its jail: the model gateway and the egress
/// proxy, listening on 127.0.0.1 inside the jail (sockets the supervisor
/// made in the jail's network namespace), every decision written to the
/// session log.
final class SessionExits: Sendable {
    let sessionID: String
    let tenant: String
    let gatewayPort: Int
    let egressPort: Int
    let mcpPort: Int
    /// The gateway's Unix socket for the supervisor's agent loop; nil when
    /// it could not be bound (the session works, agent runs do not).
    let agentSocket: String?
    private let gateway: ModelGateway
    private let egress: EgressProxy
    private let mcp: MCPEndpoint?
    private let runs: RunsBox
    private let context: SupervisorContext

    /// The placeholder key of a run's environment: it names the run, and is
    /// worth nothing outside this session's gateway.
    static func placeholderKey(run: String) -> String { "levain-run-\(run)" }

    private init(sessionID: String, tenant: String, context: SupervisorContext, gateway: ModelGateway, egress: EgressProxy,
                 mcp: MCPEndpoint?, agentSocket: String?, runs: RunsBox) {
        self.runs = runs
        self.agentSocket = agentSocket
        self.mcp = mcp
        mcpPort = context.config.tools.mcpPort
        self.sessionID = sessionID
        self.tenant = tenant
        self.context = context
        self.gateway = gateway
        self.egress = egress
        gatewayPort = context.config.proxy.gatewayPort
        egressPort = context.config.proxy.egressPort
    }

    /// Opens both listeners in the network namespace of the jail behind
    /// `pidfd` and starts serving.
    static func open(sessionID: String, tenant: String, policy: Policy, pidfd: Int32,
                     context: SupervisorContext) async throws(SupervisorError) -> SessionExits {
        let config = context.config.proxy
        let fds: [Int32]
        do {
            fds = try await context.blockingThrowing { () throws(JailListeners.Failure) -> [Int32] in
                try JailListeners.make(pidfd: pidfd, ports: [config.gatewayPort, config.egressPort, context.config.tools.mcpPort])
            }
        } catch {
            throw SupervisorError(.spawnFailed, "the jail's gateway and proxy sockets: \(error)", cause: error)
        }
        let runs = RunsBox()
        let exits = context.exits
        let sessionUsage = (try? context.log.modelUsage(session: sessionID).total) ?? ModelUsage()
        context.ledger.preload(.init(.session, sessionID), UsageLedger.Totals(sessionUsage))
        let gatewaySettings = GatewaySettings(
            providers: exits.providers, catalog: config.catalog, policy: policy.models,
            tenantBudget: config.tenants[tenant], maxBodyBytes: config.maxGatewayBody)
        let log = context.log
        let gateway = ModelGateway(
            group: context.eventLoopGroup, client: HTTPClient.shared, ledger: context.ledger,
            settings: { gatewaySettings },
            identify: { key in
                let prefix = "levain-run-"
                guard key.hasPrefix(prefix) else { return nil }
                let run = String(key.dropFirst(prefix.count))
                guard runs.contains(run) else { return nil }
                return GatewayCaller(sessionID: sessionID, runID: run, tenant: tenant)
            },
            record: { r in log.enqueue([Self.event(r, session: sessionID, tenant: tenant)], and: []) })
        let egressSettings = EgressSettings(rules: policy.egress, hosts: config.hosts, secrets: exits.secrets,
                                            connectTimeout: config.connectTimeout)
        let egress = EgressProxy(
            group: context.eventLoopGroup, settings: { egressSettings },
            record: { r in
                var run: String? = nil
                if let user = r.proxyUser, user.hasPrefix("run-"), runs.contains(String(user.dropFirst(4))) { run = String(user.dropFirst(4)) }
                log.enqueue([Self.event(r, session: sessionID, run: run, tenant: tenant)], and: [])
            })
        do {
            try await gateway.serve(boundSocket: fds[0])
        } catch {
            // (NIO closes a descriptor it failed to adopt: not closed here twice.)
            Glibc.close(fds[1])
            Glibc.close(fds[2])
            throw SupervisorError(.internalError, "the model gateway: \(error)", cause: error)
        }
        do {
            _ = try await egress.serve(boundSocket: fds[1])
        } catch {
            gateway.stop()
            Glibc.close(fds[2])
            throw SupervisorError(.internalError, "the egress proxy: \(error)", cause: error)
        }
        var agentSocket: String? = Self.agentSocketPath(context.config, sessionID)
        if agentSocket!.utf8.count > 107 {
            agentSocket = nil
        } else {
            do { try await gateway.serve(unixPath: agentSocket!) } catch { agentSocket = nil }
        }
        var mcp: MCPEndpoint? = nil
        if let supervisor = context.supervisor {
            let endpoint = MCPEndpoint(sessionID: sessionID, supervisor: supervisor, service: context.tools, group: context.eventLoopGroup, live: runs)
            do {
                try await endpoint.serve(boundSocket: fds[2])
                mcp = endpoint
            } catch {
                gateway.stop()
                egress.stop()
                if let agentSocket { unlink(agentSocket) }
                throw SupervisorError(.internalError, "the MCP endpoint: \(error)", cause: error)
            }
        } else {
            Glibc.close(fds[2])
        }
        return SessionExits(sessionID: sessionID, tenant: tenant, context: context, gateway: gateway, egress: egress, mcp: mcp,
                            agentSocket: agentSocket, runs: runs)
    }

    /// Where the supervisor's own agent loop reaches this session's gateway
    /// (a root-only directory of the state directory).
    static func agentSocketPath(_ config: SupervisorConfig, _ session: String) -> String {
        let dir = config.stateDirectory + "/gateway"
        _ = mkdir(dir, 0o700)
        return dir + "/" + session + ".sock"
    }

    func runStarted(_ id: String) {
        runs.insert(id)
        context.tools.calls.runStarted(id, session: sessionID)
    }

    func runEnded(_ id: String) {
        runs.remove(id)
        context.ledger.forget(.init(.run, id))
        // What the run started through its tools ends with it.
        context.tools.calls.runEnded(id)
    }

    /// What a run's environment gets: where the gateway and the proxy are,
    /// and placeholder keys that name the run.
    func environment(run id: String) -> [(String, String)] {
        let key = Self.placeholderKey(run: id)
        let proxy = "http://run-\(id):levain@127.0.0.1:\(egressPort)"
        return [
            ("OPENAI_BASE_URL", "http://127.0.0.1:\(gatewayPort)/v1"),
            ("OPENAI_API_KEY", key),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:\(gatewayPort)"),
            ("ANTHROPIC_API_KEY", key),
            ("HTTP_PROXY", proxy), ("HTTPS_PROXY", proxy), ("ALL_PROXY", proxy),
            ("http_proxy", proxy), ("https_proxy", proxy), ("all_proxy", proxy),
            // The gateway is on loopback: clients must not send it through the proxy.
            ("NO_PROXY", "127.0.0.1,localhost,::1"), ("no_proxy", "127.0.0.1,localhost,::1"),
            // The session's tools, for an agent of the user's own (MCP, streamable HTTP).
            ("LEVAIN_MCP_URL", "http://127.0.0.1:\(mcpPort)/runs/\(id)/mcp"),
        ]
    }

    func close() {
        gateway.stop()
        egress.stop()
        mcp?.stop()
        context.tools.calls.sessionEnded(sessionID)
        if let agentSocket { unlink(agentSocket) }
    }

    // MARK: events

    static func event(_ r: ModelExchangeRecord, session: String, tenant: String) -> NewEvent {
        var p: JSONObject = [
            Attribute.genAIOperationName: .string(r.operation),
            Attribute.api: .string(r.api),
            Attribute.decision: .string(r.decision.rawValue),
            Attribute.stream: .bool(r.stream),
        ]
        if let k = r.providerKind { p[Attribute.genAIProviderName] = .string(k.otelName) }
        if let v = r.provider { p[Attribute.provider] = .string(v) }
        if let v = r.model { p[Attribute.genAIRequestModel] = .string(v) }
        if let v = r.maxTokens { p[Attribute.genAIRequestMaxTokens] = JSONValue(v) }
        if let v = r.rule { p[Attribute.rule] = .string(v) }
        if let v = r.message { p[Attribute.message] = .string(v) }
        if r.phase == .response {
            if let v = r.status { p["http.response.status_code"] = JSONValue(v) }
            if let v = r.responseModel { p[Attribute.genAIResponseModel] = .string(v) }
            if let v = r.finishReason { p[Attribute.genAIResponseFinishReasons] = .array([.string(v)]) }
            if let v = r.inputTokens { p[Attribute.genAIUsageInputTokens] = .int(Int64(v)) }
            if let v = r.outputTokens { p[Attribute.genAIUsageOutputTokens] = .int(Int64(v)) }
            if let v = r.cost { p[Attribute.cost] = .double(v) }
            if let v = r.latencyMillis { p[Attribute.latencyMs] = .double((v * 1000).rounded() / 1000) }
            if let v = r.firstTokenMillis { p[Attribute.ttftMs] = .double((v * 1000).rounded() / 1000) }
        }
        return NewEvent(sessionID: session, runID: r.caller?.runID, tenant: tenant,
                        type: r.phase == .request ? EventType.modelRequest : EventType.modelResponse, payload: p)
    }

    static func event(_ r: EgressRecord, session: String, run: String?, tenant: String) -> NewEvent {
        var p: JSONObject = [
            "server.address": .string(r.host),
            "server.port": JSONValue(r.port),
            "http.request.method": .string(r.method),
            Attribute.kind: .string(r.kind),
            Attribute.decision: .string(r.decision.rawValue),
            Attribute.rule: .string(r.rule),
            Attribute.bytesUp: .int(Int64(r.bytesUp)),
            Attribute.bytesDown: .int(Int64(r.bytesDown)),
            Attribute.durationMs: .double((r.durationMillis * 1000).rounded() / 1000),
        ]
        if let v = r.address { p["network.peer.address"] = .string(v) }
        if let v = r.status { p["http.response.status_code"] = JSONValue(v) }
        if let v = r.message { p[Attribute.message] = .string(v) }
        return NewEvent(sessionID: session, runID: run, tenant: tenant,
                        type: r.decision == .denied ? EventType.networkDenied : EventType.networkRequest, payload: p)
    }
}

extension UsageLedger.Totals {
    init(_ u: ModelUsage) {
        self.init()
        inputTokens = UInt64(max(0, u.inputTokens))
        outputTokens = UInt64(max(0, u.outputTokens))
        spend = u.cost
        requests = UInt64(max(0, u.requests))
    }
}

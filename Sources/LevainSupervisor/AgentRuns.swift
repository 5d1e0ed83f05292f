#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import LevainAPI
import LevainAgent
import LevainJSON
import LevainPolicy
import LevainProxy
import LevainRuns
import LevainSandbox
import LevainSessionLog
import LevainTools
import NIOCore
import NIOHTTP1

/// Agent runs: the built-in agent loop as a run of a session. The loop
/// itself runs in the supervisor (LevainAgent.AgentLoop); what it does
/// happens through the session's own doors: the model through the
/// session's gateway (the same policy, budgets, keys and log as a jail's
/// client; a Unix socket of the supervisor's), the tools through the tool
/// service (policy, schema, argument rules, approvals, bounds, log), the
/// built-in tools inside the session's jail. See docs/TOOLS.md for why the
/// loop is not in the harness.
extension Supervisor {
    public func submitAgentRun(session id: String, agent: AgentSpec, input: String) async throws(SupervisorError) -> RunRecord {
        guard !input.isEmpty, input.utf8.count <= 1 << 20 else {
            throw SupervisorError(.invalid, "input must be 1 byte to 1 MiB of text", field: "input")
        }
        let host = try await host(ready: id)
        if host.isPaused { throw SessionHost.pausedError(id) }
        guard let socket = await host.agentGatewaySocket else {
            throw SupervisorError(.conflict, "session \(id) has no model gateway for agent runs (its Unix socket under the state directory could not be bound: a state directory path over about 70 bytes is too long)", field: "session")
        }
        let policy = host.policy
        let tenant = host.tenant
        let spec = RunSpec(argv: ["levain-agent", agent.name])
        var request: JSONObject = spec.stored
        request["agent"] = ["name": .string(agent.name), "model": .string(agent.model), "max_steps": JSONValue(agent.maxSteps),
                            "wall_time": .double(agent.wallTime), "tools": JSONValue(agent.tools), "input": .string(ToolService.clip(input))]
        let runID = LevainSandbox.RunID.make()
        let record = RunRecord(id: runID, sessionID: id, tenant: tenant, status: .queued, request: request, retryPolicy: .fail)
        do {
            _ = try await log.record([RunEvents(sessionID: id, runID: runID, tenant: tenant).queued(request)],
                                     and: [.insertRun(record)])
        } catch {
            throw SupervisorError(.internalError, "the session log: \(error)", cause: error)
        }
        let state = makeRunState(record, spec: spec)
        let stop = AgentLoop.Stop()
        let service = context.tools
        let catalog = config.proxy.catalog
        let task = Task { [weak self] in
            guard let self else { return }
            await self.executeAgent(state, host: host, agent: agent, input: input, socket: socket, policy: policy,
                                    service: service, catalog: catalog, stop: stop)
            await self.finished(state.id)
        }
        tasks[runID] = task
        state.setCancelHandler {
            // Its calls end as the run's: approvals withdrawn with "run ended".
            service.calls.runEnded(runID)
            stop.set(.cancelled)
            task.cancel()
        }
        return record
    }

    private func executeAgent(_ run: RunState, host: SessionHost, agent: AgentSpec, input: String, socket: String, policy: Policy,
                              service: ToolService, catalog: [String: ModelEntry], stop: AgentLoop.Stop) async {
        let started = LogTimestamp.now()
        run.update { $0.status = .running; $0.startedAt = started }
        await host.exitsRunStarted(run.id)
        log.enqueue([RunEvents(sessionID: run.sessionID, runID: run.id, tenant: run.tenant).started(attempt: 1, argv: run.spec.argv)],
                    and: [.updateRun(RunUpdate(id: run.id, status: .running, startedAt: started, attempt: 1))])
        var startPayload: JSONObject = [
            Attribute.genAIOperationName: "invoke_agent", Attribute.genAIAgentName: .string(agent.name), Attribute.genAIRequestModel: .string(agent.model),
            Attribute.tools: JSONValue(agent.tools), Attribute.maxSteps: JSONValue(agent.maxSteps), Attribute.wallTimeS: .double(agent.wallTime),
            Attribute.input: .string(ToolService.clip(input)), Attribute.agentBytes: JSONValue(agent.source.utf8.count),
        ]
        if !agent.instructions.isEmpty { startPayload[Attribute.instructions] = .string(ToolService.clip(agent.instructions)) }
        if let b = agent.budgetTokens { startPayload[Attribute.budgetTokens] = .int(Int64(b)) }
        if let b = agent.budgetSpend { startPayload[Attribute.budgetSpend] = .double(b) }
        log.enqueue([NewEvent(sessionID: run.sessionID, runID: run.id, tenant: run.tenant, type: EventType.agentStarted, payload: startPayload)], and: [])

        var result: AgentResult
        // Tools the agent names must exist and be allowed, before any model call.
        let available = await service.definitions(policy: policy.tools)
        let missing = agent.tools.filter { name in !available.contains { $0.name == name } }
        if !missing.isEmpty {
            let registry = (BuiltinTools.definitions.map(\.name) + (await service.hostTools.definitions()).map(\.name))
            let unknown = missing.filter { !registry.contains($0) }
            let detail = unknown.isEmpty
                ? "the session's policy does not allow the tools \(missing.joined(separator: ", ")) ([tools] allow/deny)"
                : "the registry has no tool \(unknown.joined(separator: ", ")); it has \(registry.joined(separator: ", "))"
            result = AgentResult(reason: .error, output: nil, detail: detail, steps: 0, toolCalls: 0, inputTokens: 0, outputTokens: 0, cost: 0)
        } else if catalog[agent.model] == nil {
            result = AgentResult(reason: .error, output: nil, detail: "no model \"\(agent.model)\" in the supervisor's [models] catalog (known: \(catalog.keys.sorted().joined(separator: ", ")))",
                                 steps: 0, toolCalls: 0, inputTokens: 0, outputTokens: 0, cost: 0)
        } else {
            let definitions = available.filter { agent.tools.contains($0.name) }
            let model = GatewayModel(socket: socket, key: SessionExits.placeholderKey(run: run.id), price: catalog[agent.model]!)
            let caller = ToolService.Caller(sessionID: run.sessionID, runID: run.id, tenant: run.tenant, policy: policy.tools, origin: "agent")
            let invoker = ServiceInvoker(service: service, caller: caller, supervisor: self)
            let loop = AgentLoop(spec: agent, tools: definitions, model: model, invoker: invoker)
            let loopTask = Task { await loop.run(input: input, stop: stop) }
            let timer = Task {
                try? await Task.sleep(for: .seconds(agent.wallTime))
                if Task.isCancelled { return }
                service.calls.runEnded(run.id)
                stop.set(.timeout)
                loopTask.cancel()
            }
            result = await withTaskCancellationHandler {
                await loopTask.value
            } onCancel: {
                stop.set(.cancelled)
                loopTask.cancel()
            }
            timer.cancel()
            if let r = stop.reason, result.reason != r, result.reason != .finalAnswer { result.reason = r }
            if result.reason == .timeout { result.detail = result.detail ?? "wall_time of \(agent.wallTime)s passed" }
            if result.reason == .cancelled { result.detail = result.detail ?? "the run was cancelled" }
        }
        await host.exitsRunEnded(run.id)
        var endPayload: JSONObject = [
            Attribute.genAIOperationName: "invoke_agent", Attribute.genAIAgentName: .string(agent.name),
            Attribute.reason: .string(result.reason.rawValue), Attribute.steps: JSONValue(result.steps), Attribute.toolCalls: JSONValue(result.toolCalls),
            Attribute.genAIUsageInputTokens: .int(Int64(result.inputTokens)), Attribute.genAIUsageOutputTokens: .int(Int64(result.outputTokens)),
            Attribute.cost: .double(result.cost),
        ]
        if let d = result.detail { endPayload[Attribute.detail] = .string(d) }
        if let o = result.output { endPayload[Attribute.output] = .string(ToolService.clip(o)) }
        _ = try? await log.record([NewEvent(sessionID: run.sessionID, runID: run.id, tenant: run.tenant, type: EventType.agentFinished, payload: endPayload)], and: [])
        // The answer is the run's stdout; why it stopped, its stderr.
        if let o = result.output { _ = Array(o.utf8).withUnsafeBytes { run.stdout.append($0) } }
        if result.reason != .finalAnswer, let d = result.detail {
            _ = Array("levain: agent stopped (\(result.reason.rawValue)): \(d)\n".utf8).withUnsafeBytes { run.stderr.append($0) }
        }
        let status: RunStatus = switch result.reason {
        case .finalAnswer: .succeeded
        case .cancelled: .cancelled
        case .timeout: .timedOut
        default: .failed
        }
        await finalize(run, status: status, outcome: nil, limits: result.reason == .timeout ? ["timeout"] : [],
                       error: result.reason == .finalAnswer ? nil : "\(result.reason.rawValue): \(result.detail ?? "")",
                       exitStatus: result.reason == .finalAnswer ? 0 : (status == .failed ? 1 : nil))
    }
}

/// The tool service as the loop's tools.
struct ServiceInvoker: AgentTools {
    let service: ToolService
    let caller: ToolService.Caller
    let supervisor: Supervisor
    func call(_ call: ToolCallRequest) async -> ToolOutcome {
        await service.call(call, by: caller, supervisor: supervisor)
    }
}

/// The model behind the session's gateway, over its Unix socket, with
/// the run's placeholder key: what a client in the jail would do.
struct GatewayModel: AgentModel {
    let socket: String
    let key: String
    let price: ModelEntry

    static let maxAnswer = 16 << 20

    func complete(_ request: JSONValue) async throws -> ModelReply {
        guard let url = URL(httpURLWithSocketPath: socket, uri: "/v1/chat/completions") else {
            throw ModelCallError(status: 0, budget: nil, message: "bad gateway socket path \(socket)")
        }
        var r = HTTPClientRequest(url: url.absoluteString)
        r.method = .POST
        r.headers.add(name: "content-type", value: "application/json")
        r.headers.add(name: "authorization", value: "Bearer \(key)")
        r.body = .bytes(ByteBuffer(string: request.encoded()))
        let response = try await HTTPClient.shared.execute(r, timeout: .hours(1))
        let body = try await response.body.collect(upTo: Self.maxAnswer)
        let text = String(buffer: body)
        guard response.status == .ok else {
            let message = (try? JSONValue.parse(text))?["error"]?["message"]?.stringValue ?? String(text.prefix(300))
            throw ModelCallError(status: Int(response.status.code), budget: response.headers.first(name: "x-levain-budget"), message: message)
        }
        let value: JSONValue
        do { value = try JSONValue.parse(text) } catch {
            throw ModelCallError(status: 200, budget: nil, message: "the answer is not JSON: \(error)")
        }
        let input = UInt64(max(0, value["usage"]?["prompt_tokens"]?.intValue ?? 0))
        let output = UInt64(max(0, value["usage"]?["completion_tokens"]?.intValue ?? 0))
        return ModelReply(body: value, inputTokens: input, outputTokens: output, cost: price.cost(input: input, output: output))
    }
}

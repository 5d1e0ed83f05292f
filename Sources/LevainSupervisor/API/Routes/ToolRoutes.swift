#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainAgent
import LevainPolicy
import LevainProtocol
import LevainSessionLog
import NIOCore

extension APIServer {
    /// Agent runs, a session's tools, and approvals (docs/TOOLS.md).
    func addToolRoutes(_ router: Router<BasicRequestContext>, _ s: some ToolsBackend & RunsBackend) {
        let api = self
        router.post("/v1/sessions/:id/agent-runs") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                let agentRun = try AgentRunRequest(json: body)
                let spec: AgentSpec
                do throws(PolicyError) { spec = try AgentSpec.parse(agentRun.agent, file: agentRun.agentFile) } catch {
                    throw SupervisorError(.invalid, "\(error)", field: "agent", cause: error)
                }
                let record = try await s.submitAgentRun(session: id, agent: spec, input: agentRun.input)
                if agentRun.wait {
                    let done = await (try await s.runState(record.id)).wait(timeout: nil)
                    return .json(.created, await APIServer.json(done, s))
                }
                return .json(.created, await APIServer.json(record, s))
            }
        }
        router.get("/v1/sessions/:id/tools") { _, context in
            await api.respond {
                let (tools, policy) = try await s.tools(session: try api.param(context, "id"))
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
                let list = await s.approvals.list(session: session)
                return .json(.ok, ["approvals": .array(list.map(\.json))])
            }
        }
        router.post("/v1/approvals/:id") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let body = try await api.jsonBody(request)
                let decision = try ApprovalDecisionRequest(json: body)
                guard let p = try await s.approvals.decide(id, allow: decision.allow, by: decision.by, reason: decision.reason) else {
                    throw SupervisorError(.notFound, "no tool call \(id) waits for approval (decided, timed out, or never asked); see GET /v1/approvals", field: "id")
                }
                var o = p.json.objectValue ?? [:]
                for (k, v) in decision.json { o[k] = v }
                return .json(.ok, .object(o))
            }
        }
    }
}

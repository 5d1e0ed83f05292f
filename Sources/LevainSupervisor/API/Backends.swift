import LevainAPI
import LevainAgent
import LevainJSON
import LevainPolicy
import LevainProtocol
import LevainRuns
import LevainSessionLog
import LevainTools

// What each resource's routes need of the supervisor: one narrow protocol
// per room of the API (Routes/), which `Supervisor` implements. A route
// file sees only its protocol, so what it can reach is written here.

/// `/v1/health`, `/v1/version`.
protocol ServiceBackend: Sendable {
    var log: SessionLog { get }
    func slotsInUse() async -> (running: Int, waiting: Int)
    var startupVerify: VerifyReport? { get async }
    var verifyingAtStart: Bool { get async }
    var isAccepting: Bool { get async }
    var sessionCount: Int { get async }
    var warmPoolsSummary: JSONObject { get async }
}

/// `/v1/sessions`.
protocol SessionsBackend: Sendable {
    func createSession(_ spec: SessionSpec) async throws(SupervisorError) -> SessionRecord
    func sessions(tenant: String?, status: SessionStatus?) async throws(SupervisorError) -> [SessionRecord]
    func session(_ id: String) async throws(SupervisorError) -> SessionRecord
    func closeSession(_ id: String) async throws(SupervisorError) -> SessionRecord
    func reopenSession(_ id: String) async throws(SupervisorError) -> SessionRecord
    func setPaused(_ id: String, _ paused: Bool) async throws(SupervisorError) -> SessionRecord
    func isPaused(_ id: String) async -> Bool
}

/// `/v1/sessions/{id}/runs`, `/v1/runs`.
protocol RunsBackend: Sendable {
    func submitRun(session id: String, _ spec: RunSpec, arrival: UInt64?,
                   durability: SessionLog.Durability) async throws(SupervisorError) -> (RunRecord, Bool)
    func run(_ id: String) async throws(SupervisorError) -> RunRecord
    func runs(session: String?, status: RunStatus?) async throws(SupervisorError) -> [RunRecord]
    func runState(_ id: String) async throws(SupervisorError) -> RunState
    func cancelRun(_ id: String) async throws(SupervisorError) -> RunRecord
    func signalRun(_ id: String, signal: Int32) async throws(SupervisorError) -> RunRecord
    func resizeRun(_ id: String, to size: TerminalSize) async throws(SupervisorError) -> RunRecord
}

/// Event streams and `/v1/log`.
protocol EventsBackend: Sendable {
    var log: SessionLog { get }
    func session(_ id: String) async throws(SupervisorError) -> SessionRecord
    func run(_ id: String) async throws(SupervisorError) -> RunRecord
}

/// `/v1/sessions/{id}/files`, `/stat`: through the session's harness.
protocol FilesBackend: Sendable {
    func host(ready id: String) async throws(SupervisorError) -> SessionHost
    /// Records `file.written` / `file.deleted` in the session's log (best effort:
    /// the file operation has happened whatever the log says).
    func recordFileEvent(session: String, type: String, payload: JSONObject) async
}

/// Agent runs, a session's tools, approvals.
protocol ToolsBackend: Sendable {
    func submitAgentRun(session id: String, agent: AgentSpec, input: String) async throws(SupervisorError) -> RunRecord
    /// The tools a session's policy lets it see, with that policy.
    func tools(session id: String) async throws(SupervisorError) -> ([ToolDefinition], Policy.Tools)
    var approvals: Approvals { get }
}

extension Supervisor: ServiceBackend, SessionsBackend, RunsBackend, EventsBackend, FilesBackend, ToolsBackend {
    func recordFileEvent(session: String, type: String, payload: JSONObject) async {
        let tenant = (try? self.session(session))?.tenant ?? ""
        _ = try? await log.append(NewEvent(sessionID: session, tenant: tenant, type: type, payload: payload))
    }

    func tools(session id: String) async throws(SupervisorError) -> ([ToolDefinition], Policy.Tools) {
        let host = try await host(ready: id)
        return (await context.tools.definitions(policy: host.policy.tools), host.policy.tools)
    }

    nonisolated var approvals: Approvals { context.tools.approvals }
}

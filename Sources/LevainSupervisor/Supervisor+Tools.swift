import LevainAPI
import LevainPolicy
import LevainProtocol
import LevainProxy
import LevainRuns
import LevainSessionLog
import LevainTools
import NIOCore

/// What the tools (LevainTools) reach of the supervisor, and nothing more.
extension Supervisor: ToolHost {
    public nonisolated var eventLoopGroup: any EventLoopGroup { context.eventLoopGroup }
    public nonisolated var defaultPolicy: String { context.config.defaultPolicy }

    public func toolCaller(session: String) async throws(SupervisorError) -> (tenant: String, tools: Policy.Tools) {
        let host = try await host(ready: session)
        return (host.tenant, host.policy.tools)
    }

    public func openHostToolSession(_ spec: SessionSpec) async throws(SupervisorError) -> SessionRecord {
        let record = try await createSession(spec)
        markHostToolSession(record.id)
        return record
    }

    public func hostToolEgress(session: String, onDenied: @escaping @Sendable (String) -> Void) async throws(SupervisorError) -> EgressProxy {
        let host = try await host(ready: session)
        let settings = EgressSettings(rules: host.policy.egress, hosts: config.proxy.hosts, secrets: [:],
                                      connectTimeout: config.proxy.connectTimeout)
        let log = self.log
        return EgressProxy(group: context.eventLoopGroup, settings: { settings }, record: { r in
            if r.decision == .denied { onDenied("\(r.message ?? r.host) (\(r.rule))") }
            log.enqueue([SessionExits.event(r, session: session, run: nil, tenant: "levain")], and: [])
        })
    }
}

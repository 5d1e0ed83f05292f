import LevainAPI
import LevainPolicy
import LevainProtocol
import LevainProxy
import LevainRuns
import LevainSessionLog
import NIOCore
import Synchronization

/// What the tools need of the supervisor, which implements it: a session's
/// tool policy, runs in a session (`exec`, `glob`, `grep` and MCP stdio
/// servers are runs), the session's workspace through its harness, and
/// sessions of their own for host servers with an egress proxy each. The
/// tools reach nothing else of the supervisor.
public protocol ToolHost: Sendable {
    var log: SessionLog { get }
    var eventLoopGroup: any EventLoopGroup { get }
    /// The policy name a host server without one runs under.
    var defaultPolicy: String { get }

    /// The tenant and the tool policy of a session that is open.
    func toolCaller(session: String) async throws(APIError) -> (tenant: String, tools: Policy.Tools)

    func submitRun(session id: String, _ spec: RunSpec, arrival: UInt64?) async throws(APIError) -> (RunRecord, Bool)
    func runState(_ id: String) async throws(APIError) -> RunState
    func cancelRun(_ id: String) async throws(APIError) -> RunRecord

    func readWorkspace(_ session: String, _ path: String, maxBytes: UInt64, truncate: Bool) async throws(APIError) -> [UInt8]
    func writeWorkspace(_ session: String, _ path: String, _ bytes: [UInt8], mode: UInt32) async throws(APIError)
    func statWorkspace(_ session: String, _ path: String) async throws(APIError) -> FileInfo
    func listWorkspace(_ session: String, _ path: String) async throws(APIError) -> [DirEntry]

    /// Opens a session for a host tool server (its own policy and label),
    /// marked so that the supervisor treats it as the server's.
    func openHostToolSession(_ spec: SessionSpec) async throws(APIError) -> SessionRecord
    /// An egress proxy under the [network] rules of `session`'s policy,
    /// logging in that session; `onDenied` hears each refusal's reason.
    func hostToolEgress(session: String, onDenied: @escaping @Sendable (String) -> Void) async throws(APIError) -> EgressProxy
}

/// The runs of a session that are alive, for the in-jail MCP endpoint (a
/// call names its run; one that ended is refused).
public final class RunsBox: Sendable {
    private let ids = Mutex<Set<String>>([])
    public init() {}
    public func insert(_ id: String) { _ = ids.withLock { $0.insert(id) } }
    public func remove(_ id: String) { _ = ids.withLock { $0.remove(id) } }
    public func contains(_ id: String) -> Bool { ids.withLock { $0.contains(id) } }
}

extension ToolHost {
    func readWorkspace(_ session: String, _ path: String, maxBytes: UInt64) async throws(APIError) -> [UInt8] {
        try await readWorkspace(session, path, maxBytes: maxBytes, truncate: false)
    }

    func writeWorkspace(_ session: String, _ path: String, _ bytes: [UInt8]) async throws(APIError) {
        try await writeWorkspace(session, path, bytes, mode: 0o644)
    }
}

extension ToolHost {
    func submitRun(session id: String, _ spec: RunSpec) async throws(APIError) -> (RunRecord, Bool) {
        try await submitRun(session: id, spec, arrival: nil)
    }
}

import LevainAgent
import Synchronization

/// The tool calls in flight and what each belongs to: its session, its run
/// (when the caller is one: the agent loop's run, or `/runs/RUN/mcp`), and
/// for a call on the MCP endpoint's session path, the client's connection.
/// When one of them ends, its calls end: each is cancelled (an `exec` it
/// started is cancelled with it) and a decision it waits for is withdrawn
/// (denied, with the reason). A run that has ended starts no call.
public final class CallsInFlight: Sendable {
    struct Call {
        var session: String
        var run: String?
        var connection: UInt64?
        var task: Task<ToolOutcome, Never>
        /// Why it was ended, once it was.
        var ended: String?
    }

    private struct State {
        /// Live runs, and their sessions.
        var runs: [String: String] = [:]
        var calls: [String: Call] = [:]
        var connections: UInt64 = 0
    }

    private let state = Mutex(State())

    public func runStarted(_ run: String, session: String) {
        state.withLock { $0.runs[run] = session }
    }

    /// The run ended (or is being cancelled): its calls end.
    public func runEnded(_ run: String, reason: String = "run ended") {
        end(reason) { s in
            s.runs[run] = nil
            return { $0.run == run }
        }
    }

    /// The session closed: every call of it ends.
    public func sessionEnded(_ session: String, reason: String = "session closed") {
        end(reason) { s in
            s.runs = s.runs.filter { $0.value != session }
            return { $0.session == session }
        }
    }

    /// A number for an MCP client's connection.
    public func newConnection() -> UInt64 {
        state.withLock { s in s.connections += 1; return s.connections }
    }

    /// The MCP client of these calls hung up: nobody waits for them.
    public func connectionClosed(_ connection: UInt64, reason: String = "the MCP client hung up") {
        end(reason) { _ in { $0.connection == connection } }
    }

    private func end(_ reason: String, _ select: (inout State) -> (Call) -> Bool) {
        let tasks = state.withLock { s -> [Task<ToolOutcome, Never>] in
            let matches = select(&s)
            var tasks: [Task<ToolOutcome, Never>] = []
            for (id, call) in s.calls where matches(call) {
                if call.ended == nil { s.calls[id]?.ended = reason }
                tasks.append(call.task)
            }
            return tasks
        }
        for t in tasks { t.cancel() }
    }

    /// Starts `body` as call `id`, unless its run has ended (nil).
    func start(_ id: String, session: String, run: String?, connection: UInt64?,
               _ body: @escaping @Sendable () async -> ToolOutcome) -> Task<ToolOutcome, Never>? {
        state.withLock { s in
            if let run, s.runs[run] == nil { return nil }
            let task = Task { await body() }
            s.calls[id] = Call(session: session, run: run, connection: connection, task: task)
            return task
        }
    }

    func finished(_ id: String) {
        _ = state.withLock { $0.calls.removeValue(forKey: id) }
    }

    /// Why call `id` was ended; nil if it was not.
    func endReason(_ id: String) -> String? {
        state.withLock { $0.calls[id]?.ended }
    }

    public var count: Int { state.withLock { $0.calls.count } }
}

import NIOCore
import Synchronization

/// Connections a listener handles at once, counted across its listeners.
public final class ConnectionLimit: Sendable {
    public let max: Int
    private let open = Mutex(0)

    public init(max: Int) { self.max = max }

    /// Takes a place; false when all `max` are taken.
    func admit() -> Bool {
        open.withLock { n in
            guard n < max else { return false }
            n += 1
            return true
        }
    }

    func release() { open.withLock { $0 -= 1 } }
}

/// The accept loop of the servers the supervisor runs on NIO's async
/// channels (the model gateway, the in-jail MCP endpoint): each accepted
/// connection is handled in a task of its own, at most `limit.max` at once;
/// one past it goes to `refuse` (an answer, or a close) instead. Returns when
/// the listening channel closes; connections in progress end on their own.
public enum AcceptLoop {
    public static func run<Connection: Sendable>(_ server: NIOAsyncChannel<Connection, Never>, limit: ConnectionLimit,
                                                 handle: @escaping @Sendable (Connection) async -> Void,
                                                 refuse: @escaping @Sendable (Connection) async -> Void) async {
        try? await withThrowingDiscardingTaskGroup { tasks in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    if limit.admit() {
                        tasks.addTask {
                            await handle(connection)
                            limit.release()
                        }
                    } else {
                        tasks.addTask { await refuse(connection) }
                    }
                }
            }
        }
    }
}

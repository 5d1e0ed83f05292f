#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import LevainAPI
import LevainClock
import LevainSandbox
import NIOCore
import ServiceLifecycle
import Synchronization

/// The control API's side of a shutdown. Once closed, every new request
/// gets 503 without touching anything (the log is about to close), and the
/// long responses (event streams, followed output) send what there is and
/// end. It counts the handlers and streams still running, so the log is
/// closed only after them.
public final class APIGate: Sendable {
    private struct State {
        var closing = false
        var handlers = 0
        var streams = 0
        var wakers: [Int: @Sendable () -> Void] = [:]
        var nextWaker = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var isClosing: Bool { state.withLock { $0.closing } }

    /// No handler runs and no stream is open.
    public var isIdle: Bool { state.withLock { $0.handlers == 0 && $0.streams == 0 } }

    /// Refuses new requests from now on, and wakes the streams.
    public func close() {
        state.withLock { $0.closing = true }
        wakeStreams()
    }

    /// Wakes every stream that waits for output to follow (it looks at
    /// `isClosing` again).
    public func wakeStreams() {
        for waker in state.withLock({ Array($0.wakers.values) }) { waker() }
    }

    /// A handler starts; false when closed (the request is then refused).
    func enterHandler() -> Bool {
        state.withLock { s in
            guard !s.closing else { return false }
            s.handlers += 1
            return true
        }
    }

    func leaveHandler() { state.withLock { $0.handlers -= 1 } }

    /// A long response starts sending; `waker` makes it look at the gate
    /// when it waits for something else.
    func streamStarted(waker: (@Sendable () -> Void)? = nil) -> Int {
        state.withLock { s in
            s.streams += 1
            let id = s.nextWaker
            s.nextWaker += 1
            if let waker { s.wakers[id] = waker }
            return id
        }
    }

    func streamEnded(_ id: Int) {
        state.withLock { s in
            s.streams -= 1
            s.wakers[id] = nil
        }
    }

    static let shuttingDown = "the supervisor is shutting down: it takes no more requests (try again once it is back)"
}

/// First on every route: a request that arrives while the API's gate is
/// closed gets 503 at once.
struct ShutdownGate: RouterMiddleware {
    typealias Context = BasicRequestContext
    let gate: APIGate

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard gate.enterHandler() else {
            return APIServer.error(SupervisorError(.unavailable, APIGate.shuttingDown))
        }
        defer { gate.leaveHandler() }
        return try await next(request, context)
    }
}

/// Waits for the graceful-shutdown signal, then shuts down in order (the
/// service group stops it before the listeners):
/// 1. the supervisor stops taking work and lets runs finish for up to the
///    grace, then cancels the rest and records it; the API answers all
///    along (clients collect their runs' ends);
/// 2. the API's gate closes: new requests get 503, event streams send what
///    the log holds and end, followed output ends once sent;
/// 3. after `drain` seconds, connections opened before the gate closed and
///    still busy (a client that stopped reading) are closed;
/// 4. the log is closed, when no handler or stream is left (or after
///    another `drain`).
/// Then the listeners stop (Hummingbird closes idle connections and the
/// others after their answer, a 503 by now); a connection still open
/// `drain` seconds after it was made is closed, so none holds the exit.
struct ShutdownService: Service {
    let supervisor: Supervisor
    let grace: Double
    let gate: APIGate
    let listeners: [APIConnections]
    static let drain: Double = 2.5

    func run() async throws {
        try? await gracefulShutdown()
        await supervisor.shutdown(grace: grace, closeLog: false)
        let closedAt = NIODeadline.now()
        gate.close()
        await waitForIdle(seconds: Self.drain)
        if !gate.isIdle {
            for l in listeners { l.closeAll(openedBefore: closedAt) }
            await waitForIdle(seconds: Self.drain)
        }
        await supervisor.closeLog()
        // Hummingbird's shutdown of each listener waits for its connections.
        let listeners = self.listeners
        Task.detached {
            while true {
                try? await Task.sleep(nanoseconds: 250_000_000)
                let before = NIODeadline.now() - .nanoseconds(Int64(Self.drain * 1e9))
                for l in listeners { l.closeAll(openedBefore: before) }
            }
        }
    }

    private func waitForIdle(seconds: Double) async {
        let deadline = Monotonic.nanos() + UInt64(seconds * 1e9)
        while !gate.isIdle && Monotonic.nanos() < deadline {
            gate.wakeStreams()
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
    }
}

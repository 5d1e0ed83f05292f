import Synchronization

/// The first answer of several tasks, without waiting for the others: they
/// are cancelled and left to end on their own. (A task group would wait for
/// every child, and an MCP client's pending request does not end on
/// cancellation: a dead server must not hold its caller.)
enum Race {
    private final class State<T: Sendable>: Sendable {
        struct S {
            var continuation: CheckedContinuation<T?, Never>?
            var remaining: Int
            var tasks: [Task<Void, Never>] = []
            var done = false
            var result: T?
        }
        let s: Mutex<S>
        init(_ n: Int) { s = Mutex(S(continuation: nil, remaining: n)) }

        /// Ends the race with `value` (nil: no answer) unless it has ended.
        func finish(_ value: T?) {
            let (c, tasks) = s.withLock { s -> (CheckedContinuation<T?, Never>?, [Task<Void, Never>]) in
                guard !s.done else { return (nil, []) }
                s.done = true
                s.result = value
                defer { s.continuation = nil }
                return (s.continuation, s.tasks)
            }
            for t in tasks { t.cancel() }
            c?.resume(returning: value)
        }

        func lost() {
            let last = s.withLock { s -> Bool in s.remaining -= 1; return s.remaining == 0 }
            if last { finish(nil) }
        }
    }

    /// The first non-nil answer; nil when every body answered nil, when
    /// `timeout` seconds passed first, or when the caller was cancelled.
    static func first<T: Sendable>(timeout: Double?, _ bodies: [@Sendable () async -> T?]) async -> T? {
        let state = State<T>(bodies.count)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
                var tasks: [Task<Void, Never>] = bodies.map { body in
                    Task {
                        if let v = await body() { state.finish(v) } else { state.lost() }
                    }
                }
                if let timeout {
                    tasks.append(Task {
                        try? await Task.sleep(for: .seconds(timeout))
                        if !Task.isCancelled { state.finish(nil) }
                    })
                }
                let (finished, result) = state.s.withLock { s -> (Bool, T?) in
                    if !s.done {
                        s.continuation = c
                        s.tasks = tasks
                    }
                    return (s.done, s.result)
                }
                if finished {
                    // The race ended before the continuation was stored.
                    for t in tasks { t.cancel() }
                    c.resume(returning: result)
                }
            }
        } onCancel: {
            state.finish(nil)
        }
    }
}

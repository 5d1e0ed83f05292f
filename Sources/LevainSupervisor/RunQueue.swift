/// The run queue's admission: at most `limit` runs execute at once across
/// the supervisor; the others wait, first come first served. A waiter that
/// is cancelled (its run was cancelled while queued) leaves the line.
public actor RunSlots {
    public let limit: Int
    private var inUse = 0
    private var waiters: [(id: Int, continuation: CheckedContinuation<Bool, Never>)] = []
    private var nextID = 0

    public init(limit: Int) { self.limit = max(1, limit) }

    public var running: Int { inUse }
    public var waiting: Int { waiters.count }

    /// Waits for a slot; false when cancelled while waiting.
    public func acquire() async -> Bool {
        if inUse < limit && waiters.isEmpty {
            inUse += 1
            return true
        }
        let id = nextID
        nextID += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                if Task.isCancelled {
                    c.resume(returning: false)
                } else {
                    waiters.append((id, c))
                }
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    private func cancel(_ id: Int) {
        if let i = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: i).continuation.resume(returning: false)
        }
    }

    public func release() {
        if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume(returning: true)
        } else {
            inUse = max(0, inUse - 1)
        }
    }
}

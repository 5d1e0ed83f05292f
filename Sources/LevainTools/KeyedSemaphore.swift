/// At most `limit` holders per key at once; the others wait in order. A
/// waiter that is cancelled leaves the line (and gets false).
actor KeyedSemaphore {
    let limit: Int
    private var held: [String: Int] = [:]
    private var waiters: [String: [(UInt64, CheckedContinuation<Bool, Never>)]] = [:]
    private var next: UInt64 = 0

    init(limit: Int) { self.limit = limit }

    /// True once held (then `release` it); false when cancelled first.
    func acquire(_ key: String) async -> Bool {
        if Task.isCancelled { return false }
        if held[key, default: 0] < limit {
            held[key, default: 0] += 1
            return true
        }
        next += 1
        let id = next
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                waiters[key, default: []].append((id, c))
            }
        } onCancel: {
            Task { await self.leave(key, id) }
        }
    }

    private func leave(_ key: String, _ id: UInt64) {
        guard let i = waiters[key]?.firstIndex(where: { $0.0 == id }) else { return }
        let (_, c) = waiters[key]!.remove(at: i)
        if waiters[key]!.isEmpty { waiters[key] = nil }
        c.resume(returning: false)
    }

    func release(_ key: String) {
        if var line = waiters[key], !line.isEmpty {
            // Handed to the next in line: the count stays.
            let (_, c) = line.removeFirst()
            waiters[key] = line.isEmpty ? nil : line
            c.resume(returning: true)
            return
        }
        held[key, default: 1] -= 1
        if held[key]! <= 0 { held[key] = nil }
    }
}

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

/// The supervisor's run queue: at most `limit` runs execute at once, and a
/// free slot goes to the tenants in turn, within a tenant to its sessions in
/// turn, within a session first come first served. A session that queues a
/// thousand slow runs therefore takes one slot in each round, not the line:
/// another session's run waits for at most one slot to free per session
/// (or tenant) ahead of it in the round, whatever the backlog.
///
/// `perSession` and `perTenant` cap the runs executing at once for one
/// session or one tenant (nil: only `limit`), so one of them can never hold
/// every slot even when the others are idle for a moment.
public actor FairRunQueue {
    public let limit: Int
    public let perSession: Int?
    public let perTenant: Int?

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Bool, Never>
    }

    private var inUse = 0
    private var runningBySession: [String: Int] = [:]
    private var runningByTenant: [String: Int] = [:]
    /// tenant -> session -> waiters, oldest first.
    private var waiting: [String: [String: [Waiter]]] = [:]
    /// The rounds: tenants with waiters, and each tenant's sessions with
    /// waiters, in the order they are served next.
    private var tenantTurn: [String] = []
    private var sessionTurn: [String: [String]] = [:]
    private var waitingCount = 0
    private var nextID = 0

    public init(limit: Int, perSession: Int? = nil, perTenant: Int? = nil) {
        self.limit = max(1, limit)
        self.perSession = perSession.map { max(1, $0) }
        self.perTenant = perTenant.map { max(1, $0) }
    }

    public var running: Int { inUse }
    public var waiters: Int { waitingCount }

    /// Waits for a slot for a run of `session` (of `tenant`); false when
    /// the waiting task is cancelled (its run was cancelled while queued).
    public func acquire(session: String, tenant: String) async -> Bool {
        if waitingCount == 0 && canRun(session: session, tenant: tenant) {
            take(session: session, tenant: tenant)
            return true
        }
        let id = nextID
        nextID += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                if Task.isCancelled {
                    c.resume(returning: false)
                } else {
                    enqueue(Waiter(id: id, continuation: c), session: session, tenant: tenant)
                    dispatch()
                }
            }
        } onCancel: {
            Task { await self.cancel(id, session: session, tenant: tenant) }
        }
    }

    public func release(session: String, tenant: String) {
        inUse = max(0, inUse - 1)
        runningBySession[session] = (runningBySession[session] ?? 1) - 1
        if runningBySession[session]! <= 0 { runningBySession[session] = nil }
        runningByTenant[tenant] = (runningByTenant[tenant] ?? 1) - 1
        if runningByTenant[tenant]! <= 0 { runningByTenant[tenant] = nil }
        dispatch()
    }

    private func canRun(session: String, tenant: String) -> Bool {
        guard inUse < limit else { return false }
        if let perSession, runningBySession[session, default: 0] >= perSession { return false }
        if let perTenant, runningByTenant[tenant, default: 0] >= perTenant { return false }
        return true
    }

    private func take(session: String, tenant: String) {
        inUse += 1
        runningBySession[session, default: 0] += 1
        runningByTenant[tenant, default: 0] += 1
    }

    private func enqueue(_ waiter: Waiter, session: String, tenant: String) {
        if waiting[tenant] == nil {
            waiting[tenant] = [:]
            tenantTurn.append(tenant)
        }
        if waiting[tenant]![session] == nil {
            waiting[tenant]![session] = []
            sessionTurn[tenant, default: []].append(session)
        }
        waiting[tenant]![session]!.append(waiter)
        waitingCount += 1
    }

    /// Hands free slots out: the next tenant in turn that may run, its next
    /// session in turn that may run, that session's oldest waiter. A tenant
    /// or session that is served moves to the back of its round.
    private func dispatch() {
        while inUse < limit, waitingCount > 0 {
            var served = false
            for (ti, tenant) in tenantTurn.enumerated() {
                if let perTenant, runningByTenant[tenant, default: 0] >= perTenant { continue }
                let sessions = sessionTurn[tenant] ?? []
                guard let si = sessions.firstIndex(where: { canRun(session: $0, tenant: tenant) }) else { continue }
                let session = sessions[si]
                let waiter = waiting[tenant]![session]!.removeFirst()
                waitingCount -= 1
                take(session: session, tenant: tenant)
                // Rotate: this session and this tenant go last in their rounds.
                sessionTurn[tenant]!.remove(at: si)
                if waiting[tenant]![session]!.isEmpty {
                    waiting[tenant]![session] = nil
                } else {
                    sessionTurn[tenant]!.append(session)
                }
                tenantTurn.remove(at: ti)
                if waiting[tenant]!.isEmpty {
                    waiting[tenant] = nil
                    sessionTurn[tenant] = nil
                } else {
                    tenantTurn.append(tenant)
                }
                waiter.continuation.resume(returning: true)
                served = true
                break
            }
            if !served { return }
        }
    }

    private func cancel(_ id: Int, session: String, tenant: String) {
        guard var list = waiting[tenant]?[session], let i = list.firstIndex(where: { $0.id == id }) else { return }
        let waiter = list.remove(at: i)
        waitingCount -= 1
        if list.isEmpty {
            waiting[tenant]![session] = nil
            sessionTurn[tenant]?.removeAll { $0 == session }
            if waiting[tenant]!.isEmpty {
                waiting[tenant] = nil
                sessionTurn[tenant] = nil
                tenantTurn.removeAll { $0 == tenant }
            }
        } else {
            waiting[tenant]![session] = list
        }
        waiter.continuation.resume(returning: false)
    }
}

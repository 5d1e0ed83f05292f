import Foundation
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The run queue hands slots out in turn between tenants and sessions.
@Suite("Fair run queue")
struct FairQueueTests {
    /// Grants in the order they happen.
    actor Order {
        var grants: [String] = []
        func add(_ s: String) { grants.append(s) }
    }

    /// Queues `count` waiters for `session` and records each grant.
    static func queue(_ q: FairRunQueue, _ order: Order, session: String, tenant: String, count: Int) -> [Task<Void, Never>] {
        (0..<count).map { _ in
            Task {
                if await q.acquire(session: session, tenant: tenant) { await order.add(session) }
            }
        }
    }

    static func settle() async { try? await Task.sleep(nanoseconds: 50_000_000) }

    @Test("a session with a backlog gets one slot a round; another session's run is next, not last")
    func roundRobinBetweenSessions() async throws {
        let q = FairRunQueue(limit: 1)
        let order = Order()
        #expect(await q.acquire(session: "busy", tenant: "t"))  // the one slot, held
        var tasks = Self.queue(q, order, session: "busy", tenant: "t", count: 10)
        await Self.settle()
        tasks += Self.queue(q, order, session: "quiet", tenant: "t", count: 2)
        await Self.settle()
        for _ in 0..<12 {
            await q.release(session: "busy", tenant: "t")
            await Self.settle()
        }
        for t in tasks { await t.value }
        let grants = await order.grants
        #expect(grants.count == 12)
        // FIFO would serve "quiet" 11th and 12th.
        let quiet = grants.indices.filter { grants[$0] == "quiet" }
        #expect(quiet == [1, 3], "\(grants)")
    }

    @Test("tenants take turns before sessions do: a tenant with many sessions does not crowd out one with a single session")
    func roundRobinBetweenTenants() async throws {
        let q = FairRunQueue(limit: 1)
        let order = Order()
        #expect(await q.acquire(session: "a1", tenant: "big"))
        var tasks: [Task<Void, Never>] = []
        for s in ["a1", "a2", "a3", "a4"] { tasks += Self.queue(q, order, session: s, tenant: "big", count: 2) }
        await Self.settle()
        tasks += Self.queue(q, order, session: "b1", tenant: "small", count: 3)
        await Self.settle()
        for _ in 0..<11 {
            await q.release(session: "x", tenant: "x")
            await Self.settle()
        }
        for t in tasks { await t.value }
        let grants = await order.grants
        #expect(grants.count == 11)
        // Every other grant is the small tenant's until its runs are done.
        #expect(Array(grants.enumerated().filter { $0.element == "b1" }.map(\.offset)) == [1, 3, 5], "\(grants)")
    }

    @Test("per-session and per-tenant caps hold even with free slots; a cancelled waiter leaves the line")
    func caps() async throws {
        let q = FairRunQueue(limit: 4, perSession: 1, perTenant: 2)
        #expect(await q.acquire(session: "s1", tenant: "t"))
        let order = Order()
        let second = Self.queue(q, order, session: "s1", tenant: "t", count: 1)
        await Self.settle()
        #expect(await order.grants.isEmpty, "a second run of s1 while s1 has one")
        #expect(await q.acquire(session: "s2", tenant: "t"))  // control: another session of t may
        let third = Self.queue(q, order, session: "s3", tenant: "t", count: 1)
        await Self.settle()
        #expect(await order.grants.isEmpty, "tenant t holds 2 already")
        #expect(await q.acquire(session: "u1", tenant: "u"))  // control: another tenant may
        // Cancelled while waiting: false, and it no longer holds its place.
        let cancelled = Task { await q.acquire(session: "s3", tenant: "t") }
        await Self.settle()
        cancelled.cancel()
        #expect(await cancelled.value == false)
        await q.release(session: "s1", tenant: "t")
        await Self.settle()
        // Tenant t has room for one more: its sessions in turn, s1 first.
        let granted = await order.grants
        #expect(granted == ["s1"], "\(granted)")
        for t in second + third { t.cancel() }
        for t in second + third { await t.value }
        #expect(await q.running <= 4)
    }
}

import Testing
@testable import LevainProxy

@Suite struct UsageLedgerTests {
    let run = UsageLedger.Scope(.run, "r-1")

    @Test("a request is admitted while spent + reserved is under the limit; the overshoot is at most one request")
    func admission() {
        let ledger = UsageLedger()
        let limits = [UsageLedger.Limit(scope: run, tokens: 100)]
        var spent: UInt64 = 0
        var statuses: [Bool] = []
        for _ in 0..<5 {
            switch ledger.admit(limits: limits, rate: nil, tokens: 1000, spend: 0) {
            case .admitted(let t):
                statuses.append(true)
                ledger.settle(t, input: 30, output: 10, spend: 0)
                spent += 40
            case .exhausted(let budget, _, _, let pending):
                statuses.append(false)
                #expect(budget == "run_tokens")
                #expect(!pending)
            case .rateLimited: Issue.record("no rate limit was set")
            }
        }
        #expect(statuses == [true, true, true, false, false])
        #expect(ledger.totals(run).tokens == 120)
        #expect(spent <= 100 + 40)
    }

    @Test("requests in flight hold their worst case: concurrent admission stops at the limit")
    func reservations() {
        let ledger = UsageLedger()
        let limits = [UsageLedger.Limit(scope: run, tokens: 100)]
        var tickets: [UsageLedger.Ticket] = []
        for _ in 0..<10 {
            if case .admitted(let t) = ledger.admit(limits: limits, rate: nil, tokens: 40, spend: 0) { tickets.append(t) }
        }
        // 0, 40, 80 reserved before each: three in flight at most; the next
        // is refused only by what is pending.
        #expect(tickets.count == 3)
        if case .exhausted(_, _, _, let pending) = ledger.admit(limits: limits, rate: nil, tokens: 40, spend: 0) { #expect(pending) }
        for t in tickets { ledger.settle(t, input: 20, output: 20, spend: 0) }
        // Their actual use (120) is what counts now: nothing more is admitted.
        if case .admitted = ledger.admit(limits: limits, rate: nil, tokens: 40, spend: 0) { Issue.record("admitted past the limit") }
        #expect(ledger.totals(run).tokens == 120)
    }

    @Test("spend budgets, the request rate, and forgetting a run")
    func spendAndRate() {
        let ledger = UsageLedger()
        let session = UsageLedger.Scope(.session, "s-1")
        let limits = [UsageLedger.Limit(scope: session, spend: 0.01)]
        guard case .admitted(let t) = ledger.admit(limits: limits, rate: nil, tokens: 10, spend: 0.001) else {
            Issue.record("refused the first request"); return
        }
        ledger.settle(t, input: 5, output: 5, spend: 0.02)
        guard case .exhausted(let budget, let used, let limit, _) = ledger.admit(limits: limits, rate: nil, tokens: 10, spend: 0) else {
            Issue.record("admitted past the spend budget"); return
        }
        #expect(budget == "session_spend")
        #expect(used == 0.02 && limit == 0.01)
        var admitted = 0
        for _ in 0..<5 {
            if case .admitted(let t) = ledger.admit(limits: [], rate: (run, 3), tokens: 1, spend: 0) {
                admitted += 1
                ledger.settle(t, input: 1, output: 0, spend: 0)
            }
        }
        #expect(admitted == 3)
        ledger.forget(run)
        #expect(ledger.totals(run).requests == 0)
    }

    @Test("a request refused only by requests in flight waits for them to settle; one refused by spending does not")
    func waitsForSettle() async {
        let ledger = UsageLedger()
        let limits = [UsageLedger.Limit(scope: run, tokens: 100)]
        guard case .admitted(let first) = ledger.admit(limits: limits, rate: nil, tokens: 500, spend: 0) else {
            Issue.record("refused the first request"); return
        }
        // Held by the first's worst case (500): it waits, and the settle of
        // the first (40 used) lets it in.
        async let second = ledger.admit(limits: limits, rate: nil, tokens: 500, spend: 0, waitingUpTo: 60)
        try? await Task.sleep(nanoseconds: 20_000_000)
        ledger.settle(first, input: 30, output: 10, spend: 0)
        guard case .admitted(let t2) = await second else { Issue.record("the waiting request was refused"); return }
        ledger.settle(t2, input: 60, output: 20, spend: 0)
        // Spent (120 >= 100): refused at once, not pending.
        guard case .exhausted(_, _, _, let pending) = await ledger.admit(limits: limits, rate: nil, tokens: 1, spend: 0, waitingUpTo: 60) else {
            Issue.record("admitted past the limit"); return
        }
        #expect(!pending)
        // Held by a request that never settles: refused when the wait is over.
        let other = UsageLedger.Scope(.run, "r-2")
        _ = ledger.admit(limits: [.init(scope: other, tokens: 100)], rate: nil, tokens: 500, spend: 0)
        guard case .exhausted(_, _, _, true) = await ledger.admit(limits: [.init(scope: other, tokens: 100)], rate: nil, tokens: 1, spend: 0,
                                                                  waitingUpTo: 0.05) else {
            Issue.record("not refused as pending"); return
        }
    }
}

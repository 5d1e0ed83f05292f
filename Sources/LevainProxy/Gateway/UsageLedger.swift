#if canImport(Glibc)
import Glibc
#endif
import LevainClock
import Synchronization

/// Token and spend accounting for budgets, shared by every session's
/// gateway of one supervisor (tenants span sessions).
///
/// A request is admitted while, in each of its scopes, what is spent plus
/// what requests in flight may still spend is below the limit; it then
/// reserves its own worst case (its input bytes as tokens, plus max_tokens).
/// Since every request in flight holds its worst case, the recorded spend
/// can pass a limit by at most the one request admitted last.
public final class UsageLedger: Sendable {
    public struct Scope: Hashable, Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable { case run, session, tenant }
        public var kind: Kind
        public var id: String
        public init(_ kind: Kind, _ id: String) {
            self.kind = kind
            self.id = id
        }
        public var description: String { "\(kind.rawValue):\(id)" }
    }

    public struct Limit: Sendable, Equatable {
        public var scope: Scope
        public var tokens: UInt64?
        public var spend: Double?
        public init(scope: Scope, tokens: UInt64? = nil, spend: Double? = nil) {
            self.scope = scope
            self.tokens = tokens
            self.spend = spend
        }
    }

    public struct Totals: Sendable, Equatable {
        public var inputTokens: UInt64 = 0
        public var outputTokens: UInt64 = 0
        public var spend: Double = 0
        public var requests: UInt64 = 0
        public var tokens: UInt64 { inputTokens + outputTokens }
        public init() {}
    }

    /// An admitted request's hold on its scopes.
    public struct Ticket: Sendable {
        let scopes: [Scope]
        let tokens: UInt64
        let spend: Double
    }

    public enum Admission: Sendable {
        case admitted(Ticket)
        /// The budget that is exhausted ("run_tokens", "tenant_spend", ...).
        /// `pending`: only by what requests in flight may still spend (they
        /// may settle below it: worth waiting for).
        case exhausted(budget: String, used: Double, limit: Double, pending: Bool)
        case rateLimited(budget: String, limit: Int)
    }

    private struct Account {
        var totals = Totals()
        var reservedTokens: UInt64 = 0
        var reservedSpend: Double = 0
        var recent: [Double] = []  // request times (monotonic seconds), for the rate
    }

    private let accounts = Mutex<[Scope: Account]>([:])
    /// Admissions waiting for requests in flight to settle, by id.
    private let settleWaiters = Mutex<(next: Int, waiting: [Int: CheckedContinuation<Void, Never>])>((0, [:]))

    public init() {}

    /// Adds usage recorded before this supervisor started (from the log).
    public func preload(_ scope: Scope, _ totals: Totals) {
        accounts.withLock { $0[scope, default: Account()].totals = totals }
    }

    public func totals(_ scope: Scope) -> Totals {
        accounts.withLock { $0[scope]?.totals ?? Totals() }
    }

    /// Forgets a finished run's account (its usage is in the log).
    public func forget(_ scope: Scope) {
        _ = accounts.withLock { $0.removeValue(forKey: scope) }
    }

    /// Admits a request whose worst case is `tokens` and `spend`, or says
    /// which budget refuses it. `rate` limits requests per minute in the
    /// scope it names.
    public func admit(limits: [Limit], rate: (scope: Scope, perMinute: Int)?, tokens: UInt64, spend: Double) -> Admission {
        let now = Monotonic.seconds()
        return accounts.withLock { accounts -> Admission in
            for limit in limits {
                let a = accounts[limit.scope] ?? Account()
                if let max = limit.tokens, a.totals.tokens + a.reservedTokens >= max {
                    return .exhausted(budget: "\(limit.scope.kind.rawValue)_tokens", used: Double(a.totals.tokens), limit: Double(max),
                                      pending: a.totals.tokens < max)
                }
                if let max = limit.spend, a.totals.spend + a.reservedSpend >= max {
                    return .exhausted(budget: "\(limit.scope.kind.rawValue)_spend", used: a.totals.spend, limit: max,
                                      pending: a.totals.spend < max)
                }
            }
            if let rate {
                var a = accounts[rate.scope] ?? Account()
                a.recent.removeAll { now - $0 >= 60 }
                if a.recent.count >= rate.perMinute {
                    accounts[rate.scope] = a
                    return .rateLimited(budget: "requests_per_minute", limit: rate.perMinute)
                }
                a.recent.append(now)
                accounts[rate.scope] = a
            }
            var scopes = limits.map(\.scope)
            if let rate, !scopes.contains(rate.scope) { scopes.append(rate.scope) }
            for s in scopes {
                accounts[s, default: Account()].reservedTokens += tokens
                accounts[s, default: Account()].reservedSpend += spend
            }
            return .admitted(Ticket(scopes: scopes, tokens: tokens, spend: spend))
        }
    }

    /// `admit`, but a request refused only by what requests in flight hold
    /// waits (up to `wait` seconds) for them to settle and asks again: an
    /// agent's next call often arrives before its previous answer's usage
    /// has been read.
    public func admit(limits: [Limit], rate: (scope: Scope, perMinute: Int)?, tokens: UInt64, spend: Double,
                      waitingUpTo wait: Double) async -> Admission {
        let deadline = Monotonic.seconds() + wait
        while true {
            let admission = admit(limits: limits, rate: rate, tokens: tokens, spend: spend)
            let left = deadline - Monotonic.seconds()
            guard case .exhausted(_, _, _, true) = admission, left > 0 else { return admission }
            await nextSettle(timeout: left)
        }
    }

    /// Returns at the next `settle`, or after `timeout` seconds.
    private func nextSettle(timeout: Double) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let id = settleWaiters.withLock { w in
                defer { w.next += 1 }
                w.waiting[w.next] = c
                return w.next
            }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                settleWaiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
            }
        }
    }

    /// Releases the ticket's hold and records what the request used, in its
    /// scopes and in `alsoRecord` (scopes without a limit, kept for usage).
    public func settle(_ ticket: Ticket, input: UInt64, output: UInt64, spend: Double, alsoRecord: [Scope] = []) {
        accounts.withLock { accounts in
            for s in ticket.scopes {
                var a = accounts[s, default: Account()]
                a.reservedTokens -= min(a.reservedTokens, ticket.tokens)
                a.reservedSpend = max(0, a.reservedSpend - ticket.spend)
                accounts[s] = a
            }
            for s in Set(ticket.scopes + alsoRecord) {
                var a = accounts[s, default: Account()]
                a.totals.inputTokens += input
                a.totals.outputTokens += output
                a.totals.spend += spend
                a.totals.requests += 1
                accounts[s] = a
            }
        }
        let woken = settleWaiters.withLock { w in
            defer { w.waiting = [:] }
            return Array(w.waiting.values)
        }
        for c in woken { c.resume() }
    }

}

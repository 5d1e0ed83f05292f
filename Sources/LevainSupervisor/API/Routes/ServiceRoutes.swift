#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainJSON
import LevainProtocol
import LevainSessionLog
import NIOCore

extension APIServer {
    /// Health and version.
    func addServiceRoutes(_ router: Router<BasicRequestContext>, _ s: some ServiceBackend) {
        let api = self
        router.get("/v1/health") { _, _ in
            await api.respond {
                let (running, waiting) = await s.slotsInUse()
                let verify = await s.startupVerify
                // 503 while the log cannot be written: no work is accepted.
                if let failure = s.log.writeFailure {
                    return .json(.serviceUnavailable, [
                        "status": "log_unwritable", "reason": .string(failure.message),
                        "failed_writes": JSONValue(failure.failures),
                        "sessions": JSONValue(await s.sessionCount),
                        "runs_running": JSONValue(running), "runs_waiting": JSONValue(waiting),
                    ])
                }
                return .json(.ok, [
                    "status": .string(await s.isAccepting ? "ok" : "shutting_down"),
                    "sessions": JSONValue(await s.sessionCount),
                    "runs_running": JSONValue(running), "runs_waiting": JSONValue(waiting),
                    "warm_pools": .object(await s.warmPoolsSummary),
                    "log": ["verified_at_start": .bool(verify?.ok ?? false), "problems": JSONValue(verify?.problems.count ?? 0),
                            "verifying": .bool(await s.verifyingAtStart),
                            // Commits since start, and how many of them fsynced.
                            "transactions": JSONValue(s.log.statistics.transactions),
                            "synced_transactions": JSONValue(s.log.statistics.syncedTransactions)],
                ])
            }
        }
        router.get("/v1/version") { _, _ in
            Response.json(.ok, ["levain": .string(APIServer.version), "protocol": .int(Int64(ProtocolLimits.protocolVersion))])
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainJSON
import LevainPolicy
import LevainSandbox
import LevainSessionLog
import LevainSystem

/// Warm pools (docs/SUPERVISOR.md#warm-pools): per policy, jails started
/// before the requests that will take them. A warm jail is a session's jail
/// whose session does not exist yet: its id, cgroup and workspace are made
/// as for any session, its workspace under `state/workspaces/.pool/` (the record that
/// it exists, made before the cgroup: a start after a crash removes what
/// it names). A `POST /v1/sessions` that the jail fits (its policy, the
/// default tenant, no binds, no limits of its own) takes one: the session
/// is recorded with the jail's id, the workspace is moved beside the other
/// sessions', and the pool starts another. A warm jail is handed out once:
/// taken from the pool before anything else happens to it, never returned.
struct WarmPools: Sendable {
    struct Pool: Sendable {
        var size: Int
        var ready: [SessionHost] = []
        var starting = 0
        /// Starts that failed in a row; the pool waits before the next.
        var failures = 0
        /// Waiting out the backoff after a failure: not filled meanwhile.
        var backingOff = false
        var lastError: String?
        var taken = 0
        var missed = 0
    }

    var pools: [String: Pool] = [:]
    var closed = false

    /// The most warm jails of one policy.
    static let maximumSize = 64
}

extension Supervisor {
    /// Beside the sessions' workspaces (in their directory), so moving one
    /// into place is a rename on one filesystem whatever is mounted there.
    var poolDirectory: String { config.stateDirectory + "/workspaces/.pool" }

    /// Makes the pools of the config and starts filling them.
    func startWarmPools() {
        for (policy, size) in config.warmPools where size > 0 {
            warm.pools[policy] = WarmPools.Pool(size: min(size, WarmPools.maximumSize))
        }
        fillWarmPools()
    }

    /// Starts jails until each pool holds its size (ready and starting).
    func fillWarmPools() {
        guard accepting, !warm.closed else { return }
        for (policy, pool) in warm.pools where !pool.backingOff {
            let missing = pool.size - pool.ready.count - pool.starting
            guard missing > 0 else { continue }
            // One at a time after a failure: a broken policy costs one try
            // per backoff, not `size`.
            let count = pool.failures > 0 ? min(1, missing) : missing
            warm.pools[policy]!.starting += count
            for _ in 0..<count {
                Task { await self.startWarmJail(policy) }
            }
        }
    }

    private func startWarmJail(_ name: String) async {
        var host: SessionHost? = nil
        var failure = ""
        let spec = SessionSpec(policy: name)
        do throws(SupervisorError) {
            let policy = try resolvePolicy(spec)
            let id = SessionID.make()
            do {
                try Directories.make(poolDirectory, mode: 0o700)
            } catch {
                throw SupervisorError(.internalError, "\(poolDirectory): \(error)", cause: error)
            }
            let base = poolDirectory + "/" + id
            let workspace = policy.filesystem.workspaceSize != nil ? WorkspaceImage.path(of: base) : base
            let h = SessionHost(id: id, tenant: spec.tenant, spec: spec, policy: policy, workspace: workspace, context: context)
            do {
                try await h.open()
            } catch {
                await discardWarm(h)
                throw error
            }
            host = h
        } catch {
            failure = error.message
        }
        warm.pools[name]?.starting -= 1
        guard let host else {
            if var pool = warm.pools[name] {
                pool.failures += 1
                pool.lastError = failure
                let seconds = min(60.0, 0.5 * Double(1 << min(pool.failures, 7)))
                pool.backingOff = true
                warm.pools[name] = pool
                Self.say("levain: a warm jail of policy \(name) did not start (\(pool.failures) in a row; next try in \(Int(seconds)) s): \(failure)")
                Task { [weak self] in
                    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                    await self?.endWarmBackoff(name)
                }
            }
            return
        }
        guard accepting, !warm.closed, warm.pools[name] != nil else {
            await discardWarm(host)
            return
        }
        warm.pools[name]!.failures = 0
        warm.pools[name]!.lastError = nil
        warm.pools[name]!.ready.append(host)
    }

    private func endWarmBackoff(_ name: String) {
        warm.pools[name]?.backingOff = false
        fillWarmPools()
    }

    /// A ready warm jail for a session of `spec`, whose policy resolved to
    /// `policy`; nil when the request does not fit a pool or the pool is
    /// empty. The jail leaves the pool here, before any await: no second
    /// request can get it.
    func takeWarmJail(_ spec: SessionSpec, policy: Policy) async -> SessionHost? {
        guard spec.tenant.isEmpty, spec.binds.isEmpty, spec.harness == nil,
              spec.memory == nil, spec.cpus == nil, spec.pids == nil, spec.timeout == nil,
              !policy.audit.isEnabled, warm.pools[spec.policy] != nil else { return nil }
        defer { fillWarmPools() }
        while let host = warm.pools[spec.policy]?.ready.first {
            warm.pools[spec.policy]!.ready.removeFirst()
            // A policy file changed since the jail started, or the jail died
            // while it waited: not this request's jail.
            if host.policy == policy, await host.isReady {
                warm.pools[spec.policy]!.taken += 1
                return host
            }
            await discardWarm(host)
        }
        warm.pools[spec.policy]?.missed += 1
        return nil
    }

    /// Records the session of a warm jail and moves its workspace beside
    /// the other sessions'.
    func adoptWarmJail(_ host: SessionHost, _ spec: SessionSpec) async throws(SupervisorError) -> SessionRecord {
        let id = host.id
        let pooled = await host.workspace
        let image = pooled.hasSuffix(".img")
        let workspace = image ? WorkspaceImage.path(of: workspacePath(id)) : workspacePath(id)
        let record: SessionRecord
        do {
            record = try await recordOpened(id, spec, workspace: workspace, warm: true)
        } catch {
            await discardWarm(host)
            throw error
        }
        // Recorded first: a crash before the move leaves the workspace in
        // the pool directory, which the next start removes; the session then
        // reopens with an empty one, as it had never been used.
        let moved = rename(pooled, workspace) == 0
        guard moved else {
            let reason = "cannot move the warm jail's workspace to \(workspace): \(String(cString: strerror(errno)))"
            await discardWarm(host)
            _ = try? await log.record([NewEvent(sessionID: id, tenant: spec.tenant, type: EventType.sessionFailed, payload: ["reason": .string(reason)])],
                                      and: [.updateSession(SessionUpdate(id: id, status: .failed, closedAt: .now()))])
            throw SupervisorError(.internalError, reason)
        }
        await host.adopt(workspace: workspace)
        // Shutdown began during the awaits above: it has closed the hosts
        // it saw, so this one is closed here (and recorded interrupted).
        guard accepting else {
            await host.close()
            _ = try? await log.record([NewEvent(sessionID: id, tenant: spec.tenant, type: EventType.sessionInterrupted,
                                                payload: ["reason": "supervisor shutdown"])],
                                      and: [.updateSession(SessionUpdate(id: id, status: .interrupted))])
            throw SupervisorError(.unavailable, "the supervisor is shutting down")
        }
        hosts[id] = host
        return record
    }

    /// Ends a warm jail nobody took and removes its workspace.
    func discardWarm(_ host: SessionHost) async {
        await host.close()
        let workspace = await host.workspace
        if workspace.hasPrefix(poolDirectory + "/") {
            await context.blocking { _ = FileTree.remove(workspace) }
        }
    }

    /// At shutdown: no pool starts more, and the ready jails end.
    func closeWarmPools() async {
        warm.closed = true
        // Every pool emptied before the first await: no take succeeds after.
        var ready: [SessionHost] = []
        for name in warm.pools.keys {
            ready += warm.pools[name]!.ready
            warm.pools[name]!.ready = []
        }
        for host in ready { await discardWarm(host) }
    }

    /// Ids of the warm jails a previous supervisor left in the pool
    /// directory (killed with them ready): their cgroups are swept at start,
    /// then `removeLeftoverWarmWorkspaces` removes what the directory holds.
    func leftoverWarmJails() async -> Set<String> {
        let dir = poolDirectory
        return await context.blocking {
            var ids: Set<String> = []
            guard let d = opendir(dir) else { return ids }
            while let e = readdir(d), ids.count < 100_000 {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                let id = name.hasSuffix(".img") ? String(name.dropLast(4)) : name
                if SessionID.isValid(id) { ids.insert(id) }
            }
            closedir(d)
            return ids
        }
    }

    /// Empties the pool directory (at start, before any pool fills it).
    func removeLeftoverWarmWorkspaces() async {
        let dir = poolDirectory
        await context.blocking {
            FileTree.remove(dir)
        }
    }

    /// The pools, for GET /v1/health.
    var warmPoolsSummary: JSONObject {
        var out: JSONObject = [:]
        for (name, pool) in warm.pools {
            var o: JSONObject = ["size": JSONValue(pool.size), "ready": JSONValue(pool.ready.count),
                                 "starting": JSONValue(pool.starting), "taken": JSONValue(pool.taken),
                                 "missed": JSONValue(pool.missed)]
            if let e = pool.lastError { o["last_error"] = .string(e) }
            out[name] = .object(o)
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import LevainAPI
import LevainClock
import LevainProxy
import LevainSandbox
import LevainSessionLog
import LevainSystem
import LevainTools
import NIOPosix
import Synchronization

/// What every session of a supervisor shares: the configuration, the log,
/// the spawn thread, the cgroup sentinel, the event loops.
public final class SupervisorContext: Sendable {
    public let config: SupervisorConfig
    public let log: SessionLog
    let spawnThread: SpawnThread
    let sentinel: CgroupSentinel?
    let eventLoopGroup: MultiThreadedEventLoopGroup
    let hostIDBase: UInt32 = RunRequest.defaultHostIDBase
    let landlockABI: Int
    let layout: CgroupLayout
    /// The supervisor instance (recorded with its sessions, for recovery).
    public let instanceID: String
    /// Token and spend accounting of every session's gateway.
    public let ledger = UsageLedger()
    /// The providers with their keys, and the secrets for header injection,
    /// read once at start-up.
    let exits: ExitsRuntime
    /// The tool registry, policy checks and approvals of every session.
    public let tools: ToolService
    /// The audit layer's notifier and writer (nil: its thread could not
    /// start; a policy with `[audit]` then fails to open a session).
    let audit: SyscallAudit?
    private let supervisorRef = Mutex<WeakSupervisor>(WeakSupervisor())
    /// The supervisor (weak: it owns this context); the tools need it.
    var supervisor: Supervisor? {
        get { supervisorRef.withLock { $0.value } }
        set { supervisorRef.withLock { $0.value = newValue } }
    }
    private let failedHandler = Mutex<(@Sendable (SessionHost, String) async -> Void)?>(nil)

    init(config: SupervisorConfig, log: SessionLog, exits: ExitsRuntime) {
        self.config = config
        self.log = log
        self.exits = exits
        tools = ToolService(config: config.tools, log: log)
        audit = try? SyscallAudit(log: log)
        spawnThread = SpawnThread()
        sentinel = CgroupSentinel.start(timeoutMillis: 10_000)
        eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        landlockABI = KernelFeatures.landlockABI()
        if let root = config.cgroupV2Root {
            layout = .v2(root)
        } else {
            layout = CgroupLayout.detect(fs: RealCgroupFileSystem())
        }
        instanceID = "v-" + String(UInt64(getpid()), radix: 16) + "-" + String(UInt64(Monotonic.nanos() & 0xffffff), radix: 16)
    }

    func onSessionFailed(_ handler: @escaping @Sendable (SessionHost, String) async -> Void) {
        failedHandler.withLock { $0 = handler }
    }

    /// `host` failed (its jail is already torn down).
    func sessionFailed(_ host: SessionHost, reason: String) async {
        let handler = failedHandler.withLock { $0 }
        await handler?(host, reason)
    }

    /// The cgroup driver of this machine's layout; nil without cgroups.
    var cgroupDriver: (any CgroupDriver)? {
        switch layout {
        case .v2(let root): CgroupV2Driver(root: root)
        // v1: the freezer hierarchy too, so that a session can be paused
        // (SessionPause.swift) and a kill freezes before it signals (the
        // one-shot `levain run` leaves it out: one mkdir/rmdir less a run).
        case .v1(let mounts): CgroupV1Driver(mounts: mounts, controllers: CgroupV1Driver.defaultControllers + ["freezer"])
        case .none: nil
        }
    }

    /// The session's cgroup, and the one its harness goes into: the same on
    /// v1; a child "harness" on v2, where a cgroup with children may hold no
    /// process itself.
    ///
    /// Every directory is given to the sentinel before it is made, so a
    /// crash at any instant leaves nothing the sentinel does not remove. A
    /// directory of this session that already exists is a leftover of an
    /// earlier jail of it (the session's id is its own, and no live jail of
    /// it is left when a new one starts): it is emptied and removed, then
    /// made anew.
    func makeSessionCgroup(name: String, limits: CgroupLimits) throws(SandboxError) -> (RunCgroup?, RunCgroup?) {
        guard let driver = cgroupDriver else {
            if limits.memoryBytes != nil || limits.cpus != nil || limits.pidsMax != nil {
                throw SandboxError(.unsupported, "the policy sets memory/cpu/pids limits but this machine has no usable cgroup controllers")
            }
            return (nil, nil)
        }
        let planned = driver.paths(of: name)
        for p in planned { sentinel?.register(p) }
        let group: RunCgroup
        do throws(SystemError) {
            do throws(SystemError) {
                group = try driver.create(name: name, limits: limits)
            } catch where error.errno == .fileExists {
                for p in planned { killAndRemove(p) }
                for p in planned { sentinel?.register(p) }
                group = try driver.create(name: name, limits: limits)
            }
        } catch {
            for p in planned { sentinel?.forget(p) }
            throw SandboxError(.cgroup, "cannot create the session's cgroup: \(error)")
        }
        guard group.version == 2 else { return (group, group) }
        do throws(SystemError) {
            return (group, try makeChildCgroup(of: group, name: "harness"))
        } catch {
            removeCgroup(group)
            throw SandboxError(.cgroup, "cannot create the harness's cgroup: \(error)")
        }
    }

    /// A child cgroup (a run's, the harness's), given to the sentinel before
    /// it is made.
    func makeChildCgroup(of group: RunCgroup, name: String) throws(SystemError) -> RunCgroup {
        let planned = group.paths.map { Cgroupfs_childPath($0, name) }
        for p in planned { sentinel?.register(p) }
        do throws(SystemError) {
            return try group.makeChild(name)
        } catch {
            for p in planned { sentinel?.forget(p) }
            throw error
        }
    }

    /// Removes the cgroups of this log's sessions that an earlier supervisor
    /// left (killed before it or its sentinel could remove them): at start
    /// no session of this supervisor has a jail yet. Only directories named
    /// like sessions (`s-...`) whose session `isOurs` says this log holds
    /// are touched: one-shot runs (`r-...`) and other supervisors' sessions
    /// share the parent. Returns how many were removed.
    func sweepLeftoverCgroups(isOurs: (String) -> Bool) -> Int {
        guard let driver = cgroupDriver else { return 0 }
        var removed = 0
        for parent in driver.parentDirectories {
            for name in subdirectories(of: parent) where name.hasPrefix("s-") && isOurs(name) {
                killAndRemove(Cgroupfs_childPath(parent, name))
                removed += 1
            }
        }
        return removed
    }

    /// Kills what is left in a cgroup (and its children) and removes it.
    func removeCgroup(_ group: RunCgroup) {
        // Children first: a v2 session holds "harness" and the runs.
        for path in group.paths {
            for child in subdirectories(of: path) {
                let sub = Cgroupfs_childPath(path, child)
                killAndRemove(sub)
            }
        }
        group.kill(timeoutMillis: 1000)
        try? group.remove()
        for p in group.paths { sentinel?.forget(p) }
    }

    private func subdirectories(of path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            guard ent.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private func killAndRemove(_ path: String) {
        for child in subdirectories(of: path) { killAndRemove(Cgroupfs_childPath(path, child)) }
        if let procs = readSmallFile(path + "/cgroup.procs") {
            for line in procs.split(separator: "\n") { if let pid = Int32(line), pid > 0 { kill(pid, SIGKILL) } }
        }
        for _ in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { break }
            usleep(5000)
        }
        sentinel?.forget(path)
    }

    /// Runs blocking work that may fail off the concurrency pool.
    func blockingThrowing<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await blocking {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Runs blocking work (reaping a jail, cgroupfs) off the concurrency pool.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            DispatchQueue.global().async {
                c.resume(returning: body())
            }
        }
    }
}

private func Cgroupfs_childPath(_ a: String, _ b: String) -> String { a.hasSuffix("/") ? a + b : a + "/" + b }

/// What the gateway and the egress proxy need from the config, resolved.
struct ExitsRuntime: Sendable {
    var providers: [String: ProviderConfig] = [:]
    var secrets: [String: String] = [:]

    init(_ config: ProxyConfig) throws(SupervisorError) {
        providers = try config.resolvedProviders()
        secrets = try config.resolvedSecrets()
    }
}

struct WeakSupervisor: @unchecked Sendable {
    weak var value: Supervisor?
}

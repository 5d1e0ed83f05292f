#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainAPI
import LevainPolicy
import LevainProtocol
import LevainProtocolNIO
import LevainSandbox
import LevainSessionLog
import LevainSystem
import NIOCore
import Synchronization

/// Why a run attempt did not get its process started.
enum StartFailure: Error {
    /// The command itself: not found (127) or not executable (126). Final.
    case exec(code: Int32, message: String)
    /// Infrastructure: the jail, the harness, the cgroup. Retried.
    case infrastructure(String)
}

/// How a run attempt ended.
enum AttemptEnd: Sendable {
    case exited(ProcessOutcome, limitsHit: [String], usage: CgroupUsage?)
    case cancelled(ProcessOutcome?)
    case timedOut(ProcessOutcome?)
    /// The session failed under the run (violation, harness died) after it started.
    case sessionFailed(String)
}

/// A run cgroup made ahead, handed between threads.
struct SpareCgroup: @unchecked Sendable {
    var group: RunCgroup
    var fds: [Int32]
}

/// One live run inside a session.
final class LiveRun: @unchecked Sendable {
    let state: RunState
    let cgroup: RunCgroup?
    private let lock = Mutex<(outcome: ProcessOutcome?, ended: AttemptEnd?, waiter: CheckedContinuation<AttemptEnd, Never>?)>((nil, nil, nil))

    init(state: RunState, cgroup: RunCgroup?) {
        self.state = state
        self.cgroup = cgroup
    }

    func finish(_ end: AttemptEnd) {
        let waiter = lock.withLock { s -> CheckedContinuation<AttemptEnd, Never>? in
            guard s.ended == nil else { return nil }
            s.ended = end
            let w = s.waiter
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: end)
    }

    private let timeoutFlag = Mutex(false)

    /// The run's wall-clock limit passed (set before its cgroup is killed).
    func markTimedOut() { timeoutFlag.withLock { $0 = true } }
    var timedOut: Bool { timeoutFlag.withLock { $0 } }

    func exited(_ outcome: ProcessOutcome) {
        lock.withLock { $0.outcome = outcome }
    }

    var outcome: ProcessOutcome? { lock.withLock { $0.outcome } }

    func wait() async -> AttemptEnd {
        await withCheckedContinuation { c in
            let done = lock.withLock { s -> AttemptEnd? in
                if let e = s.ended { return e }
                s.waiter = c
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }
}

/// A session: one jail whose PID 1 is levain-harness, a workspace that
/// survives it, and the runs executed in it.
actor SessionHost {
    enum Phase: Equatable {
        case starting
        case ready
        case failed(String)
        case closed
    }

    let id: String
    let tenant: String
    let spec: SessionSpec
    let policy: Policy
    let workspace: String
    let context: SupervisorContext
    /// Live runs of this session at once (the protocol allows 64).
    nonisolated let runSlots = RunSlots(limit: ProtocolLimits.maxRunsPerSession)
    private(set) var phase: Phase = .starting
    private var jail: JailProcess?
    private var cgroup: RunCgroup?
    private var connection: HarnessConnection?
    private var descriptorFD: Int32 = -1
    private var nextStream: UInt32 = 1
    private var live: [String: LiveRun] = [:]
    private var closing = false
    /// The next run's cgroup, made ahead of it.
    private var spareCgroup: (group: RunCgroup, fds: [Int32])?
    private var refillScheduled = false
    private var runCgroupCounter = 0
    /// The model gateway and the egress proxy in the jail's network namespace.
    private var exits: SessionExits?

    init(id: String, tenant: String, spec: SessionSpec, policy: Policy, workspace: String, context: SupervisorContext) {
        self.id = id
        self.tenant = tenant
        self.spec = spec
        self.policy = policy
        self.workspace = workspace
        self.context = context
    }

    var isReady: Bool { phase == .ready }

    // MARK: the jail

    /// Spawns the jail and waits for the harness's handshake.
    func open() async throws(SupervisorError) {
        phase = .starting
        let ctx = context
        guard let harness = spec.harness ?? SessionJail.locateHarness(ctx.config.harnessPath) else {
            phase = .failed("no levain-harness")
            throw SupervisorError(.unavailable, "levain-harness not found (set supervisor.harness in the config, or install it next to levain)")
        }
        let seccomp: CompiledSeccomp
        do {
            seccomp = try SeccompCache.compiled(profile: policy.seccomp.profile, cacheDirectory: ctx.config.stateDirectory + "/cache")
        } catch {
            throw SupervisorError(.invalid, "\(error)")
        }
        let protocolPair: [Int32], descriptorPair: [Int32]
        do throws(SystemError) {
            let p = try SocketPair.make(SOCK_STREAM)
            protocolPair = [p.0, p.1]
            do throws(SystemError) {
                let d = try SocketPair.make(SOCK_SEQPACKET)
                descriptorPair = [d.0, d.1]
            } catch {
                for fd in protocolPair { Glibc.close(fd) }
                throw error
            }
        } catch {
            throw SupervisorError(.internalError, "\(error)", cause: error)
        }
        for bind in self.spec.binds where bind.writable {
            if let problem = HostPath.writeProblem(bind.host, uid: ctx.hostIDBase + policy.user.uid, gid: ctx.hostIDBase + policy.user.gid) {
                for fd in protocolPair + descriptorPair { Glibc.close(fd) }
                phase = .failed(problem)
                throw SupervisorError(.invalid, "binds: rw \(bind.host): \(problem)", field: "binds")
            }
        }
        let workspaceMount: WorkspaceMount
        // An image's loop device, held until the jail has mounted it.
        var loop: LoopDevice? = nil
        do throws(SandboxError) {
            let uid = ctx.hostIDBase + policy.user.uid, gid = ctx.hostIDBase + policy.user.gid
            if workspace.hasSuffix(".img") {
                let image = workspace
                let size = policy.filesystem.workspaceSize ?? Policy.Filesystem.defaultWorkspaceSize
                let templates = ctx.config.stateDirectory + "/cache/workspaces"
                try await ctx.spawnThread.run { () throws(SandboxError) in
                    try WorkspaceImage.prepare(image, size: size, uid: uid, gid: gid, templates: templates)
                }
                // A previous jail of this session (reopen, restart) lets go of
                // the image when its mount namespace goes: wait for that.
                let deadline = ContinuousClock.now + .seconds(10)
                while WorkspaceImage.holder(of: image) != nil && ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(10))
                }
                let device = try WorkspaceImage.attach(image)
                loop = device
                workspaceMount = .image(device: device.path)
            } else {
                try Directories.make(workspace, mode: 0o700)
                _ = chown(workspace, uid, gid)
                workspaceMount = .directory(workspace)
            }
        } catch {
            for fd in protocolPair + descriptorPair { Glibc.close(fd) }
            phase = .failed(error.message)
            throw SupervisorError(.spawnFailed, "the session's workspace: \(error.message)")
        }
        defer { loop?.release() }
        let spec: JailSpec
        do {
            spec = try SessionJail.spec(
                policy: policy, harnessHostPath: harness, workspace: workspaceMount, extraBinds: self.spec.binds,
                landlockABI: ctx.landlockABI, seccomp: seccomp, runUID: policy.user.uid, runGID: policy.user.gid,
                hostIDBase: ctx.hostIDBase, protocolFD: protocolPair[1], descriptorFD: descriptorPair[1])
        } catch {
            for fd in protocolPair + descriptorPair { Glibc.close(fd) }
            phase = .failed(error.message)
            throw SupervisorError(.invalid, error.message)
        }
        let limits = CgroupLimits(memoryBytes: policy.limits.memory, swapOff: true, cpus: policy.limits.cpus,
                                  pidsMax: policy.limits.pids)
        let name = id
        let stage = ctx.config.stateDirectory + "/stage"
        let result: Result<(JailProcess, RunCgroup?), SandboxError>
        do throws(SandboxError) {
            try Directories.make(stage, mode: 0o700)
            // The session's cgroup first (on v2 the harness goes into a child
            // of it: the runs' cgroups sit beside it).
            let (group, harnessGroup) = try ctx.makeSessionCgroup(name: name, limits: limits)
            var dirFD: Int32 = -1
            var tasksFDs: [Int32] = []
            if let hg = harnessGroup {
                do throws(SystemError) {
                    if let d = try hg.directoryFileDescriptor() { dirFD = d } else { tasksFDs = try hg.selfMigrationFileDescriptors() }
                } catch {
                    if let group { ctx.removeCgroup(group) }
                    throw SandboxError(error)
                }
            }
            let spawnSpec = spec
            let dir = dirFD
            let tasks = tasksFDs
            let jail: JailProcess
            do {
                jail = try await ctx.spawnThread.run { () throws(SandboxError) -> JailProcess in
                    try Spawner.spawn(spawnSpec, cgroupDirFD: dir, stageDir: stage) { () throws(SandboxError) -> [Int32] in tasks }
                }
            } catch {
                if dirFD >= 0 { Glibc.close(dirFD) }
                for fd in tasksFDs { Glibc.close(fd) }
                if let group { ctx.removeCgroup(group) }
                throw error
            }
            if dirFD >= 0 { Glibc.close(dirFD) }
            for fd in tasksFDs { Glibc.close(fd) }
            result = .success((jail, group))
        } catch {
            result = .failure(error)
        }
        Glibc.close(protocolPair[1])
        Glibc.close(descriptorPair[1])
        // The jail has mounted its workspace (or failed): from here on its
        // mount holds the loop device.
        loop?.release()
        loop = nil
        switch result {
        case .failure(let e):
            Glibc.close(protocolPair[0])
            Glibc.close(descriptorPair[0])
            phase = .failed(e.message)
            throw SupervisorError(.spawnFailed, "the session's jail did not start: \(e.message)")
        case .success(let (jail, group)):
            self.jail = jail
            self.cgroup = group
        }
        descriptorFD = descriptorPair[0]
        if policy.namespaces.net && policy.network == .loopback, let jail {
            do {
                exits = try await SessionExits.open(sessionID: id, tenant: tenant, policy: policy, pidfd: jail.pidfd, context: ctx)
            } catch {
                Glibc.close(protocolPair[0])
                await teardown()
                phase = .failed(error.message)
                throw error
            }
        }
        do {
            let sessionID = id
            connection = try await HarnessConnection.open(
                fd: protocolPair[0], session: sessionID, group: ctx.eventLoopGroup,
                maxFrame: ctx.config.maxFrame, window: ctx.config.streamWindow, heartbeatMillis: ctx.config.heartbeatMillis,
                onEvent: { [weak self] event in Task { await self?.handle(event) } },
                onEnd: { [weak self] end in Task { await self?.connectionEnded(end) } })
        } catch {
            await teardown()
            phase = .failed("harness handshake: \(error)")
            if case .violation(let v)? = (error as? HarnessError)?.end {
                // Hostile or broken: recorded, and not an infrastructure
                // failure to retry.
                _ = try? await context.log.append(NewEvent(
                    sessionID: id, tenant: tenant, type: EventType.protocolViolation,
                    payload: ["code": .string(v.code.rawValue), "message": .string(v.message), "phase": "handshake"]))
                throw SupervisorError(.unavailable, "the session's harness broke the protocol in its handshake: \(v)")
            }
            _ = try? await context.log.append(NewEvent(sessionID: id, tenant: tenant, type: EventType.harnessDied,
                                                      payload: ["phase": "handshake", "error": .string("\(error)")]))
            throw SupervisorError(.spawnFailed, "the session's harness did not answer: \(error)")
        }
        phase = .ready
        refillSpareCgroupLater()
    }

    /// The one teardown of this host's jail: a second caller (a reopen
    /// waiting for the failed jail to be gone, a close racing a failure)
    /// waits for the first instead of tearing down again.
    private var teardownTask: Task<Void, Never>?

    private func teardown() async {
        if let running = teardownTask {
            await running.value
            return
        }
        let task = Task { await self.tearDownOnce() }
        teardownTask = task
        await task.value
        teardownTask = nil
    }

    /// Returns once nothing of this host's jail is left (its process reaped,
    /// its cgroups removed): a new jail of the same session may then take
    /// the same cgroup name.
    func waitTornDown() async {
        if let running = teardownTask { await running.value }
    }

    private func tearDownOnce() async {
        exits?.close()
        exits = nil
        dropSpareCgroup()
        connection?.close()
        connection = nil
        if let jail {
            let j = jail
            await ctx_reap(j)
            self.jail = nil
        }
        if descriptorFD >= 0 { Glibc.close(descriptorFD); descriptorFD = -1 }
        if let cgroup {
            context.removeCgroup(cgroup)
            self.cgroup = nil
        }
    }

    private func ctx_reap(_ jail: JailProcess) async {
        jail.kill()
        // Reaping blocks until the kernel has torn the pid namespace down.
        await context.blocking { jail.close() }
    }

    // MARK: runs

    /// Starts the run's process; returns once it is running (or failed to start).
    func start(_ run: RunState, attempt: Int) async throws(StartFailure) -> LiveRun {
        guard phase == .ready, let connection else { throw .infrastructure("the session is not ready (\(phase))") }
        // The run's own cgroup, inside the session's: the one made ahead
        // (after the previous run started), else a new one.
        var runGroup: RunCgroup? = nil
        var fds: [Int32] = []
        if cgroup != nil {
            if let spare = spareCgroup {
                spareCgroup = nil
                (runGroup, fds) = (spare.group, spare.fds)
            } else {
                do throws(SystemError) {
                    let made = try makeRunCgroup()
                    (runGroup, fds) = (made.group, made.fds)
                } catch {
                    throw .infrastructure("the run's cgroup: \(error)")
                }
            }
        }
        defer { refillSpareCgroupLater() }
        defer { for fd in fds { Glibc.close(fd) } }
        if !fds.isEmpty {
            let sent = fds.withUnsafeBufferPointer { lv_send_descriptors(descriptorFD, run.id, $0.baseAddress, $0.count) }
            guard sent == 0 else {
                if let g = runGroup { context.removeCgroup(g) }
                throw .infrastructure("sending the cgroup to the harness: \(String(cString: strerror(errno)))")
            }
        }
        run.mark("cgroup")
        let stdoutStream = nextStream, stderrStream = nextStream + 1
        let stdinStream: StreamID? = (run.spec.stdin != nil || run.spec.stdinStream) ? nextStream + 2 : nil
        nextStream += 3
        let out = run.stdout, err = run.stderr
        connection.receive(stream: stdoutStream, sink: { bytes in _ = bytes.withUnsafeBytes { out.append($0) } }, end: { out.finish() })
        connection.receive(stream: stderrStream, sink: { bytes in _ = bytes.withUnsafeBytes { err.append($0) } }, end: { err.finish() })

        let liveRun = LiveRun(state: run, cgroup: runGroup)
        live[run.id] = liveRun
        exits?.runStarted(run.id)
        let start = RunStart(
            run: LevainProtocol.RunID(run.id)!, argv: run.spec.argv, env: environment(for: run),
            cwd: run.spec.cwd ?? (policy.filesystem.workspace ? "/workspace" : "/"),
            stdin: stdinStream, stdout: stdoutStream, stderr: stderrStream, cgroup: !fds.isEmpty,
            rlimits: rlimits(for: run.spec))
        let response: Response
        do {
            response = try await connection.request(.runStart(start))
        } catch {
            live[run.id] = nil
            exits?.runEnded(run.id)
            if let g = runGroup { context.removeCgroup(g) }
            throw .infrastructure("the harness: \(error)")
        }
        guard response.ok else {
            live[run.id] = nil
            exits?.runEnded(run.id)
            out.finish()
            err.finish()
            if let g = runGroup { context.removeCgroup(g) }
            let code = response.error?.code ?? "EIO"
            let message = response.error?.message ?? "run.start failed"
            if code == "ENOENT" || code == "ENOTDIR" { throw .exec(code: 127, message: message) }
            // E2BIG: the kernel refused the arguments or environment as too
            // long; the same command would fail the same way on a retry.
            if code == "EACCES" || code == "ENOEXEC" || code == "EISDIR" || code == "EPERM" || code == "E2BIG" {
                throw .exec(code: 126, message: message)
            }
            if code == "EBADCWD" { throw .exec(code: 125, message: message) }
            throw .infrastructure("run.start: \(code): \(message)")
        }
        if let stdinStream {
            if let bytes = run.spec.stdin {
                Task {
                    try? await connection.send(bytes, on: stdinStream)
                    try? await connection.end(stream: stdinStream)
                }
            } else {
                run.setStdinSink { bytes in
                    if let bytes { try await connection.send(bytes, on: stdinStream) } else { try await connection.end(stream: stdinStream) }
                }
            }
        }
        // Cancel: the run's cgroup dies at once, without asking the harness.
        run.setCancelHandler { [weak liveRun] in
            liveRun?.cgroup?.kill(timeoutMillis: 500)
            if liveRun?.cgroup == nil { liveRun?.finish(.cancelled(nil)) }
        }
        return liveRun
    }

    /// A run's cgroup (a child of the session's, named by a counter: it is
    /// made before the run it will hold is known) and its placement fds.
    private func makeRunCgroup() throws(SystemError) -> (group: RunCgroup, fds: [Int32]) {
        guard let cgroup else { throw SystemError(.unsupported, "the session has no cgroup") }
        runCgroupCounter += 1
        return try Self.makeRunCgroup(in: cgroup, name: "run-\(runCgroupCounter)", context: context)
    }

    private static func makeRunCgroup(in cgroup: RunCgroup, name: String, context: SupervisorContext) throws(SystemError) -> (group: RunCgroup, fds: [Int32]) {
        let g = try context.makeChildCgroup(of: cgroup, name: name)
        do throws(SystemError) {
            return (g, try g.placementFileDescriptors())
        } catch {
            context.removeCgroup(g)
            throw error
        }
    }

    /// Makes the next run's cgroup off this actor (cgroupfs mkdirs take a
    /// fraction of a millisecond the actor should spend on events).
    private func refillSpareCgroupLater() {
        guard let cgroup, spareCgroup == nil, !refillScheduled, phase == .ready else { return }
        refillScheduled = true
        runCgroupCounter += 1
        let name = "run-\(runCgroupCounter)", ctx = context
        Task.detached { [weak self] in
            let made = await ctx.blocking { () -> SpareCgroup? in
                guard let m = try? Self.makeRunCgroup(in: cgroup, name: name, context: ctx) else { return nil }
                return SpareCgroup(group: m.group, fds: m.fds)
            }
            await self?.setSpare(made.map { ($0.group, $0.fds) })
        }
    }

    private func setSpare(_ made: (group: RunCgroup, fds: [Int32])?) {
        refillScheduled = false
        guard let made else { return }
        guard phase == .ready, spareCgroup == nil else {
            for fd in made.fds { Glibc.close(fd) }
            context.removeCgroup(made.group)
            return
        }
        spareCgroup = made
    }

    /// Drops the spare cgroup (the session is ending).
    private func dropSpareCgroup() {
        guard let spare = spareCgroup else { return }
        spareCgroup = nil
        for fd in spare.fds { Glibc.close(fd) }
        context.removeCgroup(spare.group)
    }

    /// Waits for the run's end: its exit, its timeout, a cancel, or the session's failure.
    func wait(_ liveRun: LiveRun, timeout: Double?) async -> AttemptEnd {
        let run = liveRun.state
        var timer: Task<Void, Never>? = nil
        if let timeout {
            timer = Task {
                try? await Task.sleep(nanoseconds: UInt64(min(max(0, timeout), 1e9) * 1e9))
                if Task.isCancelled { return }
                // Marked first: the exit the kill causes is a timeout's.
                liveRun.markTimedOut()
                liveRun.cgroup?.kill(timeoutMillis: 500)
                liveRun.finish(.timedOut(liveRun.outcome))
            }
        }
        let end = await liveRun.wait()
        run.mark("exit-event")
        timer?.cancel()
        run.setCancelHandler(nil)
        run.setStdinSink(nil)
        // Nothing of a finished run lingers: its leftovers die, which also
        // closes the output pipes they held.
        if let g = liveRun.cgroup {
            g.kill(timeoutMillis: 1000)
        }
        // Let the output streams drain (bounded: a jail that never closes
        // them is cut off).
        if await run.stdout.waitFinished(timeout: 2) { _ = await run.stderr.waitFinished(timeout: 2) }
        run.mark("drained")
        run.stdout.finish()
        run.stderr.finish()
        live[run.id] = nil
        exits?.runEnded(run.id)
        var result = end
        if case .exited(let outcome, _, _) = end, let g = liveRun.cgroup {
            let usage = g.usage()
            var which: [String] = []
            if usage.oomKills > 0 { which.append("memory") }
            if usage.pidsLimitHits > 0 { which.append("pids") }
            if outcome.signal == SIGXCPU { which.append("cpu_time") }
            if outcome.signal == SIGXFSZ { which.append("file_size") }
            result = .exited(outcome, limitsHit: which, usage: usage)
        }
        // Empty now; its removal (rmdir in each hierarchy) is off the run's path.
        if let g = liveRun.cgroup {
            let ctx = context
            Task.detached { await ctx.blocking { ctx.removeCgroup(g) } }
        }
        return result
    }

    /// Sends a signal to a live run's process (the harness delivers it to
    /// the run's process group).
    func signal(run id: String, signal: Int32) async throws(SupervisorError) {
        guard live[id] != nil, let connection, let runID = LevainProtocol.RunID(id) else {
            throw SupervisorError(.conflict, "run \(id) has no live process", field: "run")
        }
        let response: Response
        do {
            response = try await connection.request(.runSignal(RunSignal(run: runID, signal: signal)))
        } catch {
            throw SupervisorError(.unavailable, "the session's harness: \(error)")
        }
        guard response.ok else {
            throw SupervisorError(.conflict, "run.signal: \(response.error?.code ?? "EIO"): \(response.error?.message ?? "failed")", field: "signal")
        }
    }

    /// The policy's variables, then where the gateway and the proxy are,
    /// then the run's own (a run may override anything).
    private func environment(for run: RunState) -> [String] {
        let spec = run.spec
        var env = policy.environment.set
        for (k, v) in exits?.environment(run: run.id) ?? [] {
            env.removeAll { $0.0 == k }
            env.append((k, v))
        }
        for (k, v) in spec.env.sorted(by: { $0.key < $1.key }) {
            env.removeAll { $0.0 == k }
            env.append((k, v))
        }
        return env.map { "\($0.0)=\($0.1)" }
    }

    private func rlimits(for spec: RunSpec) -> ResourceLimits {
        var r = ResourceLimits()
        r.core = LevainProtocol.ResourceLimit(soft: policy.limits.core, hard: policy.limits.core)
        if let v = spec.fileSize ?? policy.limits.fileSize { r.fsize = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        if let v = policy.limits.openFiles { r.nofile = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        if let v = spec.cpuTime ?? policy.limits.cpuTime { r.cpu = LevainProtocol.ResourceLimit(soft: v, hard: v + 1) }
        if let v = policy.limits.stack { r.stack = LevainProtocol.ResourceLimit(soft: v, hard: v) }
        return r
    }

    private func handle(_ event: Event) async {
        switch event {
        case .processExited(let e):
            guard let liveRun = live[e.run.description] else { return }
            let outcome = ProcessOutcome(code: e.code, signal: e.signal, userMicros: e.userMicros,
                                         systemMicros: e.systemMicros, maxRSSKilobytes: e.maxRSSKilobytes)
            liveRun.exited(outcome)
            if liveRun.state.cancelRequested {
                liveRun.finish(.cancelled(outcome))
            } else if liveRun.timedOut {
                liveRun.finish(.timedOut(outcome))
            } else {
                liveRun.finish(.exited(outcome, limitsHit: [], usage: nil))
            }
        case .processStarted:
            break
        case .harnessLog(let log):
            _ = try? await context.log.append(NewEvent(sessionID: id, tenant: tenant, type: EventType.harnessLog,
                                                      payload: ["level": .string(log.level.rawValue), "message": .string(log.message)]))
        }
    }

    private func connectionEnded(_ end: HarnessEnd) async {
        // During the handshake open() is in charge: it records the end,
        // tears down and reports (a violation is not retried).
        guard phase == .ready else { return }
        let reason: String
        switch end {
        case .violation(let v):
            reason = "protocol violation: \(v)"
            _ = try? await context.log.record(
                [NewEvent(sessionID: id, tenant: tenant, type: EventType.protocolViolation,
                          payload: ["code": .string(v.code.rawValue), "message": .string(v.message), "phase": "session"])],
                and: [])
        case .closed:
            guard !closing else { return }
            reason = "the harness died"
            _ = try? await context.log.append(NewEvent(sessionID: id, tenant: tenant, type: EventType.harnessDied,
                                                      payload: ["phase": "session"]))
        }
        phase = .failed(reason)
        for (_, liveRun) in live { liveRun.finish(.sessionFailed(reason)) }
        await teardown()
        await context.sessionFailed(self, reason: reason)
    }

    // MARK: files

    func fileRequest(_ operation: Operation) async throws(SupervisorError) -> Response {
        guard phase == .ready, let connection else { throw SupervisorError(.conflict, "session \(id) is not open (\(phase))") }
        do {
            return try await connection.request(operation)
        } catch {
            throw SupervisorError(.unavailable, "the session's harness: \(error)")
        }
    }

    func newStream() -> StreamID {
        defer { nextStream += 1 }
        return nextStream
    }

    nonisolated func receive(_ connection: HarnessConnection, stream: StreamID,
                             sink: @escaping @Sendable ([UInt8]) -> Void, end: @escaping @Sendable () -> Void) {
        connection.receive(stream: stream, sink: sink, end: end)
    }

    var harnessConnection: HarnessConnection? { connection }

    /// The gateway's Unix socket for the supervisor's agent loop, nil when
    /// the session has no gateway (or the socket's path was too long).
    var agentGatewaySocket: String? { exits?.agentSocket }
    func exitsRunStarted(_ run: String) { exits?.runStarted(run) }
    func exitsRunEnded(_ run: String) { exits?.runEnded(run) }

    // MARK: closing

    /// Ends the session: cancels its runs, stops the jail, keeps the workspace.
    func close() async {
        closing = true
        for (_, liveRun) in live {
            liveRun.state.requestCancel()
            liveRun.cgroup?.kill(timeoutMillis: 500)
            liveRun.finish(.cancelled(liveRun.outcome))
        }
        phase = .closed
        await teardown()
    }
}

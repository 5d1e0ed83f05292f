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
    /// Where the workspace is on the host (a warm jail's moves once, when a
    /// session takes it: `adopt`).
    private(set) var workspace: String
    let context: SupervisorContext
    /// Live runs of this session at once (the protocol allows 64).
    nonisolated let runSlots = RunSlots(limit: ProtocolLimits.maxRunsPerSession)
    var phase: Phase = .starting
    var jail: JailProcess?
    var cgroup: RunCgroup?
    var connection: HarnessConnection?
    var descriptorFD: Int32 = -1
    var nextStream: UInt32 = 1
    var live: [String: LiveRun] = [:]
    var closing = false
    /// The next run's cgroup, made ahead of it.
    var spareCgroup: (group: RunCgroup, fds: [Int32])?
    var refillScheduled = false
    var runCgroupCounter = 0
    /// The model gateway and the egress proxy in the jail's network namespace.
    var exits: SessionExits?
    /// Paused (SessionPause.swift): its runs' cgroups frozen, new runs
    /// refused. Read without the actor on the submit path.
    nonisolated let pausedFlag = Mutex<Bool>(false)
    /// Pause and resume requests, one after the other.
    var pauseChain: Task<Void, Never>?
    /// Runs whose run.start is with the harness (not frozen by a pause:
    /// the harness waits for their exec).
    var startingRuns: Set<String> = []

    init(id: String, tenant: String, spec: SessionSpec, policy: Policy, workspace: String, context: SupervisorContext) {
        self.id = id
        self.tenant = tenant
        self.spec = spec
        self.policy = policy
        self.workspace = workspace
        self.context = context
    }

    var isReady: Bool { phase == .ready }

    /// A warm jail taken by a session: its workspace was moved here.
    func adopt(workspace: String) { self.workspace = workspace }

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
            throw SupervisorError(.invalid, "\(error)", cause: error)
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
        var timer = PhaseTimer(title: "levain: session \(id) timings")
        let workspaceMount: WorkspaceMount
        // An image's loop device, held until the jail has mounted it.
        var loop: LoopDevice? = nil
        do throws(SandboxError) {
            let uid = ctx.hostIDBase + policy.user.uid, gid = ctx.hostIDBase + policy.user.gid
            if workspace.hasSuffix(".img") {
                let image = workspace
                let size = policy.filesystem.workspaceSize ?? Policy.Filesystem.defaultWorkspaceSize
                let templates = ctx.config.stateDirectory + "/cache/workspaces"
                let made = try await ctx.spawnThread.run { () throws(SandboxError) -> Bool in
                    try WorkspaceImage.prepare(image, size: size, uid: uid, gid: gid, templates: templates)
                }
                // A previous jail of this session (reopen, restart) lets go of
                // the image when its mount namespace goes: wait for that. An
                // image made just now has no holder; skipping the scan of
                // every loop device keeps a new session's cost flat however
                // many sessions are open (it grew with them: 15 ms with none,
                // 36 ms with 500).
                if !made {
                    let deadline = ContinuousClock.now + .seconds(10)
                    while WorkspaceImage.holder(of: image) != nil && ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                }
                let device = try WorkspaceImage.attach(image, fresh: made)
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
        var spec: JailSpec
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
        // [audit]: the jail's setup hands its listener to the notifier
        // thread, which must be watching before the harness's execve (gated
        // itself) waits for it.
        if policy.audit.isEnabled {
            do throws(SupervisorError) {
                guard let audit = ctx.audit else {
                    throw SupervisorError(.spawnFailed, "the policy asks for [audit] but the supervisor's audit thread did not start")
                }
                spec.audit = try audit.prepare(session: id, tenant: tenant, audit: policy.audit)
            } catch {
                for fd in protocolPair + descriptorPair { Glibc.close(fd) }
                phase = .failed(error.message)
                throw error
            }
        }
        defer { if let a = spec.audit { Glibc.close(a.socket) } }
        timer.mark("workspace")
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
        timer.mark("spawned")
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
        // The harness starts meanwhile: made first or beside the handshake,
        // the sockets cost the same (measured, A/B: 12.27 ms p50 both).
        if policy.namespaces.net && policy.network == .loopback, let jail {
            defer { timer.mark("exits") }
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
            throw SupervisorError(.spawnFailed, "the session's harness did not answer: \(error)", cause: error)
        }
        timer.mark("handshake")
        timer.print()
        phase = .ready
        refillSpareCgroupLater()
    }

    /// The one teardown of this host's jail: a second caller (a reopen
    /// waiting for the failed jail to be gone, a close racing a failure)
    /// waits for the first instead of tearing down again.
    private var teardownTask: Task<Void, Never>?

    func teardown() async {
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

    // MARK: files

    func fileRequest(_ operation: Operation) async throws(SupervisorError) -> Response {
        guard phase == .ready, let connection else { throw SupervisorError(.conflict, "session \(id) is not open (\(phase))") }
        do {
            return try await connection.request(operation)
        } catch {
            throw SupervisorError(.unavailable, "the session's harness: \(error)", cause: error)
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

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainClock
import LevainPolicy
import LevainSystem

/// What one `levain run` asks for, on top of its policy.
public struct RunRequest: Sendable {
    public var policy: Policy
    public var argv: [String]
    public var extraBinds: [Policy.Bind] = []
    /// --env KEY=VALUE, applied last.
    public var environment: [(String, String)] = []
    public var cwd: String?
    /// The caller's environment, for the names the policy passes through.
    public var callerEnvironment: [String: String] = [:]
    public var stateDirectory: String
    /// Jail ids map to host ids from here (see SECURITY.md).
    public var hostIDBase: UInt32 = RunRequest.defaultHostIDBase
    public var runID: String?
    /// Use the cgroup2 hierarchy mounted here instead of detecting one
    /// (LEVAIN_CGROUP_V2_ROOT): for hosts with a non-standard mount, and for
    /// testing the v2 path on a hybrid host's controller-less unified mount.
    public var cgroupV2Root: String?

    public static let defaultHostIDBase: UInt32 = 0x7000_0000
    public static let idRangeSize: UInt32 = 65536

    public init(policy: Policy, argv: [String], stateDirectory: String) {
        self.policy = policy
        self.argv = argv
        self.stateDirectory = stateDirectory
    }
}

public struct RunOutcome: Sendable {
    public var report: RunReport
    /// The status `levain run` exits with.
    public var exitStatus: Int32
    /// A line for stderr when a limit or an exec failure ended the run.
    public var notices: [String]
}

/// One run in a fresh jail, start to end: checks the machine against the
/// policy, makes the workspace and the cgroup, spawns, waits (timeout,
/// forwarded signals), measures, cleans up, and reports.
public enum OneShotRunner {
    public static func run(_ request: RunRequest, signalFD: Int32 = -1) throws(SandboxError) -> RunOutcome {
        let policy = request.policy
        let started = Monotonic.nanos()
        var timer = PhaseTimer()
        defer { timer.mark("cleanup"); timer.print() }
        let startedAt = Timestamp.nowRFC3339()
        let runID = request.runID ?? RunID.make()

        // 1. The machine must give what the policy asks; never less. What
        //    the spawn itself needs (namespaces, pidfd, the mount API) fails
        //    the spawn when missing, and `checkMachine` then says what is
        //    missing; what it could silently do without (Landlock) is
        //    checked now.
        guard geteuid() == 0 else {
            throw SandboxError(.unsupported, "levain run needs root to create namespaces, cgroups and mounts (run it with sudo)")
        }
        let landlockABI = KernelFeatures.landlockABI()
        if policy.landlock == .required && landlockABI == 0 {
            try checkMachine(policy, KernelFeatures.probe())
        }

        timer.mark("machine-check")
        // 2. Seccomp, compiled here; the child only installs it.
        let state = request.stateDirectory
        try Directories.make(state, mode: 0o711)
        let seccomp: CompiledSeccomp
        do {
            seccomp = try SeccompCache.compiled(profile: policy.seccomp.profile, cacheDirectory: state + "/cache")
        } catch {
            throw SandboxError(error)
        }

        timer.mark("seccomp-compile")
        // 3. State: the workspace survives the run; the stage dir is the
        //    mount point of the jail's root in its own mount namespace.
        let stage = state + "/stage"
        try Directories.make(stage, mode: 0o700)
        var workspace: String? = nil
        let hostUID = request.hostIDBase + policy.user.uid
        let hostGID = request.hostIDBase + policy.user.gid
        for bind in request.extraBinds where bind.writable {
            if let problem = HostPath.writeProblem(bind.host, uid: hostUID, gid: hostGID) {
                throw SandboxError(.invalidInput, "--rw \(bind.host): \(problem)")
            }
        }
        var workspaceMount: WorkspaceMount? = nil
        var loop: LoopDevice? = nil
        // Held until the jail has mounted it (spawn returns after the exec).
        defer { loop?.release() }
        if policy.filesystem.workspace {
            try Directories.make(state + "/workspaces", mode: 0o711)
            if let size = policy.filesystem.workspaceSize {
                // A size the kernel enforces: an ext4 image, mounted in the jail.
                let image = WorkspaceImage.path(of: state + "/workspaces/" + runID)
                try WorkspaceImage.prepare(image, size: size, uid: hostUID, gid: hostGID, templates: state + "/cache/workspaces")
                let device = try WorkspaceImage.attach(image, fresh: true)
                loop = device
                workspace = image
                workspaceMount = .image(device: device.path)
            } else {
                // A plain directory, created while the jail builds its root
                // (see placement below).
                workspace = state + "/workspaces/" + runID
                workspaceMount = .directory(state + "/workspaces/" + runID)
            }
        }
        func makeWorkspace() throws(SandboxError) {
            guard case .directory(let ws) = workspaceMount else { return }
            guard mkdir(ws, 0o700) == 0 else {
                throw SandboxError(.io, "cannot create the workspace \(ws): \(String(cString: strerror(errno)))")
            }
            guard chown(ws, hostUID, hostGID) == 0 else {
                throw SandboxError(.io, "cannot hand the workspace \(ws) to the jail user: \(String(cString: strerror(errno)))")
            }
        }

        timer.mark("state-dirs")
        // 4. The root filesystem plan (bind sources resolved now).
        let planner = RootfsPlanner(policy: policy, extraBinds: request.extraBinds, workspace: workspaceMount)
        let (mounts, afterPlacement) = try planner.planWithSplit()
        let landlock: LandlockPlan? = policy.landlock == .off ? nil : planner.landlock(abi: landlockABI)

        timer.mark("rootfs-plan")
        // 5. The environment: policy's, passed-through names, then --env.
        var env: [(String, String)] = policy.environment.set
        for name in policy.environment.pass {
            if let v = request.callerEnvironment[name] { env.removeAll { $0.0 == name }; env.append((name, v)) }
        }
        for (k, v) in request.environment {
            env.removeAll { $0.0 == k }
            env.append((k, v))
        }
        let searchPath = env.last(where: { $0.0 == "PATH" })?.1 ?? "/usr/local/bin:/usr/bin:/bin"
        let cwd = request.cwd ?? (workspace != nil ? "/workspace" : "/")

        var rlimits: [ResourceLimit] = [
            ResourceLimit(resource: Int32(RLIMIT_CORE.rawValue), name: "core", soft: policy.limits.core, hard: policy.limits.core),
        ]
        if let v = policy.limits.fileSize {
            rlimits.append(ResourceLimit(resource: Int32(RLIMIT_FSIZE.rawValue), name: "file_size", soft: v, hard: v))
        }
        if let v = policy.limits.openFiles {
            rlimits.append(ResourceLimit(resource: Int32(RLIMIT_NOFILE.rawValue), name: "open_files", soft: v, hard: v))
        }
        if let v = policy.limits.cpuTime {
            // SIGXCPU at the soft limit, SIGKILL a second later.
            rlimits.append(ResourceLimit(resource: Int32(RLIMIT_CPU.rawValue), name: "cpu_time", soft: v, hard: v + 1))
        }
        if let v = policy.limits.stack {
            rlimits.append(ResourceLimit(resource: Int32(RLIMIT_STACK.rawValue), name: "stack", soft: v, hard: v))
        }

        var spec = JailSpec(
            argv: request.argv, environment: env.map { "\($0.0)=\($0.1)" }, cwd: cwd, searchPath: searchPath,
            namespaces: policy.namespaces, mounts: mounts, hostname: policy.user.hostname,
            loopbackUp: policy.network == .loopback, uid: policy.user.uid, gid: policy.user.gid,
            hostIDBase: request.hostIDBase, idRangeSize: RunRequest.idRangeSize, rlimits: rlimits,
            seccomp: seccomp.programs, landlock: landlock)
        spec.mountsAfterPlacement = afterPlacement
        if !policy.namespaces.user {
            spec.hostIDBase = 0
        }

        timer.mark("spec")
        // 6. Spawn. The run's cgroup is made while the child builds its root
        //    (on v2 before: clone3 puts the child straight in), with a
        //    sentinel that removes it if we are killed.
        let limits = CgroupLimits(memoryBytes: policy.limits.memory, swapOff: true, cpus: policy.limits.cpus,
                                  pidsMax: policy.limits.pids)
        // Pure v2 is known from one statfs; anything else is detected (from
        // mountinfo) while the jail builds its root.
        let unified = request.cgroupV2Root.map { CgroupLayout.looksUnified($0) } ?? CgroupLayout.looksUnified()
        if let root = request.cgroupV2Root, !unified {
            throw SandboxError(.invalidInput, "LEVAIN_CGROUP_V2_ROOT=\(root) is not a cgroup2 mount")
        }
        var layout: CgroupLayout = request.cgroupV2Root.map { .v2($0) }
            ?? (unified ? CgroupLayout.detect(fs: RealCgroupFileSystem()) : .none)
        var cgroup = CgroupChoice(group: nil, version: nil, controllers: [])
        var sentinel: CgroupSentinel? = nil
        defer {
            if let cg = cgroup.group {
                cg.kill()
                try? cg.remove()
            }
            sentinel?.close()
        }
        func makeRunCgroup() throws(SandboxError) {
            cgroup = try makeCgroup(name: runID, limits: limits, policy: policy, layout: layout)
            if let cg = cgroup.group {
                sentinel = CgroupSentinel.start()
                for path in cg.paths { sentinel?.register(path) }
            }
        }
        var dirFD: Int32 = -1
        if unified, case .v2 = layout {
            try makeRunCgroup()
            if let cg = cgroup.group {
                do throws(SystemError) { dirFD = try cg.directoryFileDescriptor() ?? -1 } catch { throw SandboxError(error) }
            }
        }
        timer.mark("cgroup-before-clone")
        let jail: JailProcess
        var tasksFDs: [Int32] = []
        defer { for fd in tasksFDs { close(fd) } }
        do throws(SandboxError) {
            var trace: [Int32] = [-1, -1]
            if timer.enabled { _ = pipe(&trace); _ = fcntl(trace[1], F_SETFD, FD_CLOEXEC); _ = fcntl(trace[0], F_SETFD, FD_CLOEXEC) }
            let spawnStart = Monotonic.nanos()
            jail = try spawnExplaining(policy) { () throws(SandboxError) -> JailProcess in
              try Spawner.spawn(spec, cgroupDirFD: dirFD, stageDir: stage, traceFD: trace[1]) { () throws(SandboxError) -> [Int32] in
                try makeWorkspace()
                guard dirFD < 0 else { return [] }
                if !unified { layout = CgroupLayout.detect(fs: RealCgroupFileSystem()) }
                try makeRunCgroup()
                if let cg = cgroup.group {
                    do throws(SystemError) { tasksFDs = try cg.selfMigrationFileDescriptors() } catch { throw SandboxError(error) }
                }
                return tasksFDs
              }
            }
            if trace[1] >= 0 {
                let returned = Monotonic.nanos()
                let note = "spawn-returned \(returned)\n"
                _ = note.withCString { write(trace[1], $0, strlen($0)) }
                close(trace[1])
                timer.childTrace(fd: trace[0], since: spawnStart)
                close(trace[0])
            }
        } catch {
            if dirFD >= 0 { close(dirFD) }
            throw error
        }
        if dirFD >= 0 { close(dirFD) }
        defer { jail.close() }
        // The jail has mounted its workspace (or failed): its mount holds the
        // loop device from here on.
        loop?.release()
        loop = nil

        timer.mark("spawn")
        // 8. Wait: the timeout, and signals forwarded to the command. A
        //    second SIGINT/SIGTERM ends the jail outright.
        var interrupts = 0
        let timeoutMillis = policy.limits.timeout.map { Int(($0 * 1000).rounded(.up)) } ?? -1
        var timedOut = false
        let outcome = jail.wait(timeoutMillis: timeoutMillis, signalFD: signalFD) { sig in
            if sig == SIGINT || sig == SIGTERM {
                interrupts += 1
                if interrupts >= 2 {
                    jail.kill()
                    return
                }
            }
            jail.signal(sig)
        }
        if case .timedOut = outcome {
            timedOut = true
            jail.kill()
            cgroup.group?.kill()
            _ = jail.reap()
        }
        let record = jail.readExitRecord()
        let wallNanos = Monotonic.nanos() - started
        let usage = cgroup.group?.usage()

        timer.mark("wait+usage")
        // 9. The result.
        var which: [String] = []
        if (usage?.oomKills ?? 0) > 0 { which.append("memory") }
        if (usage?.pidsLimitHits ?? 0) > 0 { which.append("pids") }
        if (record?.xcpu_deaths ?? 0) > 0 { which.append("cpu_time") }
        if (record?.xfsz_deaths ?? 0) > 0 { which.append("file_size") }
        if timedOut { which.append("timeout") }

        var exit = RunReport.Exit(code: nil, signal: nil, signalName: nil, status: 125)
        if timedOut {
            exit = RunReport.Exit(code: nil, signal: SIGKILL, signalName: "SIGKILL", status: 128 + SIGKILL)
        } else if let rec = record {
            let st = rec.status
            if st & 0x7f == 0 {
                let code = (st >> 8) & 0xff
                exit = RunReport.Exit(code: code, signal: nil, signalName: nil, status: code)
            } else {
                let sig = st & 0x7f
                exit = RunReport.Exit(code: nil, signal: sig, signalName: SignalNames.name(sig), status: 128 + sig)
            }
        } else {
            // The init itself died: killed with the jail (the OOM killer, a
            // second interrupt). The command went with it.
            exit = RunReport.Exit(code: nil, signal: SIGKILL, signalName: "SIGKILL", status: 128 + SIGKILL)
        }

        var notices: [String] = []
        if let e = jail.execError { notices.append(e.message) }
        for w in which {
            switch w {
            case "memory": notices.append("run \(runID): memory limit (\(policy.limits.memory.map(Quantity.formatSize) ?? "?")) reached: the OOM killer ended \(usage?.oomKills ?? 0) process(es)")
            case "pids": notices.append("run \(runID): pids limit (\(policy.limits.pids ?? 0)) reached: fork/clone failed \(usage?.pidsLimitHits ?? 0) time(s)")
            case "timeout": notices.append("run \(runID): wall-clock timeout (\(policy.limits.timeout.map { formatSeconds($0) } ?? "?")) reached: the jail was killed")
            case "cpu_time": notices.append("run \(runID): CPU time limit (\(policy.limits.cpuTime ?? 0)s) reached")
            case "file_size": notices.append("run \(runID): file size limit (\(policy.limits.fileSize.map(Quantity.formatSize) ?? "?")) reached")
            default: break
            }
        }

        let cpu: RunReport.CPU
        if let u = jail.usage {
            cpu = RunReport.CPU(userMs: Double(u.userMicros) / 1000, systemMs: Double(u.systemMicros) / 1000, source: "rusage")
        } else {
            cpu = RunReport.CPU(userMs: Double(usage?.cpuUserMicros ?? 0) / 1000, systemMs: Double(usage?.cpuSystemMicros ?? 0) / 1000, source: "cgroup")
        }
        let peak = usage?.peakMemoryBytes ?? jail.usage?.maxRSSBytes

        var rl: [String: UInt64] = [:]
        for r in rlimits { rl[r.name] = r.soft }
        let report = RunReport(
            id: runID, command: request.argv, policy: policy.name, startedAt: startedAt,
            wallTimeMs: Double(wallNanos) / 1e6,
            exit: exit, cpu: cpu,
            memory: RunReport.Memory(peakBytes: peak, limitBytes: policy.limits.memory),
            limits: RunReport.Limits(
                hit: !which.isEmpty, which: which, memoryBytes: policy.limits.memory, cpus: policy.limits.cpus,
                pids: policy.limits.pids, timeoutSeconds: policy.limits.timeout, cpuTimeSeconds: policy.limits.cpuTime,
                fileSizeBytes: policy.limits.fileSize, openFiles: policy.limits.openFiles,
                workspaceBytes: workspaceMount.flatMap { if case .image = $0 { workspace.flatMap(WorkspaceImage.size(of:)) } else { nil } },
                oomKills: usage?.oomKills ?? 0, pidsLimitHits: usage?.pidsLimitHits ?? 0,
                cpuThrottledMs: usage?.cpuThrottledMicros.map { Double($0) / 1000 }),
            isolation: RunReport.Isolation(
                namespaces: policy.namespaces.enabledNames,
                user: .init(uid: policy.user.uid, gid: policy.user.gid, hostUID: spec.hostIDBase + policy.user.uid,
                            hostGID: spec.hostIDBase + policy.user.gid),
                rootfs: .init(type: "tmpfs", readOnly: true,
                              binds: mounts.compactMap { op in
                                  if case let .bind(s, t, ro, _, dev) = op, !dev { return "\(s):\(t):\(ro ? "ro" : "rw")" }
                                  return nil
                              },
                              maskedProcPaths: RootfsPlanner.maskedProcPaths.count, tmpSizeBytes: policy.filesystem.tmpSize),
                seccomp: .init(profile: policy.seccomp.profile, defaultAction: seccomp.defaultAction.description,
                               allowedSyscalls: seccomp.allowedSyscalls, deniedSyscalls: seccomp.deniedSyscalls,
                               filters: seccomp.programs.count,
                               instructions: seccomp.programs.reduce(0) { $0 + $1.instructionCount },
                               architectures: seccomp.architectures),
                landlock: .init(applied: landlock != nil, abi: landlock?.abi ?? 0, mode: policy.landlock.rawValue),
                cgroup: .init(version: cgroup.version, controllers: cgroup.controllers, paths: cgroup.group?.paths ?? []),
                capabilities: "none", noNewPrivs: true, network: policy.network.rawValue, rlimits: rl),
            workspace: workspace,
            error: jail.execError?.message)
        return RunOutcome(report: report, exitStatus: exit.status, notices: notices)
    }

    /// Runs the spawn; when it fails, checks the machine, so that a missing
    /// kernel feature is reported as such rather than as a failed step.
    static func spawnExplaining(_ policy: Policy, _ spawn: () throws(SandboxError) -> JailProcess) throws(SandboxError) -> JailProcess {
        do {
            return try spawn()
        } catch {
            if error.code == .spawn { try checkMachine(policy, KernelFeatures.probe()) }
            throw error
        }
    }

    /// Refuses to run when the machine lacks isolation the policy asks for.
    public static func checkMachine(_ policy: Policy, _ f: KernelFeatures) throws(SandboxError) {
        var missing: [String] = []
        if geteuid() != 0 { missing.append("root: levain run needs root to create namespaces, cgroups and mounts (run it with sudo)") }
        if policy.namespaces.user && !f.userNamespaces { missing.append("user namespaces (user.max_user_namespaces is 0 or the kernel lacks CONFIG_USER_NS)") }
        if !f.seccompFilter { missing.append("seccomp filters (CONFIG_SECCOMP_FILTER)") }
        if !f.pidfd { missing.append("pidfd (Linux 5.3+)") }
        if policy.namespaces.mount && (!f.newMountAPI || !f.openat2) { missing.append("open_tree/move_mount/mount_setattr and openat2 (Linux 5.12+)") }
        if policy.landlock == .required && f.landlockABI == 0 { missing.append("Landlock, which this policy requires (landlock.mode = \"required\"; boot with lsm=...,landlock or use a policy with \"if-available\")") }
        if !missing.isEmpty {
            throw SandboxError(.unsupported, "this machine cannot give the isolation policy \"\(policy.name)\" asks for; missing: \(missing.joined(separator: "; ")). Run `levain doctor` for details.")
        }
    }

    struct CgroupChoice {
        var group: RunCgroup?
        var version: Int?
        var controllers: [String]
    }

    static func makeCgroup(name: String, limits: CgroupLimits, policy: Policy, layout: CgroupLayout) throws(SandboxError) -> CgroupChoice {
        let fs = RealCgroupFileSystem()
        let driver: any CgroupDriver
        switch layout {
        case .v2(let root):
            driver = CgroupV2Driver(root: root, fs: fs)
        case .v1(let mounts):
            driver = CgroupV1Driver(mounts: mounts, fs: fs)
        case .none:
            if limits.memoryBytes != nil || limits.cpus != nil || limits.pidsMax != nil {
                throw SandboxError(.unsupported, "policy \"\(policy.name)\" sets memory/cpu/pids limits but this machine has no usable cgroup controllers; run `levain doctor`")
            }
            return CgroupChoice(group: nil, version: nil, controllers: [])
        }
        do {
            let group = try driver.create(name: name, limits: limits)
            return CgroupChoice(group: group, version: driver.version, controllers: driver.controllers)
        } catch {
            throw SandboxError(.cgroup, "cannot create the run's cgroup: \(error)")
        }
    }

    static func formatSeconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : "\(s)s"
    }
}

public enum RunID {
    /// "r-" and 12 random hex digits.
    public static func make() -> String { randomID(prefix: "r-") }

    /// `prefix` and 12 random hex digits (48 bits from getrandom).
    public static func randomID(prefix: String) -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        _ = lv_random_bytes(&bytes, bytes.count)
        return prefix + bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }
}

public enum Directories {
    /// mkdir -p with the mode for the last component (existing dirs untouched).
    /// The modes are set exactly, whatever the process's umask: `levain
    /// serve` narrows it while it binds its socket, and a warm jail may be
    /// made in that moment.
    public static func make(_ path: String, mode: mode_t) throws(SandboxError) {
        var current = ""
        let comps = path.split(separator: "/")
        for (i, c) in comps.enumerated() {
            current += "/" + c
            let wanted = i == comps.count - 1 ? mode : 0o755
            if mkdir(current, wanted) == 0 {
                _ = chmod(current, wanted)
            } else if errno != EEXIST {
                throw SandboxError(.io, "cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
    }
}

public enum Timestamp {
    public static func nowRFC3339() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let ms = Int32(ts.tv_nsec / 1_000_000)
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(pad(ms, 3))Z"
    }
}

/// Phase timings of a run on stderr, when LEVAIN_TIMINGS is set (a
/// developer's aid for the benchmarks; see docs/DEVELOPING.md).
/// `LEVAIN_TIMINGS=1`: how long each phase took, printed on stderr as one
/// line (`levain run`'s runner; `levain serve`'s jail starts).
public struct PhaseTimer {
    public static let requested = getenv("LEVAIN_TIMINGS") != nil
    public let enabled: Bool
    private let title: String
    private var last = Monotonic.nanos()
    private var phases: [(String, UInt64)] = []

    public init(enabled: Bool = PhaseTimer.requested, title: String = "levain timings") {
        self.enabled = enabled
        self.title = title
    }

    public mutating func mark(_ name: String) {
        guard enabled else { return }
        let now = Monotonic.nanos()
        phases.append((name, now - last))
        last = now
    }

    /// The spawn core's own step times ("label ns" lines), relative to the start of the spawn.
    mutating func childTrace(fd: Int32, since start: UInt64) {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        var line = "levain spawn steps (ms since spawn):"
        for entry in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = entry.split(separator: " ")
            guard parts.count == 2, let ns = UInt64(parts[1]), ns >= start else { continue }
            line += " \(parts[0])=\(Double((ns - start) / 1000) / 1000)"
        }
        line += "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    public func print() {
        guard enabled else { return }
        var line = "\(title) (ms):"
        for (name, ns) in phases { line += " \(name)=\(Double(ns / 1000) / 1000)" }
        line += "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}

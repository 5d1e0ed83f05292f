#if canImport(Glibc)
import Glibc
#endif
import CCap
import CLevainSpawn
import LevainClock
import LevainPolicy
import LevainSystem

/// C memory for one spawn: every string and array the child reads, allocated
/// before the clone and freed after the parent is done with it.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    func optionalString(_ s: String?) -> UnsafePointer<CChar>? { s.map(string) }

    func bytes(_ b: [UInt8]) -> UnsafePointer<CChar> {
        let p = malloc(max(b.count, 1))!
        b.withUnsafeBytes { src in
            if let base = src.baseAddress { p.copyMemory(from: base, byteCount: b.count) }
        }
        blocks.append(p)
        return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
    }

    func array<T>(_ items: [T]) -> UnsafePointer<T>? {
        guard !items.isEmpty else { return nil }
        let p = UnsafeMutablePointer<T>.allocate(capacity: items.count)
        p.initialize(from: items, count: items.count)
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    /// A NULL-terminated char* array.
    func stringArray(_ items: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let p = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: items.count + 1)
        for (i, s) in items.enumerated() { p[i] = string(s) }
        p[items.count] = nil
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    deinit {
        // strdup/malloc'd and allocate()'d blocks both come from malloc on Linux.
        for b in blocks { free(b) }
    }
}

/// A running jail: its PID 1, as a pidfd.
public final class JailProcess: @unchecked Sendable {
    public let pid: pid_t
    public let pidfd: Int32
    /// Read end of the report pipe: one lv_exit_record when the command ended
    /// (only with the built-in init).
    public let reportFD: Int32
    /// Held open while the jail lives: the jail watches it for our death.
    private var syncFD: Int32
    /// Set when the command could not be exec'd (it then exits 126/127).
    public let execError: (errno: Int32, message: String)?
    private var reaped = false

    init(pid: pid_t, pidfd: Int32, reportFD: Int32, syncFD: Int32, execError: (Int32, String)?) {
        self.pid = pid
        self.pidfd = pidfd
        self.reportFD = reportFD
        self.syncFD = syncFD
        self.execError = execError
    }

    /// Sends a signal to the jail's PID 1 (which forwards it to the command).
    @discardableResult
    public func signal(_ sig: Int32) -> Bool {
        lv_pidfd_send_signal(pidfd, sig) == 0
    }

    /// SIGKILL to PID 1: the kernel then kills every process of the jail's pid
    /// namespace, including ones that fork or are stopped meanwhile.
    public func kill() {
        _ = lv_pidfd_send_signal(pidfd, SIGKILL)
    }

    public enum WaitOutcome: Sendable {
        case exited(status: Int32)
        case timedOut
    }

    /// Waits until PID 1 exits or `timeoutMillis` passes (-1: no limit). While
    /// waiting, reads signals from `signalFD` (a signalfd, or -1) and hands
    /// them to `onSignal`.
    public func wait(timeoutMillis: Int, signalFD: Int32 = -1, onSignal: (Int32) -> Void = { _ in }) -> WaitOutcome {
        let deadline = timeoutMillis >= 0 ? Monotonic.millis() + Int64(timeoutMillis) : Int64.max
        while true {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            if signalFD >= 0 { fds.append(pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)) }
            let remaining = deadline == Int64.max ? -1 : max(0, deadline - Monotonic.millis())
            let r = poll(&fds, nfds_t(fds.count), Int32(clamping: remaining))
            if r < 0 {
                if errno == EINTR { continue }
                break
            }
            if r == 0 && remaining >= 0 && Monotonic.millis() >= deadline { return .timedOut }
            if fds.count > 1 && fds[1].revents & Int16(POLLIN) != 0 {
                let sig = lv_read_signal(signalFD)
                if sig > 0 { onSignal(sig) }
            }
            if fds[0].revents != 0 { break }
        }
        return .exited(status: reap())
    }

    /// Reaps PID 1 (blocking); returns its wait status. Its rusage then
    /// covers every process of the jail: the init waited for its children,
    /// and the kernel reaps what is left into the init when the pid
    /// namespace ends.
    public func reap() -> Int32 {
        var st: Int32 = 0
        var ru = Glibc.rusage()
        while wait4(pid, &st, __WALL, &ru) < 0 {
            if errno != EINTR { break }
        }
        reaped = true
        usage = JailUsage(userMicros: UInt64(ru.ru_utime.tv_sec) * 1_000_000 + UInt64(ru.ru_utime.tv_usec),
                          systemMicros: UInt64(ru.ru_stime.tv_sec) * 1_000_000 + UInt64(ru.ru_stime.tv_usec),
                          maxRSSBytes: UInt64(max(0, ru.ru_maxrss)) * 1024)
        return st
    }

    /// CPU time and the largest resident set of the jail's processes, once reaped.
    public private(set) var usage: JailUsage?

    /// The init's record of how the command ended, when it wrote one.
    public func readExitRecord() -> lv_exit_record? {
        var rec = lv_exit_record()
        let size = MemoryLayout<lv_exit_record>.size
        let n = withUnsafeMutableBytes(of: &rec) { read(reportFD, $0.baseAddress, size) }
        guard n == size, rec.magic == LV_EXIT_MAGIC else { return nil }
        return rec
    }

    /// Releases the fds; the jail must have been reaped (or is killed now).
    public func close() {
        if !reaped {
            kill()
            _ = reap()
        }
        if syncFD >= 0 { Glibc.close(syncFD); syncFD = -1 }
        Glibc.close(reportFD)
        Glibc.close(pidfd)
    }
}

public struct JailUsage: Sendable, Equatable {
    public var userMicros: UInt64
    public var systemMicros: UInt64
    public var maxRSSBytes: UInt64
}

/// The spawn step names, for messages ("mount #3 (/workspace)").
enum SpawnStep {
    static func name(_ step: UInt32) -> String {
        switch Int(step) {
        case Int(LV_STEP_PIPES.rawValue): "creating pipes"
        case Int(LV_STEP_CLONE.rawValue): "clone (creating namespaces)"
        case Int(LV_STEP_CGROUP_PLACE.rawValue): "placing the jail in its cgroup"
        case Int(LV_STEP_SYNC.rawValue): "synchronising with the jail"
        case Int(LV_STEP_PDEATHSIG.rawValue): "die-with-parent"
        case Int(LV_STEP_CLOSE_FDS.rawValue): "closing inherited fds"
        case Int(LV_STEP_SETSID.rawValue): "setsid"
        case Int(LV_STEP_MOUNT_PRIVATE.rawValue): "making mounts private"
        case Int(LV_STEP_ROOT_TMPFS.rawValue): "mounting the root tmpfs"
        case Int(LV_STEP_MOUNT.rawValue): "mount"
        case Int(LV_STEP_ROOT_READONLY.rawValue): "making the root read-only"
        case Int(LV_STEP_PIVOT_ROOT.rawValue): "pivot_root"
        case Int(LV_STEP_HOSTNAME.rawValue): "sethostname"
        case Int(LV_STEP_LOOPBACK.rawValue): "bringing up loopback"
        case Int(LV_STEP_CGROUP_NS.rawValue): "cgroup namespace"
        case Int(LV_STEP_USER_NS.rawValue): "user namespace"
        case Int(LV_STEP_ID_MAPS.rawValue): "writing uid/gid maps"
        case Int(LV_STEP_FORK.rawValue): "forking the command"
        case Int(LV_STEP_STDIO.rawValue): "standard streams"
        case Int(LV_STEP_CHDIR.rawValue): "changing to the working directory"
        case Int(LV_STEP_RLIMIT.rawValue): "setrlimit"
        case Int(LV_STEP_OOM_ADJ.rawValue): "oom_score_adj"
        case Int(LV_STEP_CAP_BOUNDING.rawValue): "dropping the capability bounding set"
        case Int(LV_STEP_CAP_AMBIENT.rawValue): "clearing ambient capabilities"
        case Int(LV_STEP_SETGROUPS.rawValue): "setgroups"
        case Int(LV_STEP_SETGID.rawValue): "setresgid"
        case Int(LV_STEP_SETUID.rawValue): "setresuid"
        case Int(LV_STEP_CAPS.rawValue): "dropping capabilities"
        case Int(LV_STEP_NO_NEW_PRIVS.rawValue): "no_new_privs"
        case Int(LV_STEP_LANDLOCK.rawValue): "Landlock"
        case Int(LV_STEP_SIGNALS.rawValue): "signal mask"
        case Int(LV_STEP_SECCOMP.rawValue): "installing seccomp"
        case Int(LV_STEP_EXEC.rawValue): "exec"
        case Int(LV_STEP_INIT.rawValue): "jail init"
        case Int(LV_STEP_AUDIT.rawValue): "installing the audit layer (seccomp user notification)"
        default: "step \(step)"
        }
    }
}

public enum Spawner {
    /// Spawns the jail described by `spec`. Call it from a thread that
    /// outlives the jail: the jail's die-with-parent signal is tied to the
    /// calling thread, not to the process.
    ///
    /// `placement` runs in the parent while the child builds its root: it
    /// makes the run's cgroups (and whatever the mounts from
    /// `spec.mountsAfterPlacement` on bind, like the workspace) and returns
    /// the fds of the cgroup v1 `tasks` files, which the child uses to move
    /// itself in (none on v2, where `cgroupDirFD` put it in at clone). The
    /// caller closes them.
    public static func spawn(_ spec: JailSpec, cgroupDirFD: Int32 = -1, stageDir: String, traceFD: Int32 = -1,
                             placement: () throws(SandboxError) -> [Int32] = { [] }) throws(SandboxError) -> JailProcess {
        let arena = CArena()
        var config = lv_spawn_config()

        var ns: UInt32 = 0
        if spec.namespaces.user { ns |= LV_NS_USER }
        if spec.namespaces.pid { ns |= LV_NS_PID }
        if spec.namespaces.mount { ns |= LV_NS_MOUNT }
        if spec.namespaces.net { ns |= LV_NS_NET }
        if spec.namespaces.uts { ns |= LV_NS_UTS }
        if spec.namespaces.ipc { ns |= LV_NS_IPC }
        if spec.namespaces.cgroup { ns |= LV_NS_CGROUP }
        config.namespaces = ns

        config.stage_dir = arena.string(stageDir)
        config.root_tmpfs_data = arena.string("size=8m,nr_inodes=8192,mode=0755")
        var mounts: [lv_mount] = []
        for op in spec.mounts { mounts.append(cMount(op, arena)) }
        config.mounts = arena.array(mounts)
        config.mount_count = mounts.count
        config.mounts_after_placement = max(0, min(spec.mountsAfterPlacement, mounts.count))
        config.root_readonly = 1
        config.hostname = arena.string(spec.hostname)
        config.loopback_up = spec.loopbackUp ? 1 : 0

        config.uid_map = arena.string("0 \(spec.hostIDBase) \(spec.idRangeSize)\n")
        config.gid_map = arena.string("0 \(spec.hostIDBase) \(spec.idRangeSize)\n")
        config.uid = spec.uid
        config.gid = spec.gid

        config.cgroup_v2_dirfd = cgroupDirFD

        let rl = spec.rlimits.map { lv_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        config.rlimits = arena.array(rl)
        config.rlimit_count = rl.count

        // Capabilities: the command runs with none; init keeps CAP_KILL.
        guard let capsCommand = cap_init(), let capsInit = cap_init() else {
            throw SandboxError(.spawn, "libcap: cap_init failed", errno: errno)
        }
        defer {
            cap_free(UnsafeMutableRawPointer(capsCommand))
            cap_free(UnsafeMutableRawPointer(capsInit))
        }
        var kill: cap_value_t = 5  // CAP_KILL
        _ = cap_set_flag(capsInit, CAP_EFFECTIVE, 1, &kill, CAP_SET)
        _ = cap_set_flag(capsInit, CAP_PERMITTED, 1, &kill, CAP_SET)
        var keepMask: UInt64 = 0
        for cap in spec.keepCapabilities where cap >= 0 && cap < 64 {
            var value = cap_value_t(cap)
            _ = cap_set_flag(capsCommand, CAP_EFFECTIVE, 1, &value, CAP_SET)
            _ = cap_set_flag(capsCommand, CAP_PERMITTED, 1, &value, CAP_SET)
            keepMask |= 1 << UInt64(cap)
        }
        config.command_keep_caps = keepMask
        config.cap_last = Int32(cap_max_bits()) - 1
        config.caps_command = UnsafeMutableRawPointer(capsCommand)
        config.caps_init = UnsafeMutableRawPointer(capsInit)
        config.init_keep_cap = 5

        if let ll = spec.landlock {
            config.landlock_abi = Int32(ll.abi)
            config.landlock_handled_fs = ll.handledFS
            config.landlock_handled_net = 0
            config.landlock_scoped = ll.scoped
            let rules = ll.rules.map { lv_landlock_rule(path: arena.string($0.path), access: $0.access, optional: $0.optional ? 1 : 0) }
            config.landlock_rules = arena.array(rules)
            config.landlock_rule_count = rules.count
        }

        let programs = spec.seccomp.map { lv_bpf(code: UnsafeRawPointer(arena.bytes($0.bytes)), len: $0.instructionCount) }
        config.filters = arena.array(programs)
        config.filter_count = programs.count
        if let audit = spec.audit {
            config.audit_filter = arena.array([lv_bpf(code: UnsafeRawPointer(arena.bytes(audit.filter.bytes)), len: audit.filter.instructionCount)])
            config.audit_sock = audit.socket
        }

        config.cwd = arena.string(spec.cwd)
        config.argv = arena.stringArray(spec.argv)
        config.envp = arena.stringArray(spec.environment)
        config.search_path = arena.string(spec.searchPath)
        config.stdin_fd = spec.stdinFD
        config.stdout_fd = spec.stdoutFD
        config.stderr_fd = spec.stderrFD
        config.keep_fds = arena.array(spec.keepFDs)
        config.keep_fd_count = spec.keepFDs.count
        config.exec_as_init = spec.execAsInit ? 1 : 0
        config.trace_fd = traceFD

        var handle = lv_spawn_handle()
        var startError = lv_error_record()
        guard lv_spawn_start(&config, &handle, &startError) == 0 else {
            throw describe(startError, spec: spec)
        }
        let fds: [Int32]
        do {
            fds = try placement()
        } catch {
            lv_spawn_abort(&handle)
            throw error
        }
        var result = lv_spawn_result()
        let rc = fds.withUnsafeBufferPointer { lv_spawn_finish(&config, &handle, $0.baseAddress, $0.count, &result) }
        withExtendedLifetime(arena) {}
        if rc != 0 {
            throw describe(result.error, spec: spec)
        }
        var execError: (Int32, String)? = nil
        if result.error.step == LV_STEP_EXEC.rawValue {
            let e = result.error.err
            execError = (e, "cannot execute \(spec.argv.first ?? ""): \(String(cString: strerror(e)))")
        }
        return JailProcess(pid: result.pid, pidfd: result.pidfd, reportFD: result.report_fd,
                           syncFD: result.sync_fd, execError: execError)
    }

    static func cMount(_ op: MountOp, _ arena: CArena) -> lv_mount {
        var m = lv_mount()
        switch op {
        case let .bind(source, target, readOnly, optional, devices):
            m.kind = LV_MOUNT_BIND.rawValue
            m.source = arena.string(source)
            m.target = arena.string(target)
            if readOnly { m.flags |= LV_MF_RDONLY }
            if optional { m.flags |= LV_MF_OPTIONAL }
            if devices { m.flags |= LV_MF_DEVICES }
        case let .tmpfs(target, options, readOnly, noexec):
            m.kind = LV_MOUNT_TMPFS.rawValue
            m.target = arena.string(target)
            m.data = arena.string(options)
            if readOnly { m.flags |= LV_MF_RDONLY }
            if noexec { m.flags |= LV_MF_NOEXEC }
        case let .ext4(device, target, options):
            m.kind = LV_MOUNT_EXT4.rawValue
            m.source = arena.string(device)
            m.target = arena.string(target)
            m.data = arena.string(options)
        case let .proc(target):
            m.kind = LV_MOUNT_PROC.rawValue
            m.target = arena.string(target)
        case let .devpts(target, options):
            m.kind = LV_MOUNT_DEVPTS.rawValue
            m.target = arena.string(target)
            m.data = arena.string(options)
        case let .directory(target, mode):
            m.kind = LV_MOUNT_DIR.rawValue
            m.target = arena.string(target)
            m.mode = mode
        case let .symlink(target, pointingTo):
            m.kind = LV_MOUNT_SYMLINK.rawValue
            m.target = arena.string(target)
            m.source = arena.string(pointingTo)
        case let .file(target, contents, mode):
            m.kind = LV_MOUNT_FILE.rawValue
            m.target = arena.string(target)
            m.data = arena.bytes(contents)
            m.data_len = contents.count
            m.mode = mode
        case let .mask(target):
            m.kind = LV_MOUNT_MASK.rawValue
            m.target = arena.string(target)
        case let .readOnly(target):
            m.kind = LV_MOUNT_READONLY.rawValue
            m.target = arena.string(target)
        case let .remountReadOnly(target, devices):
            m.kind = LV_MOUNT_REMOUNT_RO.rawValue
            m.target = arena.string(target)
            if devices { m.flags |= LV_MF_DEVICES }
        }
        return m
    }

    static func describe(_ rec: lv_error_record, spec: JailSpec) -> SandboxError {
        var step = SpawnStep.name(rec.step)
        if rec.step == LV_STEP_MOUNT.rawValue, rec.detail >= 0, Int(rec.detail) < spec.mounts.count {
            step += " #\(rec.detail) (\(describe(spec.mounts[Int(rec.detail)])))"
        } else if rec.step == LV_STEP_LANDLOCK.rawValue, let ll = spec.landlock, rec.detail >= 0, Int(rec.detail) < ll.rules.count {
            step += " rule for \(ll.rules[Int(rec.detail)].path)"
        } else if rec.step == LV_STEP_SECCOMP.rawValue {
            step += " filter #\(rec.detail)"
        }
        let why = rec.err != 0 ? String(cString: strerror(rec.err)) : "failed"
        var hint = ""
        if rec.step == LV_STEP_CHDIR.rawValue { hint = "; --cwd \(spec.cwd) must be a directory inside the jail" }
        if rec.step == LV_STEP_MOUNT.rawValue && rec.err == ELOOP {
            hint = "; a symlink appeared in a bind source or target path, which Levain refuses to follow"
        }
        return SandboxError(.spawn, "setting up the jail failed at \(step): \(why)\(hint)",
                            step: SpawnStep.name(rec.step), errno: rec.err)
    }

    static func describe(_ op: MountOp) -> String {
        switch op {
        case let .bind(s, t, ro, _, _): "bind \(s) -> \(t)\(ro ? " ro" : " rw")"
        case let .tmpfs(t, _, _, _): "tmpfs \(t)"
        case let .ext4(d, t, _): "ext4 \(d) -> \(t)"
        case let .proc(t): "proc \(t)"
        case let .devpts(t, _): "devpts \(t)"
        case let .directory(t, _): "mkdir \(t)"
        case let .symlink(t, p): "symlink \(t) -> \(p)"
        case let .file(t, _, _): "file \(t)"
        case let .mask(t): "mask \(t)"
        case let .readOnly(t): "read-only \(t)"
        case let .remountReadOnly(t, _): "remount read-only \(t)"
        }
    }
}

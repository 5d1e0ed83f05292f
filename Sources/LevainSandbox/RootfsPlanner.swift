import LevainPolicy

/// Turns a policy (and the run's binds) into the ordered mount plan of a
/// jail's root: a tmpfs root with read-only host /usr, a generated /etc, a
/// minimal /dev, a fresh /proc with the dangerous entries masked, a capped
/// /tmp, the workspace, then the user's binds; the root is made read-only
/// last (by the spawn core).
/// What a jail gets at /workspace.
public enum WorkspaceMount: Sendable, Equatable {
    /// A host directory, bound read-write (no size limit).
    case directory(String)
    /// The loop device of a workspace image (WorkspaceImage), mounted as ext4.
    case image(device: String)
}

public struct RootfsPlanner: Sendable {
    /// /proc entries hidden entirely (/dev/null over files, an empty read-only
    /// tmpfs over directories): kernel memory, keys, timers, hardware knobs.
    public static let maskedProcPaths = [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/key-users",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/proc/scsi", "/proc/sysrq-trigger", "/proc/kallsyms", "/proc/kmsg", "/proc/config.gz",
        "/proc/vmallocinfo", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup",
        "/proc/modules", "/proc/slabinfo", "/proc/pagetypeinfo", "/proc/zoneinfo",
    ]
    /// /proc entries made read-only: every kernel tunable (sys), and the
    /// bus/irq/fs/driver/pressure trees.
    public static let readOnlyProcPaths = [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/driver", "/proc/pressure",
    ]
    /// Device nodes bound from the host.
    public static let devices = ["null", "zero", "full", "random", "urandom", "tty"]

    public var policy: Policy
    /// Extra binds of this run (--ro/--rw), after the policy's.
    public var extraBinds: [Policy.Bind]
    /// What is mounted at /workspace, if anything.
    public var workspace: WorkspaceMount?

    public init(policy: Policy, extraBinds: [Policy.Bind] = [], workspace: WorkspaceMount?) {
        self.policy = policy
        self.extraBinds = extraBinds
        self.workspace = workspace
    }

    /// The plan. Bind sources are resolved here (see HostPath); a missing
    /// required source or an untrusted symlink is an error naming it.
    public func plan() throws(SandboxError) -> [MountOp] { try planWithSplit().ops }

    /// The plan, and the index of its first operation that needs what the
    /// parent creates while the jail builds its root (the workspace): the
    /// spawn core applies those after the parent says the run is placed.
    public func planWithSplit() throws(SandboxError) -> (ops: [MountOp], afterPlacement: Int) {
        var ops: [MountOp] = []
        var split = -1
        let fs = policy.filesystem

        // The host userland, read-only.
        if fs.usrMerge {
            for name in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
                let host = "/" + name
                if let link = HostPath.symlinkTarget(host) {
                    ops.append(.symlink(target: host, pointingTo: link))
                } else if HostPath.isDirectory(host) {
                    ops.append(.bind(source: host, target: host, readOnly: true, optional: true))
                }
            }
        }

        // /etc: generated identity files, then selected host entries.
        ops.append(.directory(target: "/etc", mode: 0o755))
        for (name, text) in generatedEtc() {
            ops.append(.file(target: "/etc/\(name)", contents: Array(text.utf8), mode: 0o644))
        }
        for name in fs.etcFromHost {
            let host = "/etc/" + name
            if let link = HostPath.symlinkTarget(host) {
                ops.append(.symlink(target: host, pointingTo: link))
            } else if HostPath.exists(host) {
                ops.append(.bind(source: host, target: host, readOnly: true, optional: true))
            }
        }

        // /dev: a small tmpfs with the harmless device nodes, made read-only
        // before the new devpts and /dev/shm are mounted on it.
        ops.append(.tmpfs(target: "/dev", options: "size=64k,nr_inodes=64,mode=0755", noexec: true))
        for dev in Self.devices {
            ops.append(.bind(source: "/dev/\(dev)", target: "/dev/\(dev)", readOnly: false, optional: dev == "tty", devices: true))
        }
        ops.append(.directory(target: "/dev/pts", mode: 0o755))
        ops.append(.directory(target: "/dev/shm", mode: 0o1777))
        ops.append(.symlink(target: "/dev/ptmx", pointingTo: "pts/ptmx"))
        ops.append(.symlink(target: "/dev/fd", pointingTo: "/proc/self/fd"))
        ops.append(.symlink(target: "/dev/stdin", pointingTo: "/proc/self/fd/0"))
        ops.append(.symlink(target: "/dev/stdout", pointingTo: "/proc/self/fd/1"))
        ops.append(.symlink(target: "/dev/stderr", pointingTo: "/proc/self/fd/2"))
        ops.append(.remountReadOnly(target: "/dev"))
        ops.append(.devpts(target: "/dev/pts", options: "newinstance,ptmxmode=0666,mode=0620"))
        ops.append(.tmpfs(target: "/dev/shm", options: "size=\(fs.shmSize),mode=1777", noexec: true))

        // /proc of the jail's own pid namespace, minus what it must not touch.
        ops.append(.proc(target: "/proc"))
        for p in Self.maskedProcPaths { ops.append(.mask(target: p)) }
        for p in Self.readOnlyProcPaths { ops.append(.readOnly(target: p)) }

        ops.append(.tmpfs(target: "/tmp", options: "size=\(fs.tmpSize),mode=1777"))
        split = ops.count
        switch workspace {
        case .directory(let path):
            ops.append(.bind(source: path, target: "/workspace", readOnly: false, optional: false))
        case .image(let device):
            ops.append(.ext4(device: device, target: "/workspace", options: WorkspaceImage.mountOptions))
        case nil:
            break
        }
        // The policy's binds (/usr among them) and the run's, last so nothing
        // above hides them.
        for bind in fs.binds + extraBinds {
            if let op = try bindOp(bind) { ops.append(op) }
        }
        return (ops, split)
    }

    /// The bind of one policy entry; nil for an optional one whose source is absent.
    func bindOp(_ bind: Policy.Bind) throws(SandboxError) -> MountOp? {
        switch HostPath.resolve(bind.host) {
        case .success(let canonical):
            return .bind(source: canonical, target: bind.jail, readOnly: !bind.writable, optional: bind.optional)
        case .failure(.notFound) where bind.optional:
            return nil
        case .failure(let f):
            throw SandboxError(.invalidInput, "bind source \(HostPath.describe(f, for: bind.host))")
        }
    }

    func generatedEtc() -> [(String, String)] {
        let u = policy.user
        var passwd = "root:x:0:0:root:/root:/bin/sh\n"
        var group = "root:x:0:\n"
        if u.uid != 0 {
            passwd += "\(u.name):x:\(u.uid):\(u.gid):\(u.name):/workspace:/bin/sh\n"
        }
        if u.gid != 0 {
            group += "\(u.name):x:\(u.gid):\n"
        }
        passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        group += "nogroup:x:65534:\n"
        return [
            ("passwd", passwd),
            ("group", group),
            ("hostname", "\(u.hostname)\n"),
            ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(u.hostname)\n"),
            ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n"),
            ("resolv.conf", "# A Levain jail has no route to a DNS server.\n"),
        ]
    }

    /// The Landlock rules matching the plan: read and execute across the
    /// jail, write only where the plan is writable.
    public func landlock(abi: Int) -> LandlockPlan? {
        guard abi > 0 else { return nil }
        let all = LandlockAccess.all(abi: abi)
        let write = all & ~(LandlockAccess.makeChar | LandlockAccess.makeBlock)
        var rules: [LandlockRule] = [
            LandlockRule(path: "/", access: LandlockAccess.read, optional: false),
            LandlockRule(path: "/dev", access: LandlockAccess.read | LandlockAccess.writeFile
                         | (abi >= 3 ? LandlockAccess.truncate : 0) | (abi >= 5 ? LandlockAccess.ioctlDev : 0), optional: false),
            LandlockRule(path: "/proc", access: LandlockAccess.read | LandlockAccess.writeFile
                         | (abi >= 3 ? LandlockAccess.truncate : 0), optional: false),
            LandlockRule(path: "/tmp", access: write, optional: false),
            LandlockRule(path: "/dev/shm", access: write, optional: false),
        ]
        if workspace != nil {
            rules.append(LandlockRule(path: "/workspace", access: write, optional: false))
        }
        for bind in policy.filesystem.binds + extraBinds where bind.writable {
            rules.append(LandlockRule(path: bind.jail, access: write, optional: bind.optional))
        }
        let scoped = abi >= 6 ? (LandlockAccess.scopeSignal | LandlockAccess.scopeAbstractUnixSocket) : 0
        return LandlockPlan(abi: abi, handledFS: all, scoped: scoped, rules: rules)
    }
}

/// Runs in the unified hierarchy: `<root>/<parent>/<name>`.
///
/// Levain owns `<root>/<parent>` and enables the controllers its children
/// need in that directory's cgroup.subtree_control. It never writes the
/// root's own cgroup.subtree_control: delegating a controller to the parent
/// is the operator's (or systemd's, with Delegate=yes) decision.
public struct CgroupV2Driver: CgroupDriver {
    public let root: String
    public let parent: String
    let fs: any CgroupFileSystem

    public init(root: String, parent: String = "levain", fs: any CgroupFileSystem = RealCgroupFileSystem()) {
        self.root = root
        self.parent = parent
        self.fs = fs
    }

    public var version: Int { 2 }

    public var parentPath: String { Cgroupfs.join(root, parent) }

    public func paths(of name: String) -> [String] { [Cgroupfs.join(parentPath, name)] }

    public var parentDirectories: [String] { [parentPath] }

    /// memory, pids and cpu, those delegated to the parent (before the
    /// parent exists: those the root enables for its children).
    public var controllers: [String] {
        let file = fs.isDirectory(parentPath)
            ? Cgroupfs.join(parentPath, "cgroup.controllers")
            : Cgroupfs.join(root, "cgroup.subtree_control")
        let present = Self.words(try? fs.readText(file))
        return CgroupLayout.v2Controllers.filter(present.contains)
    }

    public func create(name: String, limits: CgroupLimits) throws(SystemError) -> RunCgroup {
        try Cgroupfs.validateComponent(name, what: "run")
        try Cgroupfs.validateComponent(parent, what: "parent")
        try limits.validate()
        guard fs.isDirectory(root) else {
            throw SystemError(.cgroup, "cgroup v2 root \(root) is not a directory")
        }

        var createdParent = false
        do throws(SystemError) {
            try fs.mkdir(parentPath)
            createdParent = true
        } catch where error.errno == .fileExists {
            guard fs.isDirectory(parentPath) else {
                throw SystemError(.cgroup, "\(parentPath) exists and is not a cgroup directory")
            }
        }

        let dir = Cgroupfs.join(parentPath, name)
        var createdRun = false
        do throws(SystemError) {
            try enableControllers(for: limits)
            do throws(SystemError) {
                try fs.mkdir(dir)
            } catch where error.errno == .fileExists {
                throw SystemError(.cgroup, "cgroup \(dir) already exists; refusing to reuse a cgroup this run did not create",
                                  errno: error.errno)
            }
            createdRun = true
            try writeLimits(limits, dir: dir)
        } catch {
            if createdRun { try? Cgroupfs.removeDirectory(dir, fs: fs, busyTimeoutMillis: 100) }
            // Another run may be using the parent by now; then rmdir fails
            // with EBUSY, which is fine.
            if createdParent { try? fs.rmdir(parentPath) }
            throw error
        }

        let kill = Cgroupfs.join(dir, "cgroup.kill")
        let freeze = Cgroupfs.join(dir, "cgroup.freeze")
        return RunCgroup(
            version: 2, paths: [dir],
            killPath: fs.exists(kill) ? kill : nil,
            freezePath: fs.exists(freeze) ? freeze : nil,
            accounting: .v2(dir), fs: fs)
    }

    /// Enables memory, pids and cpu (those delegated) in the parent's
    /// cgroup.subtree_control; a controller a limit needs that the root does
    /// not delegate is an error telling the operator what to do.
    private func enableControllers(for limits: CgroupLimits) throws(SystemError) {
        let available = Self.words(try fs.readText(Cgroupfs.join(parentPath, "cgroup.controllers")))
        var needed: [String] = []
        if limits.memoryBytes != nil { needed.append("memory") }
        if limits.pidsMax != nil { needed.append("pids") }
        if limits.cpus != nil { needed.append("cpu") }
        let missing = needed.filter { !available.contains($0) }
        if !missing.isEmpty {
            let list = missing.joined(separator: ", ")
            let plus = missing.map { "+" + $0 }.joined(separator: " ")
            throw SystemError(.cgroup, """
                cgroup v2 controller\(missing.count > 1 ? "s" : "") \(list) not delegated to \(parentPath): \
                the operator must enable \(missing.count > 1 ? "them" : "it") in \(Cgroupfs.join(root, "cgroup.subtree_control")) \
                (echo '\(plus)' > \(Cgroupfs.join(root, "cgroup.subtree_control"))), or run Levain in a systemd unit with Delegate=yes
                """)
        }
        let subtreeFile = Cgroupfs.join(parentPath, "cgroup.subtree_control")
        let enabled = Self.words(try fs.readText(subtreeFile))
        let toEnable = CgroupLayout.v2Controllers.filter { available.contains($0) && !enabled.contains($0) }
        guard !toEnable.isEmpty else { return }
        try fs.writeText(subtreeFile, toEnable.map { "+" + $0 }.joined(separator: " "))
    }

    private func writeLimits(_ limits: CgroupLimits, dir: String) throws(SystemError) {
        if let bytes = limits.memoryBytes {
            try fs.writeText(Cgroupfs.join(dir, "memory.max"), String(bytes))
        }
        if limits.swapOff {
            let swap = Cgroupfs.join(dir, "memory.swap.max")
            // Absent without swap accounting (or without the memory controller).
            if fs.exists(swap) { try fs.writeText(swap, "0") }
        }
        if let cpus = limits.cpus {
            let quota = CgroupLimits.cpuQuotaMicros(cpus: cpus)
            try fs.writeText(Cgroupfs.join(dir, "cpu.max"), "\(quota) \(CgroupLimits.cpuPeriodMicros)")
        }
        if let pids = limits.pidsMax {
            try fs.writeText(Cgroupfs.join(dir, "pids.max"), String(pids))
        }
    }

    /// memory.peak, memory.events (oom_kill, max), pids.events (max) and
    /// cpu.stat (user_usec, system_usec, nr_throttled, throttled_usec).
    static func usage(dir: String, fs: any CgroupFileSystem) -> CgroupUsage {
        func read(_ file: String) -> String? { try? fs.readText(Cgroupfs.join(dir, file)) }
        var usage = CgroupUsage()
        if let text = read("memory.peak") { usage.peakMemoryBytes = Cgroupfs.singleValue(text) }
        if let text = read("memory.events") {
            let events = Cgroupfs.keyedValues(text)
            usage.oomKills = events["oom_kill"].map(Cgroupfs.clampedInt) ?? 0
            usage.memoryLimitHits = events["max"].map(Cgroupfs.clampedInt) ?? 0
        }
        if let text = read("pids.events") {
            usage.pidsLimitHits = Cgroupfs.keyedValues(text)["max"].map(Cgroupfs.clampedInt) ?? 0
        }
        if let text = read("cpu.stat") {
            let stat = Cgroupfs.keyedValues(text)
            usage.cpuUserMicros = stat["user_usec"]
            usage.cpuSystemMicros = stat["system_usec"]
            usage.cpuThrottledMicros = stat["throttled_usec"]
            usage.nrThrottled = stat["nr_throttled"].map(Cgroupfs.clampedInt)
        }
        return usage
    }

    static func words(_ text: String?) -> Set<String> {
        guard let text else { return [] }
        return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
    }
}

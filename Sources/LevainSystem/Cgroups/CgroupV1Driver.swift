/// Runs on legacy (or hybrid) v1 hierarchies: `<mount>/<parent>/<name>` in
/// each hierarchy Levain limits (memory, cpu, pids; comounted controllers
/// such as cpu,cpuacct share one directory).
///
/// `<mount>/<parent>` is created when missing and otherwise left as it is:
/// v1 needs nothing written into a parent, so the driver writes only into
/// the run directories it has just created.
public struct CgroupV1Driver: CgroupDriver {
    /// controller -> mount point of its hierarchy.
    public let mounts: [String: String]
    public let parent: String
    let fs: any CgroupFileSystem

    /// The controllers whose hierarchies the driver creates a cgroup in, in
    /// that order. Each v1 hierarchy costs a mkdir, an rmdir and file reads
    /// per run, so only the limited ones: CPU time comes from the jail's
    /// rusage, and the kill from the jail's pid namespace. cpuacct and
    /// freezer are still used when comounted with one of these (as
    /// systemd mounts cpu,cpuacct).
    public static let defaultControllers = ["memory", "cpu", "pids"]
    /// Every controller the driver knows how to use.
    public static let knownControllers = ["memory", "cpu", "cpuacct", "pids", "freezer"]
    /// Controllers read or used when they share a hierarchy with `used`.
    static let alsoWhenComounted = ["cpuacct", "freezer"]
    let used: [String]

    /// `controllers`: the hierarchies to create run cgroups in (a subset of
    /// `knownControllers`; the tests use all of them).
    public init(mounts: [String: String], parent: String = "levain", fs: any CgroupFileSystem = RealCgroupFileSystem(),
                controllers: [String] = CgroupV1Driver.defaultControllers) {
        self.mounts = mounts
        self.parent = parent
        self.fs = fs
        self.used = Self.knownControllers.filter(controllers.contains)
    }

    public var version: Int { 1 }

    public var controllers: [String] {
        let hierarchies = Set(self.hierarchies)
        return Self.knownControllers.filter { mounts[$0].map(hierarchies.contains) ?? false }
    }

    /// The distinct mount points of the used controllers, in `used` order.
    var hierarchies: [String] {
        var seen = Set<String>()
        return used.compactMap { mounts[$0] }.filter { seen.insert($0).inserted }
    }

    public func create(name: String, limits: CgroupLimits) throws(SystemError) -> RunCgroup {
        try Cgroupfs.validateComponent(name, what: "run")
        try Cgroupfs.validateComponent(parent, what: "parent")
        try limits.validate()
        for (controller, needed) in [("memory", limits.memoryBytes != nil), ("cpu", limits.cpus != nil),
                                     ("pids", limits.pidsMax != nil)] where needed && mounts[controller] == nil {
            throw SystemError(.cgroup, "cgroup v1 controller \(controller) is not mounted; cannot apply the \(controller) limit")
        }
        let mountPoints = hierarchies
        guard !mountPoints.isEmpty else {
            throw SystemError(.cgroup, "no cgroup v1 hierarchy with memory, cpu or pids is mounted")
        }

        var created: [String] = []
        var createdParents: [String] = []
        do throws(SystemError) {
            for mount in mountPoints {
                let parentPath = Cgroupfs.join(mount, parent)
                do throws(SystemError) {
                    try fs.mkdir(parentPath)
                    createdParents.append(parentPath)
                } catch where error.errno == .fileExists {
                    guard fs.isDirectory(parentPath) else {
                        throw SystemError(.cgroup, "\(parentPath) exists and is not a cgroup directory")
                    }
                }
                let dir = Cgroupfs.join(parentPath, name)
                do throws(SystemError) {
                    try fs.mkdir(dir)
                } catch where error.errno == .fileExists {
                    throw SystemError(.cgroup, "cgroup \(dir) already exists; refusing to reuse a cgroup this run did not create",
                                      errno: error.errno)
                }
                created.append(dir)
            }
            try writeLimits(limits, name: name)
        } catch {
            for dir in created.reversed() { try? Cgroupfs.removeDirectory(dir, fs: fs, busyTimeoutMillis: 100) }
            // EBUSY when another run uses the parent by now: leave it.
            for dir in createdParents.reversed() { try? fs.rmdir(dir) }
            throw error
        }

        var dirs: [String: String] = [:]
        for controller in Self.knownControllers {
            if let mount = mounts[controller], mountPoints.contains(mount) { dirs[controller] = runPath(mount, name) }
        }
        let freezeState = dirs["freezer"].map { Cgroupfs.join($0, "freezer.state") }
        return RunCgroup(
            version: 1, paths: created, killPath: nil,
            freezePath: freezeState.flatMap { fs.exists($0) ? $0 : nil },
            accounting: .v1(dirs), fs: fs)
    }

    public func paths(of name: String) -> [String] { hierarchies.map { runPath($0, name) } }

    public var parentDirectories: [String] { hierarchies.map { Cgroupfs.join($0, parent) } }

    private func runPath(_ mount: String, _ name: String) -> String {
        Cgroupfs.join(Cgroupfs.join(mount, parent), name)
    }

    private func writeLimits(_ limits: CgroupLimits, name: String) throws(SystemError) {
        if let mount = mounts["memory"] {
            let dir = runPath(mount, name)
            if let bytes = limits.memoryBytes {
                // memsw must never be below the memory limit, so memory first.
                try fs.writeText(Cgroupfs.join(dir, "memory.limit_in_bytes"), String(bytes))
                let memsw = Cgroupfs.join(dir, "memory.memsw.limit_in_bytes")
                if limits.swapOff, fs.exists(memsw) {
                    try fs.writeText(memsw, String(bytes))
                }
            }
            if limits.swapOff {
                // Absent or refused on some kernels; the memsw limit is what counts.
                try? fs.writeText(Cgroupfs.join(dir, "memory.swappiness"), "0")
            }
        }
        if let cpus = limits.cpus, let mount = mounts["cpu"] {
            let dir = runPath(mount, name)
            try fs.writeText(Cgroupfs.join(dir, "cpu.cfs_period_us"), String(CgroupLimits.cpuPeriodMicros))
            try fs.writeText(Cgroupfs.join(dir, "cpu.cfs_quota_us"), String(CgroupLimits.cpuQuotaMicros(cpus: cpus)))
        }
        if let pids = limits.pidsMax, let mount = mounts["pids"] {
            try fs.writeText(Cgroupfs.join(runPath(mount, name), "pids.max"), String(pids))
        }
    }

    /// memory.max_usage_in_bytes, memory.oom_control (oom_kill),
    /// memory.failcnt, pids.events (max), cpu.stat (nr_throttled,
    /// throttled_time in ns), cpuacct.usage_user/usage_sys (ns) or
    /// cpuacct.stat (USER_HZ) for user and system time.
    static func usage(dirs: [String: String], fs: any CgroupFileSystem) -> CgroupUsage {
        func read(_ controller: String, _ file: String) -> String? {
            guard let dir = dirs[controller] else { return nil }
            return try? fs.readText(Cgroupfs.join(dir, file))
        }
        var usage = CgroupUsage()
        if let text = read("memory", "memory.max_usage_in_bytes") {
            usage.peakMemoryBytes = Cgroupfs.singleValue(text)
        }
        if let text = read("memory", "memory.oom_control") {
            usage.oomKills = Cgroupfs.keyedValues(text)["oom_kill"].map(Cgroupfs.clampedInt) ?? 0
        }
        if let text = read("memory", "memory.failcnt") {
            usage.memoryLimitHits = Cgroupfs.singleValue(text).map(Cgroupfs.clampedInt) ?? 0
        }
        if let text = read("pids", "pids.events") {
            usage.pidsLimitHits = Cgroupfs.keyedValues(text)["max"].map(Cgroupfs.clampedInt) ?? 0
        }
        if let text = read("cpu", "cpu.stat") {
            let stat = Cgroupfs.keyedValues(text)
            usage.nrThrottled = stat["nr_throttled"].map(Cgroupfs.clampedInt)
            usage.cpuThrottledMicros = stat["throttled_time"].map { $0 / 1000 }
        }
        if let user = read("cpuacct", "cpuacct.usage_user").flatMap(Cgroupfs.singleValue),
           let system = read("cpuacct", "cpuacct.usage_sys").flatMap(Cgroupfs.singleValue) {
            usage.cpuUserMicros = user / 1000
            usage.cpuSystemMicros = system / 1000
        } else if let text = read("cpuacct", "cpuacct.stat") {
            // USER_HZ is 100 on every Linux ABI: one tick is 10 000 us.
            let stat = Cgroupfs.keyedValues(text)
            usage.cpuUserMicros = stat["user"].map { $0.multipliedReportingOverflow(by: 10_000).partialValue }
            usage.cpuSystemMicros = stat["system"].map { $0.multipliedReportingOverflow(by: 10_000).partialValue }
        }
        return usage
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Cgroups inside a run's cgroup: a session's cgroup holds one per run, so a
/// run's whole process tree can be killed (also what it forked off with
/// setsid) and accounted on its own, under the session's limits.
extension RunCgroup {
    /// Makes `<each path>/<name>`. On v2 the parent must have no processes of
    /// its own (the kernel's no-internal-processes rule): a session puts its
    /// init in a child too. The controllers the parent has are enabled in its
    /// cgroup.subtree_control first, once.
    public func makeChild(_ name: String) throws(SystemError) -> RunCgroup {
        try Cgroupfs.validateComponent(name, what: "child")
        var made: [String] = []
        do throws(SystemError) {
            if version == 2, let dir = paths.first {
                let available = CgroupV2Driver.words(try? fs.readText(Cgroupfs.join(dir, "cgroup.controllers")))
                let subtree = Cgroupfs.join(dir, "cgroup.subtree_control")
                let enabled = CgroupV2Driver.words(try? fs.readText(subtree))
                let toEnable = CgroupLayout.v2Controllers.filter { available.contains($0) && !enabled.contains($0) }
                if !toEnable.isEmpty {
                    try fs.writeText(subtree, toEnable.map { "+" + $0 }.joined(separator: " "))
                }
            }
            for path in paths {
                let child = Cgroupfs.join(path, name)
                do throws(SystemError) {
                    try fs.mkdir(child)
                } catch where error.errno == .fileExists {
                    throw SystemError(.cgroup, "cgroup \(child) already exists; refusing to reuse it", errno: error.errno)
                }
                made.append(child)
            }
        } catch {
            for dir in made.reversed() { try? Cgroupfs.removeDirectory(dir, fs: fs, busyTimeoutMillis: 100) }
            throw error
        }
        let childAccounting: Accounting
        switch accounting {
        case .v1(let dirs): childAccounting = .v1(dirs.mapValues { Cgroupfs.join($0, name) })
        case .v2(let dir): childAccounting = .v2(Cgroupfs.join(dir, name))
        }
        let kill = killPath.map { _ in Cgroupfs.join(made[0], "cgroup.kill") }
        let freeze: String?
        if let f = freezePath, let base = f.split(separator: "/").last {
            // The same freezer file (freezer.state or cgroup.freeze), one level down.
            freeze = Cgroupfs.join(Cgroupfs.join(Cgroupfs.parent(of: f), name), String(base))
        } else {
            freeze = nil
        }
        return RunCgroup(version: version, paths: made, killPath: kill, freezePath: freeze,
                         accounting: childAccounting, fs: fs, sendSignal: sendSignal)
    }

    /// Fds the jail's process writes "0" to, to move itself in: v1, the
    /// `tasks` file of each hierarchy (moving one's own thread is cheap);
    /// v2, `cgroup.procs` (which costs an RCU grace period per move: on v2 a
    /// run's first process pays it once, before its exec). Opened
    /// O_WRONLY|O_CLOEXEC; the caller closes them.
    public func placementFileDescriptors() throws(SystemError) -> [Int32] {
        version == 1 ? try selfMigrationFileDescriptors() : try procsFileDescriptors()
    }
}


import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The cgroup v2 path on a real kernel. This machine's controllers are all
/// on v1, but its unified hierarchy (/sys/fs/cgroup/unified, a cgroup2 mount
/// with no controllers) still has cgroup.procs, cgroup.kill, cgroup.events
/// and CLONE_INTO_CGROUP: runs without limits exercise placement, the kill
/// and the removal there. On a pure-v2 host the same tests use
/// /sys/fs/cgroup itself.
let cgroupV2Root: String? = {
    for path in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        var st = statvfs()
        if FileManager.default.fileExists(atPath: path + "/cgroup.procs"),
           FileManager.default.fileExists(atPath: path + "/cgroup.subtree_control"),
           statvfs(path, &st) == 0 {
            return path
        }
    }
    return nil
}()

@Suite(.serialized, .enabled(if: runningAsRoot && cgroupV2Root != nil, "needs root and a cgroup2 mount"))
struct CgroupV2JailTests {
    var env: [String: String] {
        var e = ProcessInfo.processInfo.environment
        e["LEVAIN_CGROUP_V2_ROOT"] = cgroupV2Root!
        return e
    }

    let noLimits = ["--memory", "off", "--cpus", "off", "--pids", "off"]

    @Test func placedByClone3AndRemovedAfter() throws {
        let r = try jail(["/bin/sh", "-c", "cat /proc/self/cgroup"], noLimits, environment: env)
        #expect(r.status == 0, "\(r)")
        #expect(r.reportValue("isolation.cgroup.version") as? Int == 2)
        let paths = r.reportValue("isolation.cgroup.paths") as? [String] ?? []
        #expect(paths.count == 1 && paths[0].hasPrefix(cgroupV2Root! + "/levain/r-"), "\(paths)")
        // The cgroup namespace's root is the run's cgroup.
        #expect(r.stdout.contains("0::/\n"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: paths.first ?? "/nonexistent"), "removed after the run")
    }

    @Test func forkingTreeIsKilledAtTimeout() throws {
        let marker = "4545.\(getpid())05"
        let r = try jail(["/bin/sh", "-c", "while :; do (sleep \(marker) &); done"], noLimits + ["--timeout", "1"], environment: env)
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(jailProcesses(containing: marker).isEmpty)
        let paths = r.reportValue("isolation.cgroup.paths") as? [String] ?? []
        #expect(!paths.isEmpty && paths.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
    }

    @Test func limitsWithoutDelegatedControllersAreRefused() throws {
        // The unified mount of a hybrid host delegates no controller: asking
        // for a memory limit there must fail, not run unlimited.
        guard cgroupV2Root == "/sys/fs/cgroup/unified" else { return }
        let r = try jail(["/bin/true"], ["--memory", "64M"], environment: env)
        #expect(r.status == 125, "\(r)")
        #expect(r.stderr.contains("not delegated"), "\(r)")
        let control = try jail(["/bin/true"], noLimits, environment: env)
        #expect(control.status == 0, "\(control)")
    }
}

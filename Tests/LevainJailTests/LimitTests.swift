import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Limits measured, not assumed, and the jail's whole process tree ending
/// with it. Serialized: the CPU figures should not share the machine with
/// the other tests of this suite.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root and a real kernel"))
struct LimitTests {
    func py(_ code: String, _ options: [String] = [], timeout: Double = 120) throws -> CommandResult {
        try jail(["python3", "-c", code], options, timeout: timeout)
    }

    @Test func memoryBombEndsWithTheOOMFlag() throws {
        let r = try py("b = []\nwhile True: b.append(bytearray(8 << 20))", ["--memory", "64M"])
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(r.limitsHit.contains("memory"), "\(r.report ?? [:])")
        #expect((r.reportValue("limits.oom_kills") as? Int ?? 0) >= 1)
        let peak = r.reportValue("memory.peak_bytes") as? Int ?? 0
        #expect(peak > 32 << 20 && peak <= 64 << 20, "peak \(peak) is near the 64M limit, not above")
        // Control: the same program, bounded, fits.
        let control = try py("b = [bytearray(8 << 20) for _ in range(3)]; print('ok')", ["--memory", "64M"])
        #expect(control.status == 0 && control.stdout == "ok\n", "\(control)")
        #expect(control.limitsHit.isEmpty)
    }

    @Test func forkBombIsHeldByThePidsLimit() throws {
        // A real bomb: every process forks forever. It cannot end by itself
        // while the limit holds, so the wall timeout ends it.
        let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
        let r = try py(bomb, ["--pids", "32", "--timeout", "3"])
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(r.limitsHit.contains("pids"), "\(r.report ?? [:])")
        #expect(r.limitsHit.contains("timeout"))
        #expect((r.reportValue("limits.pids_limit_hits") as? Int ?? 0) > 0)
        let id = try #require(r.reportValue("id") as? String)
        #expect(cgroupDirectories(ofRun: id).isEmpty, "the run's cgroups are gone")
        // A bounded fork loop under the same limit ends by itself and says how far it got.
        let bounded = try py("""
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError as e:
            print(n, e.errno)
        """, ["--pids", "32"])
        let parts = bounded.stdout.split(separator: " ")
        #expect(bounded.status == 0, "\(bounded)")
        #expect(parts.count == 2 && parts[1].hasPrefix("\(EAGAIN)"), "\(bounded)")
        #expect((Int(parts[0]) ?? 99) < 32, "\(bounded)")
        // Control: ten processes fit easily.
        let control = try jail(["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true & done; wait; echo ok"], ["--pids", "32"])
        #expect(control.stdout == "ok\n", "\(control)")
        #expect(control.limitsHit.isEmpty)
    }

    @Test func halfACPUIsAtMostHalfACore() throws {
        // Two busy threads for 3 s of wall time under --cpus 0.5.
        let busy = "import threading, time\nend = time.time() + 3\ndef spin():\n    while time.time() < end: pass\nts = [threading.Thread(target=spin) for _ in range(2)]\n[t.start() for t in ts]\n[t.join() for t in ts]\nprint('done')"
        let r = try py(busy, ["--cpus", "0.5"])
        #expect(r.status == 0, "\(r)")
        let user = r.reportValue("cpu.user_ms") as? Double ?? 0
        let system = r.reportValue("cpu.system_ms") as? Double ?? 0
        let wall = r.reportValue("wall_time_ms") as? Double ?? 1
        let ratio = (user + system) / wall
        // Upper bound: the quota. (A little above 0.5 is allowed for the
        // CFS period granularity at the start and end of the run.)
        #expect(ratio <= 0.6, "cpu/wall = \(ratio) (user \(user) ms, system \(system) ms, wall \(wall) ms)")
        // The control part of the same measurement: it did burn CPU, about
        // as much as the quota lets it.
        #expect(ratio >= 0.3, "the busy loop ran: cpu/wall = \(ratio)")
        #expect((r.reportValue("limits.cpu_throttled_ms") as? Double ?? 0) > 0, "CFS throttled it")
    }

    @Test func cpuTimeLimitSendsSIGXCPU() throws {
        let r = try py("while True: pass", ["--cpu-time", "1", "--timeout", "20"])
        #expect(r.status == 128 + SIGXCPU, "\(r)")
        #expect(r.limitsHit.contains("cpu_time"), "\(r.report ?? [:])")
        let control = try py("sum(range(10**5)); print('ok')", ["--cpu-time", "1"])
        #expect(control.stdout == "ok\n" && control.limitsHit.isEmpty, "\(control)")
    }

    @Test func wallTimeoutKillsTheJail() throws {
        let r = try jail(["/bin/sleep", "60"], ["--timeout", "1"])
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(r.limitsHit == ["timeout"], "\(r.report ?? [:])")
        #expect(r.stderr.contains("wall-clock timeout"), "\(r)")
        let wall = r.reportValue("wall_time_ms") as? Double ?? 0
        #expect(wall >= 1000 && wall < 30_000, "\(wall)")
        let control = try jail(["/bin/sleep", "0.1"], ["--timeout", "10"])
        #expect(control.status == 0 && control.limitsHit.isEmpty, "\(control)")
    }

    @Test func processesForkingDuringTheKillAllDie() throws {
        let marker = "4242.\(getpid())01"
        // Every iteration leaves a sleeper behind and forks again, while the
        // timeout kills the jail.
        let r = try jail(["/bin/sh", "-c", "while :; do (sleep \(marker) &); done"], ["--timeout", "2", "--pids", "2000"])
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(jailProcesses(containing: marker).isEmpty, "\(jailProcesses(containing: marker))")
        let id = try #require(r.reportValue("id") as? String)
        #expect(cgroupDirectories(ofRun: id).isEmpty)
        let control = try jail(["/bin/sh", "-c", "(sleep 0.1 &); echo ok"])
        #expect(control.stdout == "ok\n")
    }

    @Test func stoppedProcessesAtKillTimeDie() throws {
        let marker = "4343.\(getpid())02"
        let r = try jail(["/bin/sh", "-c", "sleep \(marker) & kill -STOP $!; sh -c 'kill -STOP $$'; sleep \(marker)"], ["--timeout", "2"])
        #expect(r.status == 128 + SIGKILL, "\(r)")
        #expect(jailProcesses(containing: marker).isEmpty, "\(jailProcesses(containing: marker))")
        let id = try #require(r.reportValue("id") as? String)
        #expect(cgroupDirectories(ofRun: id).isEmpty)
        let control = try jail(["/bin/sh", "-c", "sleep 5 & kill -STOP $!; kill -CONT $!; kill $!; echo ok"])
        #expect(control.stdout == "ok\n", "\(control)")
    }

    @Test func killMinus9OfLevainLeavesNothingBehind() throws {
        let marker = "4444.\(getpid())03"
        let state = "\(testState)/kill9-\(getpid())"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: levainBinary)
        p.arguments = ["run", "--state", state, "--", "/bin/sh", "-c", "sleep \(marker) & sleep \(marker) & (sleep \(marker) &); touch /workspace/started; wait"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until the jail runs: its sleepers are up (the workspace is an
        // image, `<run>.img`, whose files the host does not see).
        var runID: String?
        let started = eventually(within: 20) {
            guard let ws = try? FileManager.default.contentsOfDirectory(atPath: state + "/workspaces"),
                  let image = ws.first(where: { $0.hasSuffix(".img") }) else { return false }
            runID = String(image.dropLast(4))
            return jailProcesses(containing: marker).count >= 3
        }
        try #require(started, "the jail started")
        let id = try #require(runID)
        let image = "\(state)/workspaces/\(id).img"
        #expect(loopDevices(attachedTo: image).count == 1, "the jail's mount holds one loop device: \(loopDevices(attachedTo: image))")
        #expect(jailProcesses(containing: marker).count >= 3, "the sleepers and their shell: \(jailProcesses(containing: marker))")
        #expect(!cgroupDirectories(ofRun: id).isEmpty, "the run has its cgroups")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        // No jail process may remain, and the sentinel removes the cgroups.
        #expect(eventually(within: 5) { jailProcesses(containing: marker).isEmpty }, "\(jailProcesses(containing: marker))")
        #expect(eventually(within: 10) { cgroupDirectories(ofRun: id).isEmpty }, "\(cgroupDirectories(ofRun: id))")
        // The workspace survives, and no loop device or mount keeps its image.
        #expect(workspaceImageFile(image, "/started") == "")
        #expect(eventually(within: 10) { loopDevices(attachedTo: image).isEmpty }, "\(loopDevices(attachedTo: image))")
    }
}

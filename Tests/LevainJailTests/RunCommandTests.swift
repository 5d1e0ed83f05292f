import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `levain run` as a command-line tool: streams, exit statuses, bad input,
/// the report, the workspace.
@Suite(.enabled(if: runningAsRoot, "needs root and a real kernel"))
struct RunCommandTests {
    @Test func exitStatusesPassThrough() throws {
        #expect(try jail(["/bin/sh", "-c", "exit 42"]).status == 42)
        #expect(try jail(["/bin/true"]).status == 0)
        let sig = try jail(["/bin/sh", "-c", "kill -TERM $$"])
        #expect(sig.status == 128 + SIGTERM, "\(sig)")
        #expect(sig.reportValue("exit.signal_name") as? String == "SIGTERM")
    }

    @Test func commandNotFoundIs127() throws {
        let r = try jail(["no-such-command-here"])
        #expect(r.status == 127, "\(r)")
        #expect(r.stderr.contains("cannot execute no-such-command-here"), "\(r)")
        #expect(r.reportValue("error") as? String != nil)
        let abs = try jail(["/usr/bin/definitely-missing"])
        #expect(abs.status == 127, "\(abs)")
    }

    @Test func notExecutableIs126() throws {
        let r = try jail(["/etc/passwd"])
        #expect(r.status == 126, "\(r)")
        #expect(r.stderr.contains("Permission denied"), "\(r)")
    }

    @Test func stdioPassesThrough() throws {
        let r = try jail(["/bin/sh", "-c", "tr a-z A-Z; echo to-stderr >&2"], stdin: "hello jail\n")
        #expect(r.stdout == "HELLO JAIL\n", "\(r)")
        #expect(r.stderr == "to-stderr\n", "\(r)")
    }

    @Test(arguments: [
        (["--policy", "no-such-policy"], "no such policy"),
        (["--ro", "/no/such/dir"], "does not exist"),
        (["--rw", "relative/../x:/x"], "must not contain '..'"),
        (["--memory", "64Q"], "invalid size"),
        (["--cpus", "lots"], "expected a number of cores"),
        (["--pids", "0"], "1 or more"),
        (["--timeout", "soon"], "expected seconds"),
        (["--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["--cwd", "relative"], "absolute path"),
        (["--ro", "/usr:/proc/x"], "/proc belongs to the jail"),
    ])
    func badInputIs125WithAClearMessage(_ options: [String], _ fragment: String) throws {
        let r = try jail(["/bin/true"], options)
        #expect(r.status == 125, "\(options): \(r)")
        #expect(r.stderr.contains(fragment), "\(options): \(r.stderr)")
        #expect(r.stderr.hasPrefix("levain: "), "\(r.stderr)")
    }

    @Test func missingCwdInTheJailIs125() throws {
        let r = try jail(["/bin/true"], ["--cwd", "/no/such/dir"])
        #expect(r.status == 125, "\(r)")
        #expect(r.stderr.contains("working directory"), "\(r)")
    }

    @Test func noCommandIsAUsageError() throws {
        let r = try levain(["run", "--state", testState])
        #expect(r.status == 125, "\(r)")
        #expect(r.stderr.contains("no command given"), "\(r)")
    }

    @Test func helpTeaches() throws {
        let r = try levain(["run", "--help"])
        #expect(r.status == 0)
        for option in ["--policy", "--ro", "--rw", "--memory", "--cpus", "--pids", "--timeout", "--env", "--cwd", "--json-report", "Examples:"] {
            #expect(r.stdout.contains(option), "help mentions \(option)")
        }
    }

    @Test func reportDescribesTheRunAndItsIsolation() throws {
        let r = try jail(["/bin/sh", "-c", "echo hi > /workspace/out.txt"], ["--memory", "128M", "--cpus", "0.5", "--pids", "50"])
        #expect(r.status == 0, "\(r)")
        let report = try #require(r.report)
        #expect((report["id"] as? String)?.hasPrefix("r-") == true)
        #expect(r.reportValue("exit.code") as? Int == 0)
        #expect(r.reportValue("exit.status") as? Int == 0)
        #expect((r.reportValue("wall_time_ms") as? Double ?? 0) > 0)
        #expect(r.reportValue("cpu.user_ms") != nil && r.reportValue("cpu.system_ms") != nil)
        #expect((r.reportValue("memory.peak_bytes") as? Int ?? 0) > 0)
        #expect(r.reportValue("limits.memory_bytes") as? Int == 128 << 20)
        #expect(r.reportValue("limits.cpus") as? Double == 0.5)
        #expect(r.reportValue("limits.pids") as? Int == 50)
        #expect(r.reportValue("limits.hit") as? Bool == false)
        #expect(r.reportValue("isolation.namespaces") as? [String] == ["user", "pid", "mount", "net", "uts", "ipc", "cgroup"])
        #expect(r.reportValue("isolation.capabilities") as? String == "none")
        #expect(r.reportValue("isolation.no_new_privs") as? Bool == true)
        #expect((r.reportValue("isolation.seccomp.allowed_syscalls") as? Int ?? 0) > 250)
        #expect(r.reportValue("isolation.seccomp.filters") as? Int == 2)
        #expect(r.reportValue("isolation.rootfs.read_only") as? Bool == true)
        #expect(r.reportValue("isolation.cgroup.version") as? Int != nil)
        // The workspace survives the run: an image of the policy's
        // workspace_size (1G), the file in it owned by the jail user's host id.
        let ws = try #require(r.reportValue("workspace") as? String)
        #expect(ws.hasSuffix(".img"), "\(ws)")
        #expect(r.reportValue("limits.workspace_bytes") as? Int == 1 << 30)
        #expect(workspaceImageFile(ws, "/out.txt") == "hi\n")
        #expect(workspaceImageOwner(ws, "/out.txt") == jailHostIDBase + 1000)
        #expect(loopDevices(attachedTo: ws).isEmpty, "no loop device stays attached after the run")
    }

    @Test func workspaceSizeOffGivesAHostDirectory() throws {
        let r = try jail(["/bin/sh", "-c", "echo hi > /workspace/out.txt"], ["--workspace-size", "off"])
        #expect(r.status == 0, "\(r)")
        let ws = try #require(r.reportValue("workspace") as? String)
        #expect((try? String(contentsOfFile: ws + "/out.txt", encoding: .utf8)) == "hi\n")
        var st = stat()
        #expect(stat(ws + "/out.txt", &st) == 0 && st.st_uid == jailHostIDBase + 1000)
        #expect(r.reportValue("limits.workspace_bytes") == nil || r.reportValue("limits.workspace_bytes") is NSNull)
    }

    @Test func landlockIsAppliedWhereTheKernelHasIt() throws {
        let r = try jail(["/bin/true"])
        let abi = r.reportValue("isolation.landlock.abi") as? Int ?? 0
        let applied = r.reportValue("isolation.landlock.applied") as? Bool ?? false
        let doctor = try levain(["doctor"])
        if doctor.stdout.contains("landlock          ABI") {
            #expect(applied && abi > 0, "\(r.report ?? [:])")
        } else {
            #expect(!applied)
        }
    }

    @Test func rwBindIsWritableAndRoBindIsNot() throws {
        let dir = "/tmp/levain-tests/binds-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chown(dir, jailHostIDBase + 1000, jailHostIDBase + 1000)
        let rw = try jail(["/bin/sh", "-c", "echo written > /out/f && cat /out/f"], ["--rw", "\(dir):/out"])
        #expect(rw.stdout == "written\n", "\(rw)")
        let ro = try jail(["/bin/sh", "-c", "{ echo x > /out/g; } 2>&1; cat /out/f"], ["--ro", "\(dir):/out"])
        #expect(ro.stdout.contains("Read-only file system") && ro.stdout.contains("written"), "\(ro)")
    }

    @Test("an --rw directory the jail's user cannot write is refused before the run, naming the uid")
    func rwBindTheJailCannotWrite() throws {
        let dir = "/tmp/levain-tests/rw-root-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        let refused = try jail(["/bin/sh", "-c", "echo ran"], ["--rw", "\(dir):/out"])
        #expect(refused.status == 125, "\(refused)")
        #expect(refused.stdout.isEmpty, "\(refused)")
        #expect(refused.stderr.contains("0x700003E8") && refused.stderr.contains("chown"), "\(refused)")
        // Control: writable for others, the same bind runs and writes.
        chmod(dir, 0o777)
        let ok = try jail(["/bin/sh", "-c", "echo ran > /out/f && cat /out/f"], ["--rw", "\(dir):/out"])
        #expect(ok.stdout == "ran\n", "\(ok)")
    }

    @Test func doctorReportsTheMachine() throws {
        let r = try levain(["doctor"])
        #expect(r.status == 0, "\(r)")
        for line in ["user namespaces", "seccomp filter", "seccomp user-notification", "landlock", "cgroups", "pidfd", "clone3", "policy default: full isolation available"] {
            #expect(r.stdout.contains(line), "doctor prints \(line): \(r.stdout)")
        }
    }

    @Test func policyCheckAcceptsGoodAndNamesTheLineOfBad() throws {
        let good = try levain(["policy", "check", packageRoot + "/policies/default.toml", "strict"])
        #expect(good.status == 0, "\(good)")
        #expect(good.stdout.contains("ok — policy \"default\""))
        let file = "/tmp/levain-tests/bad-\(getpid()).toml"
        try "[policy]\nname = \"bad\"\n\n[limits]\nmemory = \"64Q\"\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let bad = try levain(["policy", "check", file])
        #expect(bad.status == 1, "\(bad)")
        #expect(bad.stderr.contains("\(file):5: limits.memory: invalid size \"64Q\""), "\(bad)")
    }

    @Test func policyFileWithOCISeccompProfileRuns() throws {
        // A user's policy naming an OCI seccomp profile relative to itself:
        // everything allowed except uname, which gets EACCES.
        let dir = "/tmp/levain-tests/oci-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#
            .write(toFile: dir + "/profile.json", atomically: true, encoding: .utf8)
        let policy = try String(contentsOfFile: packageRoot + "/policies/default.toml", encoding: .utf8)
            .replacingOccurrences(of: "profile = \"default\"", with: "profile = \"profile.json\"")
        try policy.write(toFile: dir + "/p.toml", atomically: true, encoding: .utf8)
        let r = try jail(["/bin/uname"], ["--policy", dir + "/p.toml"])
        #expect(r.status != 0 && r.stderr.contains("Permission denied"), "\(r)")
        let control = try jail(["/bin/echo", "fine"], ["--policy", dir + "/p.toml"])
        #expect(control.stdout == "fine\n", "\(control)")
    }
}

/// Signals sent to `levain run` reach the command through the jail's init.
@Suite(.enabled(if: runningAsRoot, "needs root and a real kernel"))
struct SignalForwardingTests {
    /// Starts `levain run` with stdout to a file and waits until the command printed "ready".
    func start(_ script: String) throws -> (Process, String) {
        let out = "\(testState)/sig-\(UUID().uuidString).out"
        FileManager.default.createFile(atPath: out, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: levainBinary)
        p.arguments = ["run", "--state", testState, "--", "/bin/sh", "-c", script]
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = FileHandle.nullDevice
        try p.run()
        let ready = eventually(within: 20) {
            (try? String(contentsOfFile: out, encoding: .utf8))?.contains("ready") == true
        }
        if !ready { p.terminate() }
        try #require(ready, "the command started")
        return (p, out)
    }

    @Test func sigtermReachesTheCommand() throws {
        let (p, out) = try start("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
        defer { unlink(out) }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 3)
        #expect((try? String(contentsOfFile: out, encoding: .utf8))?.contains("got-term") == true)
    }

    @Test func secondInterruptKillsACommandThatIgnoresIt() throws {
        let marker = "4646.\(getpid())06"
        let (p, out) = try start("trap '' INT; echo ready; sleep \(marker)")
        defer { unlink(out) }
        kill(p.processIdentifier, SIGINT)
        usleep(200_000)
        #expect(p.isRunning, "the command ignores the first SIGINT")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGKILL)
        #expect(eventually(within: 5) { jailProcesses(containing: marker).isEmpty })
    }
}

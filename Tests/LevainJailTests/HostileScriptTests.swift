import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hostile-payload suite, part 2: sh and python3 payloads about what a
/// jail can see and reach, each with its benign control.
@Suite(.enabled(if: runningAsRoot, "needs root and a real kernel"))
struct HostileScriptTests {
    func sh(_ script: String, _ options: [String] = []) throws -> CommandResult {
        try jail(["/bin/sh", "-c", script], options)
    }

    func py(_ code: String, _ options: [String] = []) throws -> CommandResult {
        try jail(["python3", "-c", code], options)
    }

    func out(_ r: CommandResult) -> String { r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }

    // MARK: escaping the root

    @Test func procSelfRootIsTheJailRoot() throws {
        let r = try py("""
        import os
        names = set(os.listdir('/proc/self/root'))
        print('jail' if 'workspace' in names and not names & {'root', 'home', 'boot', 'var'} else 'HOST', os.readlink('/proc/self/root'))
        try:
            open('/proc/1/root/etc/passwd'); print('READ-INIT-ROOT')
        except OSError as e:
            print('init-root', e.errno)
        """)
        #expect(r.stdout.contains("jail /"), "\(r)")
        #expect(r.stdout.contains("init-root \(EACCES)"), "\(r)")
        let control = try py("print(open('/proc/self/root/etc/hostname').read().strip())")
        #expect(out(control) == "levain", "\(control)")
    }

    @Test func cwdCannotLeaveTheRoot() throws {
        let r = try sh("cd /workspace && cd ../../../../.. && pwd && ls")
        #expect(r.stdout.hasPrefix("/\n"), "\(r)")
        #expect(r.stdout.contains("workspace") && !r.stdout.contains("home"), "\(r)")
        let control = try sh("cd /workspace && pwd")
        #expect(out(control) == "/workspace")
    }

    @Test func inheritedHostFdIsClosed() throws {
        // levain run itself inherits fd 7 (the host's /etc/passwd): the jail must not.
        let r = try runCommand(["/bin/sh", "-c", "exec 7</etc/passwd; exec \(levainBinary) run --state \(testState) -- /bin/sh -c 'ls /proc/self/fd; cat <&7'"])
        #expect(!r.stdout.split(separator: "\n").contains("7"), "\(r)")
        #expect(r.stderr.contains("Bad file descriptor") || r.stderr.contains("bad file"), "\(r)")
        let control = try sh("ls /proc/self/fd")
        #expect(control.stdout.split(separator: "\n").contains("1"))
    }

    @Test func rootAndUsrAreReadOnly() throws {
        let r = try sh("{ touch /evil; touch /usr/bin/evil; touch /etc/evil; echo x > /etc/passwd; } 2>&1; true")
        #expect(r.stdout.components(separatedBy: "Read-only file system").count - 1 == 4, "\(r)")
        let control = try sh("touch /tmp/ok /workspace/ok && echo done")
        #expect(out(control) == "done", "\(control)")
    }

    // MARK: writable /proc and /sys knobs

    @Test func procSysIsReadOnly() throws {
        let r = try sh("{ echo evil > /proc/sys/kernel/hostname; echo 3 > /proc/sys/vm/drop_caches; } 2>&1; true")
        #expect(r.stdout.components(separatedBy: "Read-only file system").count - 1 == 2, "\(r)")
        let control = try sh("cat /proc/sys/kernel/hostname")
        #expect(out(control) == "levain")
    }

    @Test func dangerousProcEntriesAreMasked() throws {
        // The entries this kernel has (sysrq-trigger and kcore depend on its config).
        let present = ["/proc/sysrq-trigger", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/kallsyms",
                       "/proc/sched_debug", "/proc/latency_stats"].filter { FileManager.default.fileExists(atPath: $0) }
        try #require(present.count >= 2)
        let list = present.map { "'\($0)'" }.joined(separator: ", ")
        let r = try py("""
        import os, stat
        for p in [\(list)]:
            st = os.stat(p)
            print(p, 'masked' if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3 else 'OPEN')
        """)
        #expect(r.status == 0, "\(r)")
        #expect(!r.stdout.contains("OPEN"), "\(r)")
        #expect(r.stdout.components(separatedBy: "masked").count - 1 == present.count, "\(r)")
        let control = try sh("head -1 /proc/meminfo")
        #expect(control.stdout.hasPrefix("MemTotal"), "\(control)")
    }

    @Test func noSysfs() throws {
        let r = try sh("ls /sys 2>&1; cat /sys/kernel/uevent_helper 2>&1; true")
        #expect(r.stdout.contains("No such file or directory"), "\(r)")
        let control = try sh("ls -d /proc/self")
        #expect(out(control) == "/proc/self")
    }

    @Test func oomScoreCannotBeLowered() throws {
        // Lowering needs CAP_SYS_RESOURCE; raising does not.
        let write = "import sys\ntry:\n    with open('/proc/self/oom_score_adj', 'w') as f: f.write(sys.argv[1])\n    print('set', open('/proc/self/oom_score_adj').read().strip())\nexcept OSError as e:\n    print('denied', e.errno)"
        let r = try jail(["python3", "-c", write, "-1000"])
        #expect(out(r) == "denied \(EACCES)", "\(r)")
        let control = try jail(["python3", "-c", write, "900"])
        #expect(out(control) == "set 900", "\(control)")
    }

    @Test func onlyHarmlessDevices() throws {
        let r = try sh("ls /dev; for d in mem kmem port kmsg sda vda loop0 fuse net/tun; do [ -e /dev/$d ] && echo FOUND-$d; done; true")
        #expect(!r.stdout.contains("FOUND"), "\(r)")
        let names = Set(r.stdout.split(separator: "\n").map(String.init))
        #expect(names.isSubset(of: ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin", "stdout", "stderr"]), "\(names)")
        let control = try sh("echo x > /dev/null && head -c 4 /dev/urandom | wc -c")
        #expect(out(control) == "4", "\(control)")
    }

    // MARK: host files, processes, identity

    @Test func hostFilesAreInvisible() throws {
        let r = try sh("for p in /etc/shadow /root /home /var /boot /var/lib/levain \(testState) /sys/fs/cgroup; do [ -e $p ] && echo VISIBLE $p; done; echo end")
        #expect(out(r) == "end", "\(r)")
        let control = try sh("grep -c '^jail:' /etc/passwd")
        #expect(out(control) == "1", "\(control)")
    }

    @Test func hostProcessesAreInvisible() throws {
        let r = try py("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
        let pids = out(r).dropFirst().dropLast().split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(pids.count <= 3 && pids.allSatisfy { $0 < 10 }, "only the jail's own processes: \(r)")
        #expect(!pids.contains(Int(getpid())) || getpid() < 10)
        let control = try py("import os; print(os.path.exists('/proc/%d' % os.getpid()))")
        #expect(out(control) == "True")
    }

    @Test func runsAsUnprivilegedUserMappedToAnUnprivilegedHostId() throws {
        let r = try sh("id -u; id -g; cat /proc/self/uid_map")
        let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        #expect(lines.first == "1000", "\(r)")
        #expect(lines.count == 3 && lines[2] == "0 \(jailHostIDBase) 65536", "jail 0.. = host \(jailHostIDBase)..: \(r)")
        #expect(r.reportValue("isolation.user.host_uid") as? Int == Int(jailHostIDBase) + 1000)
        let control = try sh("touch /workspace/f && stat -c %u /workspace/f")
        #expect(out(control) == "1000")
    }

    @Test func setuidBinariesGainNothing() throws {
        // /usr/bin/mount is setuid root on the host; in the jail it is
        // mounted nosuid, runs under no_new_privs, and stays uid 1000.
        try #require(FileManager.default.fileExists(atPath: "/usr/bin/mount"))
        let r = try sh("/usr/bin/mount -t tmpfs none /tmp 2>&1; echo status=$?")
        #expect(r.stdout.contains("must be superuser") || r.stdout.contains("permission denied") || r.stdout.contains("Operation not permitted"), "\(r)")
        #expect(!r.stdout.contains("status=0"), "\(r)")
        let control = try sh("/usr/bin/mount | grep -c ' /workspace '")
        #expect(out(control) == "1", "\(control)")
    }

    @Test func noControllingTerminal() throws {
        let r = try py("""
        import os
        try:
            os.open('/dev/tty', os.O_RDWR); print('HAS-TTY')
        except OSError as e:
            print('tty', e.errno)
        print('sid-leader' if os.getsid(0) != os.getsid(1) or True else '')
        """)
        #expect(r.stdout.contains("tty \(ENXIO)"), "\(r)")
        let control = try py("import os; fd = os.open('/dev/null', os.O_RDWR); print('ok')")
        #expect(out(control) == "ok")
    }

    // MARK: network

    @Test func noRouteOut() throws {
        let r = try py("""
        import socket
        for host in ['1.1.1.1', '10.0.2.2', '169.254.169.254']:
            try:
                socket.create_connection((host, 80), timeout=2); print('CONNECTED', host)
            except OSError as e:
                print(host, e.errno)
        """)
        #expect(r.stdout.contains("1.1.1.1 \(ENETUNREACH)"), "\(r)")
        #expect(r.stdout.contains("169.254.169.254 \(ENETUNREACH)"), "\(r)")
        #expect(!r.stdout.contains("CONNECTED"))
        let control = try py("""
        import socket, threading
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
        c = socket.create_connection(s.getsockname()); a, _ = s.accept(); a.sendall(b'hi'); print(c.recv(2).decode())
        """)
        #expect(out(control) == "hi", "\(control)")
    }

    @Test func hostLoopbackServiceIsUnreachable() throws {
        // A TCP service on the host's loopback.
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(server) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, len) } }
        listen(server, 8)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &len) } }
        let port = UInt16(bigEndian: addr.sin_port)
        let r = try py("""
        import socket
        try:
            socket.create_connection(('127.0.0.1', \(port)), timeout=2); print('CONNECTED')
        except OSError as e:
            print('refused', e.errno)
        """)
        #expect(out(r) == "refused \(ECONNREFUSED)", "\(r)")
        let control = try py("""
        import socket
        s = socket.socket(); s.bind(('127.0.0.1', \(port))); s.listen()
        socket.create_connection(('127.0.0.1', \(port))); print('own loopback ok')
        """)
        #expect(out(control) == "own loopback ok", "\(control)")
    }

    @Test func hostAbstractUnixSocketIsUnreachable() throws {
        let name = "levain-test-\(getpid())"
        let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(server) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw[0] = 0
            for (i, b) in bytes.enumerated() { raw[i + 1] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, len) } }
        try #require(bound == 0)
        listen(server, 8)
        let r = try py("""
        import socket
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect('\\0\(name)'); print('CONNECTED')
        except OSError as e:
            print('refused', e.errno)
        """)
        #expect(out(r) == "refused \(ECONNREFUSED)", "\(r)")
        let control = try py("""
        import socket
        srv = socket.socket(socket.AF_UNIX); srv.bind('\\0\(name)'); srv.listen()
        c = socket.socket(socket.AF_UNIX); c.connect('\\0\(name)'); print('own abstract ok')
        """)
        #expect(out(control) == "own abstract ok", "\(control)")
    }

    @Test func strictPolicyHasNoNetworkAtAll() throws {
        let r = try py("""
        import socket
        try:
            socket.create_connection(('127.0.0.1', 9), timeout=2); print('CONNECTED')
        except OSError as e:
            print('loopback', e.errno)
        """, ["--policy", "strict"])
        #expect(out(r) == "loopback \(ENETUNREACH)", "lo is down under strict: \(r)")
        #expect(r.reportValue("isolation.network") as? String == "none")
        let control = try py("""
        import socket
        try:
            socket.create_connection(('127.0.0.1', 9), timeout=2)
        except OSError as e:
            print('loopback', e.errno)
        """)
        #expect(out(control) == "loopback \(ECONNREFUSED)", "lo is up under default: \(control)")
    }

    // MARK: symlinks planted in bind sources

    @Test func symlinkPlantedInABindSourceResolvesInsideTheJail() throws {
        let dir = "/tmp/levain-tests/planted-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "data\n".write(toFile: dir + "/file", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/abs", withDestinationPath: "/etc/shadow")
        try FileManager.default.createSymbolicLink(atPath: dir + "/rel", withDestinationPath: "../../../../../../etc/shadow")
        try FileManager.default.createSymbolicLink(atPath: dir + "/root", withDestinationPath: "/")
        let r = try sh("cat /data/abs 2>&1; cat /data/rel 2>&1; ls /data/root/", ["--ro", "\(dir):/data"])
        #expect(r.stdout.components(separatedBy: "No such file or directory").count - 1 == 2, "\(r)")
        #expect(r.stdout.contains("workspace"), "/data/root is the jail's root: \(r)")
        #expect(!r.stdout.contains("root:"), "no shadow content: \(r)")
        let control = try sh("cat /data/file", ["--ro", "\(dir):/data"])
        #expect(out(control) == "data")
    }

    @Test func untrustedSymlinkAsBindSourceIsRefused() throws {
        // A symlink in world-writable /tmp could have been planted by anyone.
        let link = "/tmp/levain-evil-\(getpid())"
        unlink(link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/root")
        defer { unlink(link) }
        let r = try sh("ls /x", ["--ro", "\(link):/x"])
        #expect(r.status == 125, "\(r)")
        #expect(r.stderr.contains("could have planted"), "\(r)")
        // A symlink the jail planted in its workspace, offered back as a bind source.
        // (A host directory: with an image the jail's files are not on the host.)
        let first = try sh("ln -s /etc /workspace/esc && echo planted", ["--workspace-size", "off"])
        let ws = try #require(first.reportValue("workspace") as? String)
        let second = try sh("ls /x", ["--rw", "\(ws)/esc:/x"])
        #expect(second.status == 125, "\(second)")
        #expect(second.stderr.contains("uid \(jailHostIDBase + 1000)"), "\(second)")
        let control = try sh("ls -d /x", ["--ro", "/usr/share:/x"])
        #expect(out(control) == "/x", "\(control)")
    }

    // MARK: disk and fds

    @Test func diskFillingHitsTheTmpfsCap() throws {
        let r = try sh("head -c 300M /dev/zero > /tmp/big; echo status=$?; du -m /tmp/big | cut -f1", ["--file-size", "1G"])
        #expect(r.stderr.contains("No space left on device"), "\(r)")
        let mb = Int(r.stdout.split(separator: "\n").last ?? "") ?? 0
        #expect(mb <= 256, "capped at the policy's 256M: \(r)")
        let control = try sh("head -c 1M /dev/zero > /tmp/small && echo ok")
        #expect(out(control) == "ok")
    }

    @Test func fileSizeLimitKillsTheWriter() throws {
        // head is the jail's command itself (exec), so the init sees how it died.
        let r = try sh("exec head -c 4M /dev/zero > /workspace/big", ["--file-size", "1M"])
        #expect(r.status == 128 + SIGXFSZ, "head died of SIGXFSZ: \(r)")
        #expect(r.limitsHit.contains("file_size"), "\(r.report ?? [:])")
        let control = try sh("head -c 512K /dev/zero > /workspace/ok && echo ok", ["--file-size", "1M"])
        #expect(out(control) == "ok")
        #expect(control.limitsHit.isEmpty)
    }

    @Test func fdExhaustionStopsAtTheLimit() throws {
        let r = try py("""
        import os
        fds = []
        try:
            while True: fds.append(os.open('/dev/null', os.O_RDONLY))
        except OSError as e:
            print(len(fds), e.errno)
        """)
        let parts = out(r).split(separator: " ")
        #expect(parts.count == 2 && parts[1] == "\(EMFILE)", "\(r)")
        #expect((Int(parts.first ?? "") ?? 0) < 1024, "open_files = 1024: \(r)")
        let control = try py("import os; print(len([os.open('/dev/null', os.O_RDONLY) for _ in range(10)]))")
        #expect(out(control) == "10")
    }

    // MARK: environment

    @Test func callerEnvironmentDoesNotLeak() throws {
        var env = ProcessInfo.processInfo.environment
        env["LEVAIN_SECRET_TOKEN"] = "hunter2"
        env["TERM"] = "xterm-test"
        let reportPath = "\(testState)/env-\(getpid()).json"
        defer { unlink(reportPath) }
        let r = try runCommand([levainBinary, "run", "--state", testState, "--env", "GIVEN=yes", "--", "/usr/bin/env"], environment: env)
        #expect(!r.stdout.contains("hunter2"), "\(r)")
        #expect(r.stdout.contains("GIVEN=yes"))
        #expect(r.stdout.contains("TERM=xterm-test"), "the default policy passes TERM")
        #expect(r.stdout.contains("HOME=/workspace"))
        let procEnv = try runCommand([levainBinary, "run", "--state", testState, "--", "/bin/sh", "-c", "cat /proc/1/environ /proc/self/environ 2>&1 | tr '\\0' '\\n'"], environment: env)
        #expect(!procEnv.stdout.contains("hunter2"), "\(procEnv)")
    }
}

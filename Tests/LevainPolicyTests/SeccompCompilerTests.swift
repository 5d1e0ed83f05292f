import Testing
@testable import LevainPolicy
#if canImport(Glibc)
import Glibc
#endif

/// What the default profile denies, and with which errno, checked by running
/// the compiled BPF in the simulator (the kernel's rules for stacked filters
/// included). The jail tests check the same things for real.
@Suite struct SeccompCompilerTests {
    static let compiled: CompiledSeccomp = {
        let profile = try! SeccompProfile.load("default")
        return try! SeccompCompiler.compile(profile, file: "default")
    }()

    func eval(_ name: String, _ args: [UInt64] = [], arch: UInt32 = SeccompSimulator.x86_64) throws -> SeccompAction {
        let nr = try #require(SeccompCompiler.syscallNumber(name), "libseccomp knows \(name)")
        return SeccompSimulator(programs: Self.compiled.programs).evaluate(nr: nr, arch: arch, args: args)
    }

    @Test func defaultProfileCompilesWithoutUnknownNames() {
        #expect(Self.compiled.unknownNames.isEmpty)
        #expect(Self.compiled.allowedSyscalls > 250)
        #expect(Self.compiled.programs.count == 2, "an allow layer and an argument-denial layer")
        #expect(Self.compiled.defaultAction == .errno(UInt16(ENOSYS)))
        #expect(Self.compiled.architectures == ["SCMP_ARCH_X86_64"])
    }

    @Test(arguments: ["read", "write", "openat", "execve", "mmap", "exit_group", "wait4", "rt_sigaction",
                      "getdents64", "statx", "futex", "pipe2", "dup3", "connect", "bind", "sendto", "landlock_create_ruleset"])
    func everydaySyscallsAreAllowed(_ name: String) throws {
        #expect(try eval(name) == .allow)
    }

    @Test(arguments: ["mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount",
                      "fsopen", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
                      "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup",
                      "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
                      "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "reboot",
                      "swapon", "sethostname", "setdomainname", "syslog", "acct", "iopl", "ioperm",
                      "settimeofday", "clock_settime", "pidfd_getfd", "kcmp"])
    func dangerousSyscallsGetEPERM(_ name: String) throws {
        #expect(try eval(name) == .errno(UInt16(EPERM)), "\(name)")
    }

    @Test func clone3IsENOSYSSoLibcFallsBack() throws {
        #expect(try eval("clone3") == .errno(UInt16(ENOSYS)))
    }

    @Test func unknownSyscallNumbersAreENOSYS() {
        let sim = SeccompSimulator(programs: Self.compiled.programs)
        #expect(sim.evaluate(nr: 1000) == .errno(UInt16(ENOSYS)))
    }

    @Test func cloneWithNamespaceFlagsIsDenied() throws {
        let threadFlags: UInt64 = 0x3d0f00  // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
        #expect(try eval("clone", [threadFlags]) == .allow)
        #expect(try eval("clone", [UInt64(SIGCHLD)]) == .allow)
        for flag: UInt64 in [0x0002_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x0200_0000] {
            #expect(try eval("clone", [UInt64(SIGCHLD) | flag]) == .errno(UInt16(EPERM)), "flag \(flag)")
        }
    }

    @Test func socketFamilies() throws {
        #expect(try eval("socket", [1, 1, 0]) == .allow)            // AF_UNIX
        #expect(try eval("socket", [2, 1, 0]) == .allow)            // AF_INET
        #expect(try eval("socket", [10, 2, 0]) == .allow)           // AF_INET6
        #expect(try eval("socket", [16, 3, 0]) == .allow)           // AF_NETLINK, NETLINK_ROUTE
        #expect(try eval("socket", [16, 3, 9]) == .errno(UInt16(EPROTONOSUPPORT)))  // NETLINK_AUDIT
        for family: UInt64 in [17, 38, 40, 15, 31, 5, 44, 45, 46, 1000] {  // packet, alg, vsock, key, bluetooth, ...
            #expect(try eval("socket", [family, 3, 0]) == .errno(UInt16(EAFNOSUPPORT)), "family \(family)")
        }
        #expect(try eval("socketpair", [1, 1, 0]) == .allow)
        #expect(try eval("socketpair", [2, 1, 0]) == .errno(UInt16(EAFNOSUPPORT)))
    }

    @Test func terminalInjectionIoctlsAreDeniedOnTheLow32Bits() throws {
        #expect(try eval("ioctl", [0, 0x5401]) == .allow)  // TCGETS
        #expect(try eval("ioctl", [0, 0x5412]) == .errno(UInt16(EPERM)))  // TIOCSTI
        #expect(try eval("ioctl", [0, 0x1_0000_5412]) == .errno(UInt16(EPERM)), "high bits must not bypass")
        #expect(try eval("ioctl", [0, 0x541C]) == .errno(UInt16(EPERM)))  // TIOCLINUX
        #expect(try eval("ioctl", [0, 0xffff_ffff_0000_541C]) == .errno(UInt16(EPERM)))
    }

    @Test func foreignABIsAreKilled() {
        let sim = SeccompSimulator(programs: Self.compiled.programs)
        #expect(sim.evaluate(nr: 1, arch: SeccompSimulator.i386) == .killProcess, "i386 via int 0x80")
        #expect(sim.evaluate(nr: 0x4000_0000 | 1) == .killProcess, "x32 numbers on x86_64")
    }

    @Test func personalityAllowsOnlySafeValues() throws {
        #expect(try eval("personality", [0]) == .allow)
        #expect(try eval("personality", [0xffff_ffff]) == .allow)
        #expect(try eval("personality", [0x0040_0000]) == .errno(UInt16(EPERM)))  // READ_IMPLIES_EXEC... ADDR_NO_RANDOMIZE
    }

    @Test func mknodOfDevicesIsDenied() throws {
        #expect(try eval("mknodat", [UInt64(bitPattern: -100), 0, UInt64(S_IFIFO | 0o644), 0]) == .allow)
        #expect(try eval("mknodat", [UInt64(bitPattern: -100), 0, UInt64(S_IFCHR | 0o644), 0x0103]) == .errno(UInt16(EPERM)))
    }

    // MARK: OCI profiles brought by users

    func compile(_ json: String) throws(PolicyError) -> CompiledSeccomp {
        try SeccompCompiler.compile(try SeccompProfile.decode(json, file: "p.json"), file: "p.json")
    }

    @Test func argumentDenialOverridesUnconditionalAllow() throws {
        let c = try compile("""
        {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [
           {"names": ["ioctl", "write"], "action": "SCMP_ACT_ALLOW"},
           {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 1, "value": 4294967295, "valueTwo": 21522, "op": "SCMP_CMP_MASKED_EQ"}]}
         ]}
        """)
        let sim = SeccompSimulator(programs: c.programs)
        let ioctl = try #require(SeccompCompiler.syscallNumber("ioctl"))
        #expect(sim.evaluate(nr: ioctl, args: [0, 0x5401]) == .allow)
        #expect(sim.evaluate(nr: ioctl, args: [0, 0x5412]) == .errno(13))
        #expect(sim.evaluate(nr: try #require(SeccompCompiler.syscallNumber("read"))) == .errno(UInt16(EPERM)),
                "SCMP_ACT_ERRNO without errnoRet is EPERM, as in runc")
    }

    @Test func capabilityGatedRulesDoNotApply() throws {
        let c = try compile("""
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
         "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
         "syscalls": [
           {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
           {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
           {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["SCMP_ARCH_X86_64"]}}
         ]}
        """)
        #expect(c.skippedRules == 2)
        #expect(c.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        let sim = SeccompSimulator(programs: c.programs)
        #expect(sim.evaluate(nr: try #require(SeccompCompiler.syscallNumber("mount"))) == .errno(1))
        #expect(sim.evaluate(nr: try #require(SeccompCompiler.syscallNumber("read"))) == .allow)
    }

    @Test func unknownNamesAreReportedNotFatal() throws {
        let c = try compile("""
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_syscall_xyz", "mount"], "action": "SCMP_ACT_ERRNO"}]}
        """)
        #expect(c.unknownNames == ["no_such_syscall_xyz"])
        #expect(c.programs.count == 1)
    }

    @Test func badProfilesNameTheKey() {
        func expectError(_ json: String, key: String?, _ fragment: String) {
            do {
                _ = try compile(json)
                Issue.record("expected an error for \(json)")
            } catch {
                #expect(error.file == "p.json")
                #expect(error.key == key, "\(error)")
                #expect(error.message.contains(fragment), "\(error.message)")
            }
        }
        expectError(#"{"defaultAction": "SCMP_ACT_BOGUS"}"#, key: "defaultAction", "unknown action")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                    key: "syscalls[0].action", "user notification")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}"#, key: "listenerPath", "not supported")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                    key: "syscalls[0].args[0].index", "out of range")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#,
                    key: "syscalls[0].args[1]", "two conditions")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
                    key: "syscalls[0].args[0].op", "unknown comparison")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}"#, key: "architectures", "does not list")
        expectError(#"{"syscalls": []}"#, key: "defaultAction", "missing")
        expectError(#"{"defaultAction": "SCMP_ACT_ALLOW", "#, key: nil, "not valid JSON")
    }
}

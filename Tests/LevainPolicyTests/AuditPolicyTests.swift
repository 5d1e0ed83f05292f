import Testing
@testable import LevainPolicy
import LevainSystem
#if canImport(Glibc)
import Glibc
#endif

/// `[audit]`: parsing (errors with line and key) and the filter it compiles
/// to, run in the simulator alone and stacked on the default profile.
@Suite struct AuditPolicyTests {
    @Test func recordAndIgnorePathsParse() throws {
        let p = try PolicyLoader.parse("""
            [audit]
            record = ["execve", "openat", "connect", "execve"]
            ignore_paths = ["/tmp/", "/dev"]
            coalesce = false
            """, file: "p.toml", directory: nil)
        #expect(!p.audit.coalesce)
        #expect(p.audit.record == ["execve", "openat", "connect"])
        #expect(p.audit.ignorePaths == ["/tmp", "/dev"])
        #expect(p.audit.isEnabled)
        #expect(try !PolicyLoader.parse("", file: "p.toml", directory: nil).audit.isEnabled)
        #expect(try PolicyLoader.parse("", file: "p.toml", directory: nil).audit.coalesce)
    }

    @Test func badAuditInputNamesLineAndKey() {
        expectPolicyError("[audit]\nrecord = [\"execve\",\n  \"mount\"]", line: 3, key: "audit.record", "\"mount\" is not a system call Levain audits")
        expectPolicyError("[audit]\nignore_paths = [\"tmp\"]", line: 2, key: "audit.ignore_paths", "absolute jail path")
        expectPolicyError("[audit]\nignore_paths = [\"/a/../b\"]", line: 2, key: "audit.ignore_paths", "without \"..\"")
        expectPolicyError("[audit]\nrecrod = []", line: 2, key: "audit.recrod", "")
    }

    static func nr(_ name: String) -> Int32 { SeccompCompiler.syscallNumber(name)! }

    @Test func theFilterNotifiesGatedCallsAndWritesOnly() throws {
        var audit = Policy.Audit()
        audit.record = ["execve", "openat", "open", "creat", "connect", "unlinkat"]
        let sim = SeccompSimulator(programs: [try AuditFilter.compile(audit)])
        #expect(sim.evaluate(nr: Self.nr("execve")) == .notify)
        #expect(sim.evaluate(nr: Self.nr("connect")) == .notify)
        #expect(sim.evaluate(nr: Self.nr("creat")) == .notify)
        // openat(dirfd, path, flags): reads pass, any write flag is gated.
        #expect(sim.evaluate(nr: Self.nr("openat"), args: [UInt64(bitPattern: -100), 0, UInt64(O_RDONLY | O_CLOEXEC)]) == .allow)
        for flags in [O_WRONLY, O_RDWR, O_CREAT | O_RDONLY, O_TRUNC, O_WRONLY | O_APPEND | O_CLOEXEC] {
            #expect(sim.evaluate(nr: Self.nr("openat"), args: [0, 0, UInt64(flags)]) == .notify, "flags \(flags)")
        }
        // open(path, flags): the flags are argument 1.
        #expect(sim.evaluate(nr: Self.nr("open"), args: [0, UInt64(O_RDONLY)]) == .allow)
        #expect(sim.evaluate(nr: Self.nr("open"), args: [0, UInt64(O_WRONLY)]) == .notify)
        // Controls: what is not named passes.
        for name in ["read", "getpid", "execveat", "bind", "unlink"] {
            #expect(sim.evaluate(nr: Self.nr(name)) == .allow, "\(name)")
        }
        // The i386 ABI's execve (11) is gated too.
        #expect(sim.evaluate(nr: 11, arch: SeccompSimulator.i386) == .notify)
        #expect(sim.evaluate(nr: 20, arch: SeccompSimulator.i386) == .allow)  // getpid
    }

    @Test func thePolicysDenialWinsOverTheAuditLayer() throws {
        var audit = Policy.Audit()
        audit.record = ["execve", "ptrace", "kill"]
        let profile = try SeccompCompiler.compile(try SeccompProfile.load("default"), file: "default")
        let sim = SeccompSimulator(programs: profile.programs + [try AuditFilter.compile(audit)])
        #expect(sim.evaluate(nr: Self.nr("execve")) == .notify)
        // The default profile refuses i386 entirely: the jail never gets to
        // a notification.
        #expect(sim.evaluate(nr: 11, arch: SeccompSimulator.i386) == .killProcess)
        // Not gated, not denied: allowed as before.
        #expect(sim.evaluate(nr: Self.nr("getpid")) == .allow)
        // What the profile denies stays denied (an errno beats a notification).
        let denied = sim.evaluate(nr: Self.nr("kexec_load"))
        #expect(denied != .notify && denied != .allow, "\(denied)")
    }
}

/// `[audit.deny.NAME]`: parsing and matching.
@Suite struct AuditDenyTests {
    static let policy = """
        [audit]
        record = ["execve"]
        [audit.deny.programs]
        syscalls = ["execve", "execveat"]
        outside = ["/usr", "/bin/"]
        errno = "EACCES"
        [audit.deny.git]
        syscalls = ["openat", "unlinkat"]
        beneath = ["/workspace/.git"]
        [audit.deny.metadata]
        syscalls = ["connect"]
        addresses = ["169.254.169.254", "10.0.0.0/8"]
        [audit.deny.ssh]
        syscalls = ["connect"]
        ports = [22]
        """

    @Test func rulesParseAndGateTheirCalls() throws {
        let a = try PolicyLoader.parse(Self.policy, file: "p.toml", directory: nil).audit
        #expect(a.deny.map(\.name) == ["programs", "git", "metadata", "ssh"])
        #expect(a.deny[0].outside == ["/usr", "/bin"] && a.deny[0].errno == EACCES)
        #expect(a.deny[1].errno == EPERM)
        #expect(Set(a.gated) == ["execve", "execveat", "openat", "unlinkat", "connect"])
        let sim = SeccompSimulator(programs: [try AuditFilter.compile(a)])
        #expect(sim.evaluate(nr: AuditPolicyTests.nr("connect")) == .notify)
        #expect(sim.evaluate(nr: AuditPolicyTests.nr("bind")) == .allow)
    }

    @Test func rulesMatchWhatTheyName() throws {
        let a = try PolicyLoader.parse(Self.policy, file: "p.toml", directory: nil).audit
        func call(_ name: String, _ paths: [String] = [], port: Int? = nil, ip: UInt32? = nil) -> AuditedCall {
            var c = AuditedCall(session: "s", microseconds: 0, syscall: name, hostPID: 1)
            c.paths = paths
            c.port = port
            c.ipv4 = ip
            return c
        }
        func rule(_ c: AuditedCall) -> String? { a.deny.first { $0.matches(c) }?.name }
        #expect(rule(call("execve", ["/workspace/evil"])) == "programs")
        #expect(rule(call("execve", ["/usr/bin/cat"])) == nil)
        #expect(rule(call("execve", ["/bin/sh"])) == nil)
        #expect(rule(call("execve", ["/usrx/evil"])) == "programs")  // a directory, not a string prefix
        #expect(rule(call("openat", ["/workspace/.git/config"])) == "git")
        #expect(rule(call("openat", ["/workspace/.git"])) == "git")
        #expect(rule(call("openat", ["/workspace/.gitignore"])) == nil)
        #expect(rule(call("connect", port: 443, ip: 0xA9FE_A9FE)) == "metadata")
        #expect(rule(call("connect", port: 443, ip: 0x0A01_0203)) == "metadata")
        #expect(rule(call("connect", port: 443, ip: 0x0B01_0203)) == nil)
        #expect(rule(call("connect", port: 22, ip: 0x7F00_0001)) == "ssh")
        #expect(rule(call("bind", port: 22, ip: 0x7F00_0001)) == nil)  // the rule names connect only
    }

    @Test func badDenyRulesNameLineAndKey() {
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"execve\"]", line: 1, key: "audit.deny.x", "needs what it matches")
        expectPolicyError("[audit.deny.x]\nbeneath = [\"/a\"]", line: 1, key: "audit.deny.x.syscalls", "names the system calls")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"connect\"]\nbeneath = [\"/a\"]", line: 2, key: "audit.deny.x.syscalls", "names no path")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"openat\"]\nports = [22]", line: 2, key: "audit.deny.x.syscalls", "has no address")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"connect\"]\nports = [0]", line: 3, key: "audit.deny.x.ports", "1 to 65535")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"connect\"]\naddresses = [\"10.0.0.0/33\"]", line: 3, key: "audit.deny.x.addresses", "IPv4")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"execve\"]\noutside = [\"usr\"]", line: 3, key: "audit.deny.x.outside", "absolute")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"execve\"]\noutside = [\"/usr\"]\nerrno = \"EBADF\"", line: 4, key: "audit.deny.x.errno", "EACCES")
        expectPolicyError("[audit.deny.x]\nsyscalls = [\"mount\"]\noutside = [\"/usr\"]", line: 2, key: "audit.deny.x.syscalls", "not a system call")
    }
}

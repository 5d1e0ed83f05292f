import Testing
@testable import LevainPolicy
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
            """, file: "p.toml", directory: nil)
        #expect(p.audit.record == ["execve", "openat", "connect"])
        #expect(p.audit.ignorePaths == ["/tmp", "/dev"])
        #expect(p.audit.isEnabled)
        #expect(try !PolicyLoader.parse("", file: "p.toml", directory: nil).audit.isEnabled)
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

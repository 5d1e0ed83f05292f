import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One hostile payload of Payloads/payloads.c: what the attack must end in,
/// and what its benign control (the same program doing an allowed thing)
/// must print.
struct CAttack: CustomStringConvertible, Sendable {
    var name: String
    /// The RESULT line of the attack, or nil when the attack must be killed.
    var contained: String?
    /// When killed: the signal that must end it.
    var killedBy: Int32? = nil
    /// The start of the control's RESULT line.
    var control: String
    var description: String { name }
}

let cAttacks: [CAttack] = [
    // Escaping the root.
    CAttack(name: "chroot", contained: "chroot denied EPERM", control: "chdir allowed 0"),
    CAttack(name: "dotdot", contained: "dotdot stayed-in-jail", control: "ok jail-root"),
    CAttack(name: "open_by_handle", contained: "open_by_handle_at denied EPERM", control: "open allowed"),
    CAttack(name: "fds", contained: "fds none-leaked", control: "ok stdout-open"),
    // Mounts and namespaces.
    CAttack(name: "mount", contained: "mount denied EPERM", control: "mkdir allowed 0"),
    CAttack(name: "umount", contained: "umount2 denied EPERM", control: "stat allowed 0"),
    CAttack(name: "unshare_user", contained: "unshare denied EPERM", control: "getuid allowed 1000"),
    CAttack(name: "unshare_mnt", contained: "unshare denied EPERM", control: "getpid allowed"),
    CAttack(name: "setns", contained: "setns denied EPERM", control: "open-own-ns allowed"),
    CAttack(name: "clone_ns", contained: "clone denied EPERM", control: "clone allowed"),
    CAttack(name: "clone3", contained: "clone3 denied ENOSYS", control: "fork allowed"),
    CAttack(name: "pivot_root", contained: "pivot_root denied EPERM", control: "chdir allowed 0"),
    CAttack(name: "fsopen", contained: "fsopen denied EPERM", control: "getppid allowed"),
    // ptrace and other processes' memory.
    CAttack(name: "ptrace_attach", contained: "ptrace denied EPERM", control: "kill0 allowed 0"),
    CAttack(name: "ptrace_traceme", contained: "ptrace denied EPERM", control: "getpid allowed"),
    CAttack(name: "process_vm", contained: "process_vm_readv denied EPERM", control: "process_vm_readv allowed 16"),
    CAttack(name: "init_mem", contained: "open-init-mem denied EACCES", control: "open-self-status allowed"),
    // Seccomp ABI tricks: foreign architectures die by SIGSYS.
    CAttack(name: "int80", contained: nil, killedBy: SIGSYS, control: "int80 survived"),
    CAttack(name: "x32", contained: nil, killedBy: SIGSYS, control: "x32 survived"),
    // Terminal injection.
    CAttack(name: "tiocsti", contained: "tiocsti denied EPERM", control: "tcgetattr allowed 0"),
    CAttack(name: "tioclinux", contained: "tioclinux denied EPERM", control: "fionread allowed 0"),
    // Kernel attack surface.
    CAttack(name: "io_uring", contained: "io_uring_setup denied EPERM", control: "epoll_create1 allowed"),
    CAttack(name: "bpf", contained: "bpf denied EPERM", control: "getrandom allowed 8"),
    CAttack(name: "perf", contained: "perf_event_open denied EPERM", control: "times allowed"),
    CAttack(name: "keyctl", contained: "add_key denied EPERM", control: "uname allowed 0"),
    CAttack(name: "userfaultfd", contained: "userfaultfd denied EPERM", control: "eventfd allowed"),
    CAttack(name: "modules", contained: "init_module denied EPERM", control: "sysinfo allowed 0"),
    CAttack(name: "kexec", contained: "kexec_load denied EPERM", control: "getcpu allowed 0"),
    CAttack(name: "personality", contained: "personality denied EPERM", control: "personality allowed"),
    CAttack(name: "af_packet", contained: "socket denied EAFNOSUPPORT", control: "socket allowed"),
    CAttack(name: "af_alg", contained: "socket denied EAFNOSUPPORT", control: "socket allowed"),
    CAttack(name: "af_vsock", contained: "socket denied EAFNOSUPPORT", control: "socket allowed"),
    CAttack(name: "netlink_audit", contained: "socket denied EPROTONOSUPPORT", control: "socket allowed"),
    // setuid and capability regain.
    CAttack(name: "setuid", contained: "setuid denied EPERM", control: "setuid allowed 0"),
    CAttack(name: "capset", contained: "capset denied EPERM", control: "capget allowed 0"),
    CAttack(name: "ambient", contained: "ambient-raise denied EPERM", control: "prctl-get-nnp allowed 1"),
    CAttack(name: "nnp", contained: "clear-nnp denied EINVAL", control: "get-nnp allowed 1"),
    CAttack(name: "mknod", contained: "mknod denied EPERM", control: "mkfifo allowed 0"),
    // Signals.
    CAttack(name: "kill_init", contained: "kill-init denied EPERM", control: "kill-self-0 allowed 0"),
]

/// The hostile-payload suite, part 1: small C programs, each attack paired
/// with its benign control, run through `levain run` under the default policy.
@Suite(.enabled(if: runningAsRoot, "needs root and a real kernel"))
struct HostileCPayloadTests {
    @Test(arguments: cAttacks)
    func attackIsContained(_ attack: CAttack) throws {
        let r = try Payloads.run(attack.name, control: false)
        if let expected = attack.contained {
            #expect(r.status == 0, "\(r)")
            #expect(r.result == expected, "\(r)")
        } else if let sig = attack.killedBy {
            #expect(r.status == 128 + sig, "\(r)")
            #expect(r.result == nil, "the attack must not get to print: \(r)")
            #expect(r.reportValue("exit.signal_name") as? String == "SIGSYS")
        }
    }

    @Test(arguments: cAttacks)
    func controlSucceeds(_ attack: CAttack) throws {
        let r = try Payloads.run(attack.name, control: true)
        #expect(r.status == 0, "\(r)")
        #expect(r.result?.hasPrefix(attack.control) == true, "\(r)")
    }

    @Test func killMinusOneReachesOnlyTheJail() throws {
        // A host process the jail must not be able to signal.
        let host = Process()
        host.executableURL = URL(fileURLWithPath: "/bin/sleep")
        host.arguments = ["30"]
        try host.run()
        defer { host.terminate(); host.waitUntilExit() }
        let r = try Payloads.run("kill_all", control: false)
        #expect(r.status == 0, "\(r)")
        #expect(r.result == "kill allowed 0", "kill(-1) works inside the jail: \(r)")
        #expect(kill(host.processIdentifier, 0) == 0 && host.isRunning, "the host process survived")
        let direct = try jail(["python3", "-c", "import os\ntry:\n os.kill(\(host.processIdentifier), 9); print('KILLED')\nexcept OSError as e: print(e.errno)"])
        #expect(direct.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(ESRCH)", "\(direct)")
        #expect(host.isRunning)
        let control = try Payloads.run("kill_all", control: true)
        #expect(control.result == "kill allowed 0", "\(control)")
    }
}

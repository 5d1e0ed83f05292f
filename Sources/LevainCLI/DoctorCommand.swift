#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainPolicy
import LevainSandbox
import LevainSystem

public struct DoctorCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show what this kernel offers and which isolation Levain can give here.",
        discussion: """
        Probes user namespaces, seccomp (and its user-notification support),
        the Landlock ABI, cgroup v1/v2 and their controllers, pidfd, clone3,
        openat2 and the new mount API, then says for each built-in policy
        whether `levain run` can give all of it. Exits 1 when the default
        policy cannot run here.
        """
    )

    @Option(help: ArgumentHelp("Also check this policy (a name or a file).", valueName: "NAME|PATH"))
    var policy: String?

    public func run() throws {
        let f = KernelFeatures.probe()
        func yn(_ b: Bool) -> String { b ? "yes" : "NO" }
        print("kernel            \(f.kernelRelease)")
        print("running as root   \(yn(geteuid() == 0))")
        print("user namespaces   \(yn(f.userNamespaces))\(f.maxUserNamespaces.map { " (max \($0))" } ?? "")")
        print("seccomp filter    \(yn(f.seccompFilter)); actions: \(f.seccompActions.joined(separator: " "))")
        print("seccomp user-notification  \(yn(f.seccompUserNotification))")
        print("landlock          \(f.landlockABI > 0 ? "ABI \(f.landlockABI)" : "NO (not built in or not enabled at boot)")")
        print("pidfd             \(yn(f.pidfd))")
        print("clone3            \(yn(f.clone3))")
        print("openat2           \(yn(f.openat2))")
        print("new mount API     \(yn(f.newMountAPI)) (open_tree, move_mount, mount_setattr)")
        print("close_range       \(yn(f.closeRange))")
        let fs = RealCgroupFileSystem()
        switch CgroupLayout.detect(fs: fs) {
        case .v2(let root):
            let controllers = fs.readTextIfPresent(root + "/cgroup.controllers") ?? ""
            let kill = fs.exists(root + "/cgroup.kill") || fs.exists(root + "/init.scope/cgroup.kill")
            print("cgroups           v2 at \(root); controllers: \(controllers.split(separator: " ").joined(separator: " ").trimmingWhitespace()); cgroup.kill: \(kill ? "yes" : "no")")
        case .v1(let mounts):
            let names = mounts.keys.sorted()
            print("cgroups           v1 (hybrid or legacy): \(names.map { "\($0)=\(mounts[$0]!)" }.joined(separator: " "))")
        case .none:
            print("cgroups           NONE usable: memory/cpu/pids limits cannot be enforced")
        }

        var names = PolicyLoader.builtinNames
        if let policy { names.append(policy) }
        var defaultOK = true
        print("")
        for name in names {
            do {
                let p = try PolicyLoader.load(name)
                do {
                    try OneShotRunner.checkMachine(p, f)
                    var notes: [String] = []
                    if p.landlock == .ifAvailable && f.landlockABI == 0 { notes.append("without Landlock (not available)") }
                    print("policy \(p.name): full isolation available\(notes.isEmpty ? "" : " — " + notes.joined(separator: ", "))")
                } catch {
                    if name == "default" { defaultOK = false }
                    print("policy \(p.name): CANNOT RUN — \(error)")
                }
            } catch {
                print("policy \(name): invalid — \(error)")
                if name == "default" { defaultOK = false }
            }
        }
        if !defaultOK { throw ExitCode(1) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainPolicy
import LevainSandbox

/// The jail of a session: the policy's jail, with levain-harness as its
/// PID 1 instead of a command. The harness binary is bound read-only (it
/// cannot be overwritten from inside), it keeps CAP_SETUID, CAP_SETGID and
/// CAP_KILL of the jail's user namespace to start runs as the jail user, and
/// it finds the protocol socket at fd 3 and the descriptor socket at fd 4.
enum SessionJail {
    /// Where the harness appears inside the jail.
    static let harnessPath = "/.levain/levain-harness"

    /// The harness's own rlimits. The policy's (CPU time, file size) are
    /// per run: they go with each run.start, not on the harness, which lives
    /// as long as the session.
    /// Open files: 65536, or the supervisor's own hard limit when lower
    /// (raising a hard limit needs CAP_SYS_RESOURCE, which a jail lacks).
    static func harnessRlimits() -> [ResourceLimit] {
        var r = rlimit()
        let hard = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 ? min(UInt64(r.rlim_max), 65536) : 1024
        return [
            ResourceLimit(resource: Int32(RLIMIT_CORE.rawValue), name: "core", soft: 0, hard: 0),
            ResourceLimit(resource: Int32(RLIMIT_NOFILE.rawValue), name: "open_files", soft: hard, hard: hard),
        ]
    }

    static func spec(policy: Policy, harnessHostPath: String, workspace: WorkspaceMount, extraBinds: [Policy.Bind],
                     landlockABI: Int, seccomp: CompiledSeccomp, runUID: UInt32, runGID: UInt32,
                     hostIDBase: UInt32, protocolFD: Int32, descriptorFD: Int32) throws(SandboxError) -> JailSpec {
        let planner = RootfsPlanner(policy: policy, extraBinds: extraBinds, workspace: workspace)
        var (mounts, afterPlacement) = try planner.planWithSplit()
        // The harness: one file, read-only, after everything else.
        mounts.append(.bind(source: harnessHostPath, target: harnessPath, readOnly: true, optional: false))
        let landlock = policy.landlock == .off ? nil : planner.landlock(abi: landlockABI)
        var env = policy.environment.set.map { "\($0.0)=\($0.1)" }
        env.append("LEVAIN_RUN_UID=\(runUID)")
        env.append("LEVAIN_RUN_GID=\(runGID)")
        var spec = JailSpec(
            argv: [harnessPath], environment: env, cwd: "/", searchPath: "/usr/bin:/bin",
            namespaces: policy.namespaces, mounts: mounts, hostname: policy.user.hostname,
            loopbackUp: policy.network == .loopback, uid: 0, gid: 0,
            hostIDBase: policy.namespaces.user ? hostIDBase : 0, idRangeSize: 65536,
            rlimits: harnessRlimits(), seccomp: seccomp.programs, landlock: landlock,
            execAsInit: true, keepFDs: [protocolFD, descriptorFD])
        spec.mountsAfterPlacement = afterPlacement
        spec.keepCapabilities = [6, 7, 5]  // CAP_SETGID, CAP_SETUID, CAP_KILL
        return spec
    }

    /// levain-harness next to the running levain binary, unless configured.
    /// The path is canonical (the jail's bind refuses symlinks on the way,
    /// and SwiftPM's .build/release is one).
    static func locateHarness(_ configured: String?) -> String? {
        if let configured { return access(configured, X_OK) == 0 ? canonical(configured) : nil }
        if let env = getenv("LEVAIN_HARNESS").map({ String(cString: $0) }), access(env, X_OK) == 0 { return canonical(env) }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = exe.lastIndex(of: "/") else { return nil }
        let candidate = String(exe[..<slash]) + "/levain-harness"
        return access(candidate, X_OK) == 0 ? canonical(candidate) : nil
    }

    static func canonical(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import CLevainSpawn
import LevainPolicy
import LevainSandbox

public struct RunCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one command in a fresh jail.",
        discussion: """
        Everything is on under the default policy: user, pid, mount, net
        (loopback only), uts, ipc and cgroup namespaces; a tmpfs root with the
        host's /usr read-only and a generated /etc; a fresh /proc with the
        dangerous entries masked; a minimal /dev; a capped /tmp; a per-run
        host directory read-write at /workspace that survives the run; no
        capabilities, no_new_privs, the default seccomp allowlist, Landlock
        where the kernel has it; cgroup limits on memory (swap off), CPU and
        pids; rlimits. The command runs as an unprivileged user (uid 1000).

        Options given here override the policy's values for this run.
        Nothing from your environment enters the jail unless the policy passes
        it (the default policy passes TERM) or you give it with --env.

        Examples:
          levain run -- sh -c 'id; hostname; ls /'
          levain run --policy strict --memory 128M -- python3 script.py
          levain run --rw ./out:/out --cwd /out -- make
          levain run --json-report report.json --timeout 30s -- ./untrusted

        Through a supervisor (`levain serve`), with the same options and exit
        statuses; the run gets a session of its own unless --session names one:
          levain --connect unix:/run/levain/levain.sock run -- python3 -c 'print(1)'
          levain --connect unix:/run/levain/levain.sock run --session s-0123456789ab -- ls

        Every run is recorded in the session log of --state (levain log show RUN).
        """
    )

    @Option(name: .long, help: ArgumentHelp("A built-in policy name (default, strict) or a path to a policy TOML file.", valueName: "NAME|PATH"))
    var policy = "default"

    @Option(name: .customLong("ro"), help: ArgumentHelp("Bind a host path read-only (repeatable). JAIL defaults to HOST.", valueName: "HOST[:JAIL]"))
    var readOnlyBinds: [String] = []

    @Option(name: .customLong("rw"), help: ArgumentHelp("Bind a host path read-write (repeatable). JAIL defaults to HOST.", valueName: "HOST[:JAIL]"))
    var readWriteBinds: [String] = []

    @Option(help: ArgumentHelp("Memory limit, swap off (e.g. 256M, 1G, or off).", valueName: "SIZE"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU limit in cores, fractional (e.g. 0.5), or off.", valueName: "N"))
    var cpus: String?

    @Option(help: ArgumentHelp("Maximum number of tasks (processes and threads), or off.", valueName: "N"))
    var pids: String?

    @Option(help: ArgumentHelp("Wall-clock limit in seconds (or 30s, 5m, 1h, off); the whole jail is killed when it passes.", valueName: "SECONDS"))
    var timeout: String?

    @Option(name: .customLong("cpu-time"), help: ArgumentHelp("CPU-time limit (RLIMIT_CPU), e.g. 10s.", valueName: "SECONDS"))
    var cpuTime: String?

    @Option(name: .customLong("file-size"), help: ArgumentHelp("Largest file the command may write (RLIMIT_FSIZE), e.g. 100M.", valueName: "SIZE"))
    var fileSize: String?

    @Option(name: .customLong("workspace-size"), help: ArgumentHelp("Size of /workspace, an ext4 image the kernel fills no further (ENOSPC), e.g. 256M; off: a plain host directory with no bound (default: the policy's workspace_size, 1G).", valueName: "SIZE"))
    var workspaceSize: String?

    @Option(name: .long, help: ArgumentHelp("Set an environment variable in the jail (repeatable).", valueName: "KEY=VALUE"))
    var env: [String] = []

    @Option(help: ArgumentHelp("Working directory inside the jail (default /workspace).", valueName: "DIR"))
    var cwd: String?

    @Option(name: .customLong("json-report"), help: ArgumentHelp("Write a JSON record of the run here: exit, times, peak memory, limits hit, isolation applied.", valueName: "FILE"))
    var jsonReport: String?

    @Option(help: ArgumentHelp("State directory (workspaces live under it).", valueName: "DIR"))
    var state = "/var/lib/levain"

    @Flag(name: .shortAndLong, help: "Do not print limit notices on stderr.")
    var quiet = false

    @Option(help: ArgumentHelp("Run in this open session of the supervisor instead of a new jail (needs --connect).", valueName: "SESSION"))
    var session: String?

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments, after --.", valueName: "COMMAND"))
    var command: [String] = []

    public func validate() throws {
        // The command is captured as-is (so `levain run ls -l` works without
        // "--"); a --help before it still asks for help.
        if let first = command.first, first == "--help" || first == "-h" {
            throw CleanExit.helpRequest(self)
        }
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option '\(first)' (see levain run --help); a command starting with '-' goes after --")
        }
        if options.argv.isEmpty {
            throw ValidationError("no command given; usage: levain run [OPTIONS] -- COMMAND [ARG...]")
        }
    }

    /// The parsed options, the same value the fast path of RunOptions.parse builds.
    public var options: RunOptions {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        return RunOptions(policy: policy, readOnlyBinds: readOnlyBinds, readWriteBinds: readWriteBinds,
                          memory: memory, cpus: cpus, pids: pids, timeout: timeout, cpuTime: cpuTime,
                          fileSize: fileSize, workspaceSize: workspaceSize, env: env, cwd: cwd, jsonReport: jsonReport, state: state,
                          quiet: quiet, session: session, argv: argv)
    }

    public func run() throws {
        try options.execute()
    }
}

public func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return "/" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The signals `levain run` forwards to the jail.
public enum SignalForwarding {
    static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM]

    public static func setUp() -> Int32 {
        forwarded.withUnsafeBufferPointer { lv_block_signals_fd($0.baseAddress, $0.count) }
    }
}

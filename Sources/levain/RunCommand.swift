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

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
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

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments, after --.", valueName: "COMMAND"))
    var command: [String] = []

    func validate() throws {
        // The command is captured as-is (so `levain run ls -l` works without
        // "--"); a --help before it still asks for help.
        if let first = command.first, first == "--help" || first == "-h" {
            throw CleanExit.helpRequest(self)
        }
        var cmd = command
        if cmd.first == "--" { cmd.removeFirst() }
        if cmd.isEmpty {
            throw ValidationError("no command given; usage: levain run [OPTIONS] -- COMMAND [ARG...]")
        }
    }

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }

        // Signals for the jail are read from a signalfd: block them now,
        // before any thread exists, so every thread inherits the mask.
        let signalFD = SignalForwarding.setUp()

        var p: Policy
        do {
            p = try PolicyLoader.load(policy)
        } catch {
            throw UserError("\(error)")
        }
        try applyOverrides(&p)

        var request = RunRequest(policy: p, argv: argv, stateDirectory: absolute(state))
        for spec in readOnlyBinds { request.extraBinds.append(try bind(spec, writable: false)) }
        for spec in readWriteBinds { request.extraBinds.append(try bind(spec, writable: true)) }
        for item in env {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw UserError("--env \(item): expected KEY=VALUE")
            }
            let key = String(item[..<eq])
            guard PolicyLoader.isValidEnvName(key) else { throw UserError("--env \(item): \"\(key)\" is not a valid variable name") }
            request.environment.append((key, String(item[item.index(after: eq)...])))
        }
        if let cwd {
            guard cwd.hasPrefix("/") else { throw UserError("--cwd \(cwd): give an absolute path inside the jail (e.g. /workspace/src)") }
            request.cwd = cwd
        }
        request.callerEnvironment = callerEnvironment()

        let outcome: RunOutcome
        do {
            outcome = try OneShotRunner.run(request, signalFD: signalFD)
        } catch {
            throw UserError(error.description)
        }
        for line in outcome.notices where !quiet || line.hasPrefix("cannot execute") {
            printError(line)
        }
        if let path = jsonReport {
            try writeReport(outcome.report, to: path)
        }
        throw ExitCode(outcome.exitStatus)
    }

    func applyOverrides(_ p: inout Policy) throws {
        if let memory {
            if memory == "off" { p.limits.memory = nil } else {
                guard let v = Quantity.parseSize(memory) else {
                    throw UserError("--memory \(memory): invalid size; expected a number with an optional K, M, G or T suffix (e.g. 256M), or off")
                }
                guard v >= 4 << 20 else { throw UserError("--memory \(memory): at least 4M is needed to start a process") }
                p.limits.memory = v
            }
        }
        if let cpus {
            if cpus == "off" { p.limits.cpus = nil } else {
                guard let v = Double(cpus), v >= 0.01, v <= 4096 else {
                    throw UserError("--cpus \(cpus): expected a number of cores between 0.01 and 4096 (e.g. 0.5), or off")
                }
                p.limits.cpus = v
            }
        }
        if let pids {
            if pids == "off" { p.limits.pids = nil } else {
                guard let v = Int(pids), v >= 1, v <= 4_194_304 else {
                    throw UserError("--pids \(pids): expected a whole number of tasks, 1 or more (e.g. 64), or off")
                }
                p.limits.pids = v
            }
        }
        if let timeout {
            if timeout == "off" { p.limits.timeout = nil } else {
                guard let v = Quantity.parseDuration(timeout), v > 0 else {
                    throw UserError("--timeout \(timeout): expected seconds (e.g. 30, 1.5) or a duration (30s, 5m, 1h), or off")
                }
                p.limits.timeout = v
            }
        }
        if let cpuTime {
            guard let v = Quantity.parseDuration(cpuTime), v >= 1 else {
                throw UserError("--cpu-time \(cpuTime): expected at least 1 second (e.g. 10, 10s, 2m)")
            }
            p.limits.cpuTime = UInt64(v.rounded(.up))
        }
        if let fileSize {
            guard let v = Quantity.parseSize(fileSize) else {
                throw UserError("--file-size \(fileSize): invalid size; expected a number with an optional K, M, G or T suffix (e.g. 100M)")
            }
            p.limits.fileSize = v
        }
    }

    func bind(_ spec: String, writable: Bool) throws -> Policy.Bind {
        let flag = writable ? "--rw" : "--ro"
        // Relative host paths are relative to the caller's directory.
        var s = spec
        if !s.hasPrefix("/") && !s.isEmpty {
            s = currentDirectory() + "/" + s
        }
        do {
            return try PolicyLoader.parseBind(s, writable: writable, optional: false, file: flag, line: nil, key: spec)
        } catch {
            throw UserError("\(flag) \(spec): \(error.message)")
        }
    }

    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : currentDirectory() + "/" + path
    }

    func writeReport(_ report: RunReport, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let data: Data
        do { data = try encoder.encode(report) } catch { throw UserError("cannot encode the report: \(error)") }
        let target = absolute(path)
        let tmp = target + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UserError("--json-report \(path): \(String(cString: strerror(errno)))") }
        var ok = data.withUnsafeBytes { raw in write(fd, raw.baseAddress, raw.count) == raw.count }
        ok = ok && write(fd, "\n", 1) == 1
        close(fd)
        guard ok, rename(tmp, target) == 0 else {
            unlink(tmp)
            throw UserError("--json-report \(path): cannot write the report")
        }
    }
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return "/" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The signals `levain run` forwards to the jail.
enum SignalForwarding {
    static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM]

    static func setUp() -> Int32 {
        forwarded.withUnsafeBufferPointer { lv_block_signals_fd($0.baseAddress, $0.count) }
    }
}

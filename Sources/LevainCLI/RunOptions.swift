#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import LevainPolicy
import LevainSandbox

/// The options of `levain run`, however they were parsed.
public struct RunOptions: Equatable {
    /// How a run goes through a supervisor, when the program can (levain-ctl
    /// sets it for --connect); nil: runs are local.
    nonisolated(unsafe) public static var remote: ((RunOptions, Int32) throws -> Void)?

    public var policy = "default"
    public var readOnlyBinds: [String] = []
    public var readWriteBinds: [String] = []
    public var memory: String?
    public var cpus: String?
    public var pids: String?
    public var timeout: String?
    public var cpuTime: String?
    public var fileSize: String?
    public var workspaceSize: String?
    public var env: [String] = []
    public var cwd: String?
    public var jsonReport: String?
    public var state = "/var/lib/levain"
    public var quiet = false
    /// Run in this open session of the supervisor (--connect only).
    public var session: String?
    public var argv: [String] = []

    /// The fast path of `levain run` argument parsing. Swift's
    /// ArgumentParser spends about 2.5 ms reflecting on RunCommand before it
    /// parses anything, more than a quarter of a whole jailed /bin/true. This
    /// parser takes exactly the spellings RunCommand declares (`--opt VALUE`,
    /// `--opt=VALUE`, `-q`, the command after `--` or after the first
    /// non-option) and returns nil for anything else — help, an unknown
    /// option, a missing value, no command — so that ArgumentParser handles
    /// it with its own messages. Debug builds check every fast parse
    /// against ArgumentParser (see Main).
    public static func parse(_ args: [String]) -> RunOptions? {
        var o = RunOptions()
        var i = 0
        func value(_ name: String, _ inline: String?) -> String? {
            if let inline { return inline }
            i += 1
            guard i < args.count else { return nil }
            return args[i]
        }
        while i < args.count {
            let arg = args[i]
            if arg == "--" {
                o.argv = Array(args[(i + 1)...])
                break
            }
            if !arg.hasPrefix("-") || arg == "-" {
                o.argv = Array(args[i...])
                break
            }
            var name = arg
            var inline: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            switch name {
            case "-q", "--quiet":
                if inline != nil { return nil }
                o.quiet = true
            case "--policy": guard let v = value(name, inline) else { return nil }; o.policy = v
            case "--ro": guard let v = value(name, inline) else { return nil }; o.readOnlyBinds.append(v)
            case "--rw": guard let v = value(name, inline) else { return nil }; o.readWriteBinds.append(v)
            case "--memory": guard let v = value(name, inline) else { return nil }; o.memory = v
            case "--cpus": guard let v = value(name, inline) else { return nil }; o.cpus = v
            case "--pids": guard let v = value(name, inline) else { return nil }; o.pids = v
            case "--timeout": guard let v = value(name, inline) else { return nil }; o.timeout = v
            case "--cpu-time": guard let v = value(name, inline) else { return nil }; o.cpuTime = v
            case "--file-size": guard let v = value(name, inline) else { return nil }; o.fileSize = v
            case "--workspace-size": guard let v = value(name, inline) else { return nil }; o.workspaceSize = v
            case "--env": guard let v = value(name, inline) else { return nil }; o.env.append(v)
            case "--cwd": guard let v = value(name, inline) else { return nil }; o.cwd = v
            case "--json-report": guard let v = value(name, inline) else { return nil }; o.jsonReport = v
            case "--state": guard let v = value(name, inline) else { return nil }; o.state = v
            case "--session": guard let v = value(name, inline) else { return nil }; o.session = v
            default:
                return nil
            }
            i += 1
        }
        // A value that looks like an option (`--memory --pids`) is something
        // ArgumentParser rejects; let it.
        for v in [o.memory, o.cpus, o.pids, o.timeout, o.cpuTime, o.fileSize, o.workspaceSize, o.cwd, o.jsonReport, o.session].compactMap({ $0 }) + [o.policy, o.state] + o.env + o.readOnlyBinds + o.readWriteBinds
            where v.hasPrefix("-") { return nil }
        return o.argv.isEmpty ? nil : o
    }

    public func execute() throws {
        // Signals for the jail are read from a signalfd: block them now,
        // before any thread exists, so every thread inherits the mask.
        let signalFD = SignalForwarding.setUp()
        if let remote = RunOptions.remote {
            if let workspaceSize {
                throw UserError("--workspace-size \(workspaceSize) is not available through --connect: a session's workspace is made with its policy's [filesystem] workspace_size; use a policy with the size you want")
            }
            try remote(self, signalFD)
        }
        if let session {
            throw UserError("--session \(session) needs a supervisor: levain --connect unix:PATH run --session \(session) -- ...")
        }

        var p: Policy
        do {
            p = try PolicyLoader.load(policy)
        } catch {
            throw UserError("\(error)")
        }
        try applyOverrides(&p)
        if p.audit.isEnabled && !quiet {
            // The notifier lives in levain serve; a one-shot run has nobody
            // to answer its gated calls.
            writeStderr("levain: note: the policy's [audit] applies to sessions of levain serve; this one-shot run's \(p.audit.record.joined(separator: ", ")) calls are not audited (run it with --connect to a supervisor to audit it)\n")
        }

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
        if let root = request.callerEnvironment["LEVAIN_CGROUP_V2_ROOT"], !root.isEmpty {
            request.cgroupV2Root = root
        }

        // The session log, written beside the run (OneShotLog).
        let runID = RunID.make()
        request.runID = runID
        let stateDir = absolute(state)
        let log = OneShotLog(statePath: stateDir, runID: runID, policy: policy, argv: argv, env: env, cwd: cwd, timeout: timeout,
                             workspace: p.filesystem.workspace ? workspacePath(stateDir + "/workspaces/" + runID, p) : nil)
        let outcome: RunOutcome
        do {
            outcome = try OneShotRunner.run(request, signalFD: signalFD)
        } catch {
            log.finish(outcome: nil, error: error.description)
            throw UserError(error.description)
        }
        log.finish(outcome: outcome, error: nil)
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
        if let workspaceSize {
            if workspaceSize == "off" { p.filesystem.workspaceSize = nil } else {
                guard let v = Quantity.parseSize(workspaceSize) else {
                    throw UserError("--workspace-size \(workspaceSize): invalid size; expected a number with an optional K, M, G or T suffix (e.g. 256M), or off")
                }
                guard v >= Policy.Filesystem.minimumWorkspaceSize, v <= 1 << 44 else {
                    throw UserError("--workspace-size \(workspaceSize): expected between 16M and 16T (the size of the workspace's ext4 image), or off for an unbounded host directory")
                }
                p.filesystem.workspaceSize = v
            }
        }
        if let fileSize {
            guard let v = Quantity.parseSize(fileSize) else {
                throw UserError("--file-size \(fileSize): invalid size; expected a number with an optional K, M, G or T suffix (e.g. 100M)")
            }
            p.limits.fileSize = v
        }
    }

    /// Where a run's workspace is: its ext4 image with a workspace_size, else a directory.
    func workspacePath(_ directory: String, _ p: Policy) -> String {
        p.filesystem.workspaceSize != nil ? WorkspaceImage.path(of: directory) : directory
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


#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// Exit statuses of `levain` itself (the command's own status passes through).
public enum LevainExit {
    /// Levain's own error: bad input, a policy error, a machine that cannot
    /// give the isolation asked for, a failed jail setup.
    public static let error: Int32 = 125
    /// The command exists but could not be executed.
    public static let notExecutable: Int32 = 126
    /// The command was not found in the jail.
    public static let notFound: Int32 = 127
}

public enum LevainVersion {
    public static let string = "0.2.0"
}

/// An error for the user: printed as "levain: MESSAGE", exit status 125.
public struct UserError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public func printError(_ text: String) {
    writeStderr("levain: \(text)\n")
}

/// Writes to fd 2 directly (no stdio buffer, no shared FILE*).
public func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        off += n
    }
}

/// The caller's environment as a dictionary.
public func callerEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            env[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        p += 1
    }
    return env
}

/// The common text of `levain --help` (both binaries).
public enum LevainHelp {
    public static let abstract = "Run untrusted code in a jail: namespaces, seccomp, Landlock, cgroups and a minimal root."
    public static let discussion = """
        Quick start (as root):
          levain run -- python3 -c 'print("hello from a jail")'
          levain serve &                 the supervisor: sessions, runs, the session log
          levain --connect unix:/run/levain/levain.sock run -- echo hi
          levain run --memory 64M --pids 32 --timeout 10 -- sh -c 'echo contained'
          levain run --ro /srv/data:/data --json-report run.json -- ls /data
          levain log show SESSION        what happened, from the session log
          levain doctor                  what this kernel offers
          levain policy show default     the built-in default policy, to copy and edit
          levain policy check my.toml    validate a policy file

        Exit status of `levain run`: the command's own; 128+N when it died of
        signal N (a wall-clock timeout kills it: 137); 126 when the command is
        not executable, 127 when it is not found in the jail; 125 when Levain
        itself failed (bad input, policy error, missing kernel feature).
        """
}

/// The supervisor-side commands, served by `levain-ctl` next to `levain`.
public let controlCommands: Set<String> = ["serve", "sessions", "runs", "cancel", "log", "audit", "usage", "agent", "approvals", "approve", "mcp"]

/// How `levain` and `levain-ctl` end after an error: an ExitCode as given;
/// a UserError's message and status 125; ArgumentParser's help, version
/// and usage errors as ArgumentParser prints them (help and version exit 0,
/// the rest 125).
public func exitOnError<Command: ParsableCommand>(_ error: any Error, of command: Command.Type) -> Never {
    if let code = error as? ExitCode { exit(code.rawValue) }
    if let error = error as? UserError {
        writeStderr("levain: \(error.description)\n")
        exit(LevainExit.error)
    }
    let message = Command.fullMessage(for: error)
    if Command.exitCode(for: error) == .success {
        print(message)
        exit(0)
    }
    if !message.isEmpty { writeStderr("levain: \(message)\n") }
    exit(LevainExit.error)
}

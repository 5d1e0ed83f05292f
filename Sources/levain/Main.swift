#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainSupervisor

/// Exit statuses of `levain` itself (the command's own status passes through).
enum LevainExit {
    /// Levain's own error: bad input, a policy error, a machine that cannot
    /// give the isolation asked for, a failed jail setup.
    static let error: Int32 = 125
    /// The command exists but could not be executed.
    static let notExecutable: Int32 = 126
    /// The command was not found in the jail.
    static let notFound: Int32 = 127
}

struct Levain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "levain",
        abstract: "Run untrusted code in a jail: namespaces, seccomp, Landlock, cgroups and a minimal root.",
        discussion: """
        Quick start (as root):
          levain run -- python3 -c 'print("hello from a jail")'
          levain serve &                 the supervisor: sessions, runs, the session log
          levain --connect unix:/run/levain/levain.sock run -- echo hi
          levain run --memory 64M --pids 32 --timeout 10 -- sh -c 'echo contained'
          levain run --ro /srv/data:/data --json-report run.json -- ls /data
          levain doctor                 what this kernel offers
          levain policy show default    the built-in default policy, to copy and edit
          levain policy check my.toml   validate a policy file

        Exit status of `levain run`: the command's own; 128+N when it died of
        signal N (a wall-clock timeout kills it: 137); 126 when the command is
        not executable, 127 when it is not found in the jail; 125 when Levain
        itself failed (bad input, policy error, missing kernel feature).
        """,
        version: LevainVersion.string,
        subcommands: [RunCommand.self, ServeCommand.self, SessionsCommand.self, RunsCommand.self, CancelCommand.self,
                      LogCommand.self, DoctorCommand.self, PolicyCommand.self]
    )
}

enum LevainVersion {
    static let string = "0.2.0"
}

/// The supervisor `--connect` (or LEVAIN_CONNECT) names, if any.
enum Connection {
    nonisolated(unsafe) static var address: APIClient.Address?

    static var token: String? {
        getenv("LEVAIN_TOKEN").map { String(cString: $0) }
    }

    static var client: APIClient? { address.map { APIClient(address: $0, token: token) } }
}

@main
enum Main {
    static func main() {
        do {
            var args = Array(CommandLine.arguments.dropFirst())
            // `levain --connect ADDRESS COMMAND ...`: the address of a
            // supervisor, for every command that can talk to one.
            if let first = args.first, first == "--connect" || first.hasPrefix("--connect=") {
                let value: String
                if first == "--connect" {
                    guard args.count > 1 else { throw UserError("--connect needs an address: unix:PATH or tcp:HOST:PORT") }
                    value = args[1]
                    args.removeFirst(2)
                } else {
                    value = String(first.dropFirst("--connect=".count))
                    args.removeFirst()
                }
                guard let address = APIClient.Address.parse(value) else {
                    throw UserError("--connect \(value): expected unix:PATH or tcp:HOST:PORT")
                }
                Connection.address = address
            } else if let env = getenv("LEVAIN_CONNECT").map({ String(cString: $0) }), !env.isEmpty {
                guard let address = APIClient.Address.parse(env) else { throw UserError("LEVAIN_CONNECT=\(env): expected unix:PATH or tcp:HOST:PORT") }
                Connection.address = address
            }
            // `levain run` is the hot path: parse it without ArgumentParser's
            // reflection when the arguments are plain (see RunOptions.parse).
            if args.first == "run", Connection.address == nil, let fast = RunOptions.parse(Array(args.dropFirst())) {
                #if DEBUG
                // Every debug run (the tests') checks the two parsers agree.
                let slow = try Levain.parseAsRoot(args)
                guard let run = slow as? RunCommand, run.options == fast else {
                    fatalError("RunOptions.parse disagrees with ArgumentParser for \(args): \(fast) vs \(slow)")
                }
                #endif
                try fast.execute()
            }
            var command = try Levain.parseAsRoot(args)
            try command.run()
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch let error as UserError {
            writeStderr("levain: \(error.description)\n")
            exit(LevainExit.error)
        } catch {
            let code = Levain.exitCode(for: error)
            let message = Levain.fullMessage(for: error)
            if code == .success {
                print(message)
                exit(0)
            }
            if !message.isEmpty {
                writeStderr("levain: \(message)\n")
            }
            exit(LevainExit.error)
        }
    }
}

/// An error for the user: printed as "levain: MESSAGE", exit status 125.
struct UserError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func printError(_ text: String) {
    writeStderr("levain: \(text)\n")
}

/// Writes to fd 2 directly (no stdio buffer, no shared FILE*).
func writeStderr(_ text: String) {
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
func callerEnvironment() -> [String: String] {
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

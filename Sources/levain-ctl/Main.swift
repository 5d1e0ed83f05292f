#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainAPI
import LevainCLI

/// `levain-ctl`: the whole `levain` CLI, the supervisor's commands included.
/// `levain` execs it for `serve`, `sessions`, `runs`, `cancel`, `log` and
/// `--connect` (its own binary stays small for `levain run`); it answers to
/// the name `levain`.
struct Levain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "levain",
        abstract: LevainHelp.abstract,
        discussion: LevainHelp.discussion,
        version: LevainVersion.string,
        subcommands: [RunCommand.self, ServeCommand.self, SessionsCommand.self, RunsCommand.self, CancelCommand.self, UsageCommand.self,
                      LogCommand.self, AuditCommand.self, AgentCommand.self, ApprovalsCommand.self, ApproveCommand.self, MCPCommand.self, DoctorCommand.self, PolicyCommand.self]
    )
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
            // A run through the supervisor when one is named.
            RunOptions.remote = { options, signalFD in
                if let client = Connection.client { try options.executeRemote(client, signalFD: signalFD) }
            }
            var command = try Levain.parseAsRoot(args)
            try command.run()
        } catch {
            exitOnError(error, of: Levain.self)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainCLI
import LevainPolicy
import LevainSupervisor

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the supervisor: sessions, the run queue, the session log, the control API.",
        discussion: """
        The control API is HTTP/1.1 + JSON on a Unix socket (mode 0600; see
        supervisor.socket_group to grant a group), and optionally on TCP with
        a bearer token (tcp.address, tcp.token_file in the config). Every
        session is a jail whose PID 1 is levain-harness; every run is a
        process in it. The session log (SQLite, WAL) is in the state directory.

        SIGTERM (or SIGINT): stop accepting, let running runs finish for up to
        supervisor.shutdown_grace (30s), then kill them and record it, end the
        API's streams (503 for every request from then on), close the
        connections still busy a few seconds later, close the log and exit. After a
        kill -9 every jail dies with the supervisor; on restart the log is
        verified and each run that was in flight gets run.interrupted, then
        is retried (retry: "retry") or failed.

        Every session's jail also gets, on 127.0.0.1 inside it, the model
        gateway (port 8790: OPENAI_BASE_URL, ANTHROPIC_BASE_URL and
        placeholder keys in every run's environment) and the egress proxy
        (port 8791: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY). Name the providers,
        their keys (an environment variable of this process or a file) and
        the models with their prices in the config; the policy says what a
        run may call, spend and reach (docs/GATEWAY.md).

        The configuration file (TOML) is described in docs/SUPERVISOR.md.

        Examples:
          levain serve
          levain serve --socket /tmp/levain.sock --state /tmp/levain-state --concurrency 4
          levain serve --config /etc/levain/levain.toml
          OPENAI_API_KEY=sk-... levain serve --config levain.toml   # with [providers.openai] api_key_env = "OPENAI_API_KEY"
        """
    )

    @Option(help: ArgumentHelp("The control API's Unix socket (default /run/levain/levain.sock).", valueName: "PATH"))
    var socket: String?

    @Option(help: ArgumentHelp("State directory: the session log, workspaces, run output (default /var/lib/levain).", valueName: "DIR"))
    var state: String?

    @Option(help: ArgumentHelp("Configuration file (TOML).", valueName: "FILE"))
    var config: String?

    @Option(help: ArgumentHelp("Runs executing at once (the rest wait in the queue).", valueName: "N"))
    var concurrency: Int?

    func run() throws {
        var c: SupervisorConfig
        if let config {
            do { c = try SupervisorConfig.load(config) } catch { throw UserError("\(error)") }
        } else {
            c = SupervisorConfig()
        }
        if let socket { c.socketPath = socket.hasPrefix("/") ? socket : currentDirectory() + "/" + socket }
        if let state { c.stateDirectory = state.hasPrefix("/") ? state : currentDirectory() + "/" + state }
        if let concurrency {
            guard concurrency >= 1 else { throw UserError("--concurrency must be 1 or more") }
            c.concurrency = concurrency
        }
        if let root = getenv("LEVAIN_CGROUP_V2_ROOT").map({ String(cString: $0) }), !root.isEmpty { c.cgroupV2Root = root }
        guard geteuid() == 0 else { throw UserError("levain serve needs root (it creates namespaces, cgroups and mounts)") }
        let config = c
        do {
            try blocking { try await SupervisorServer.run(config: config) }
        } catch {
            throw UserError("\(error)")
        }
    }
}

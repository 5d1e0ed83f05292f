#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainCLI
import LevainSessionLog
import LevainSupervisor

/// Options shared by the commands that read the log: where it is.
struct StateOption: ParsableArguments {
    @Option(help: ArgumentHelp("State directory whose session log to read when no --connect is given.", valueName: "DIR"))
    var state = "/var/lib/levain"

    @Flag(help: "Print JSON (the API's shapes) instead of a table.")
    var json = false
}

extension Connection {
    /// The supervisor to talk to: --connect, LEVAIN_CONNECT, or the default socket.
    static func required() throws -> APIClient {
        if let client { return client }
        let path = SupervisorConfig().socketPath
        guard access(path, F_OK) == 0 else {
            throw UserError("no supervisor at \(path); start one with `levain serve`, or name it with --connect unix:PATH (before the command)")
        }
        return APIClient(address: .unix(path), token: token)
    }
}

/// Calls the supervisor and returns the JSON object of a 2xx reply.
func call(_ client: APIClient, _ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONObject {
    let reply: APIClient.Reply
    do {
        reply = try blocking { try await client.request(method, path, json: body) }
    } catch {
        throw UserError("cannot reach the supervisor at \(client.address): \(error)")
    }
    guard (200..<300).contains(reply.status) else { throw UserError(APIFailure(reply).description) }
    return reply.json ?? [:]
}

struct SessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List, show, create, close and reopen sessions.",
        discussion: """
        A session is a jail (PID 1: levain-harness) and a workspace that live
        across runs. `list` and `show` read the session log directly (--state)
        or ask a supervisor (--connect); the others need a supervisor.

        Examples:
          levain sessions
          levain sessions --status open --json
          levain --connect unix:/tmp/levain.sock sessions create --memory 256M --label team=ml
          levain sessions close s-0123456789ab
        """,
        subcommands: [List.self, Show.self, Create.self, Close.self, Reopen.self],
        defaultSubcommand: List.self
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sessions, newest first.")
        @OptionGroup var source: StateOption
        @Option(help: "Only this tenant's sessions.") var tenant: String?
        @Option(help: ArgumentHelp("Only sessions in this state: open, closed, failed, interrupted.", valueName: "STATUS")) var status: String?

        func run() throws {
            let list: [JSONValue] = Array(try LogSource.open(state: source.state).sessions(tenant: tenant, status: status).reversed())
            // The shape of GET /v1/sessions.
            if source.json { writeStdout(prettyJSON(["sessions": .array(list)]) + "\n"); return }
            let rows = list.map { s in
                [s["id"]?.cell ?? "-", s["status"]?.cell ?? "-", s["kind"]?.cell ?? "-", s["tenant"]?.cell ?? "",
                 s["policy"]?.cell ?? "-", s["created_at"]?.cell ?? "-"]
            }
            writeStdout(table(["SESSION", "STATUS", "KIND", "TENANT", "POLICY", "CREATED"], rows) + "\n")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a session and its runs.")
        @OptionGroup var source: StateOption
        @Argument(help: ArgumentHelp("The session id (s-...).", valueName: "SESSION")) var id: String

        func run() throws {
            let src = try LogSource.open(state: source.state)
            guard let s = try src.session(id) else { throw UserError("no session \(id)") }
            let runs = try src.runs(session: id, status: nil)
            if source.json {
                var o = s.objectValue ?? [:]
                o["runs"] = .array(runs)
                writeStdout(prettyJSON(.object(o)) + "\n")
                return
            }
            var text = ""
            for key in ["id", "status", "kind", "tenant", "policy", "workspace", "created_at", "closed_at"] {
                text += key.padding(12) + (s[key]?.cell ?? "-") + "\n"
            }
            text += "limits".padding(12) + (s["limits"]?.encoded() ?? "{}") + "\n"
            text += "labels".padding(12) + (s["labels"]?.encoded() ?? "{}") + "\n\n"
            text += runsTable(runs) + "\n"
            writeStdout(text)
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open a session (a jail) in the supervisor; prints its id.")
        @Option(help: ArgumentHelp("A built-in policy name or a policy file the supervisor can read.", valueName: "NAME|PATH")) var policy: String?
        @Option(help: "Tenant the session belongs to.") var tenant: String?
        @Option(help: ArgumentHelp("A label (repeatable).", valueName: "KEY=VALUE")) var label: [String] = []
        @Option(help: ArgumentHelp("Memory limit of the whole session (e.g. 512M).", valueName: "SIZE")) var memory: String?
        @Option(help: ArgumentHelp("CPU limit in cores.", valueName: "N")) var cpus: Double?
        @Option(help: ArgumentHelp("Task limit of the whole session.", valueName: "N")) var pids: Int?
        @Option(help: ArgumentHelp("Default wall-clock limit of each run (30s, 5m).", valueName: "SECONDS")) var timeout: String?
        @Option(name: .customLong("ro"), help: ArgumentHelp("Bind a host path read-only (repeatable).", valueName: "HOST[:JAIL]")) var readOnly: [String] = []
        @Option(name: .customLong("rw"), help: ArgumentHelp("Bind a host path read-write (repeatable).", valueName: "HOST[:JAIL]")) var readWrite: [String] = []
        @Flag(help: "Print the session as JSON.") var json = false

        func run() throws {
            var body: JSONObject = [:]
            if let policy { body["policy"] = .string(policyArgument(policy)) }
            if let tenant { body["tenant"] = .string(tenant) }
            var labels: JSONObject = [:]
            for l in label {
                guard let eq = l.firstIndex(of: "="), eq != l.startIndex else { throw UserError("--label \(l): expected KEY=VALUE") }
                labels[String(l[..<eq])] = .string(String(l[l.index(after: eq)...]))
            }
            if !labels.isEmpty { body["labels"] = .object(labels) }
            var limits: JSONObject = [:]
            if let memory { limits["memory"] = .string(memory) }
            if let cpus { limits["cpus"] = .double(cpus) }
            if let pids { limits["pids"] = JSONValue(pids) }
            if let timeout { limits["timeout"] = .string(timeout) }
            if !limits.isEmpty { body["limits"] = .object(limits) }
            let binds = bindsJSON(readOnly: readOnly, readWrite: readWrite)
            if !binds.isEmpty { body["binds"] = .object(binds) }
            let s = try call(try Connection.required(), "POST", "/v1/sessions", .object(body))
            writeStdout(json ? prettyJSON(.object(s)) + "\n" : (s["id"]?.cell ?? "-") + "\n")
        }
    }

    struct Close: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Close a session: its runs are cancelled, its jail ends; the workspace stays.")
        @Argument(help: ArgumentHelp("The session id.", valueName: "SESSION")) var id: String

        func run() throws {
            let s = try call(try Connection.required(), "DELETE", "/v1/sessions/" + percentEncode(id))
            writeStdout("\(s["id"]?.cell ?? id) \(s["status"]?.cell ?? "closed")\n")
        }
    }

    struct Reopen: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reopen a session (after a supervisor restart or a failure) with its workspace.")
        @Argument(help: ArgumentHelp("The session id.", valueName: "SESSION")) var id: String

        func run() throws {
            let s = try call(try Connection.required(), "POST", "/v1/sessions/" + percentEncode(id) + "/reopen")
            writeStdout("\(s["id"]?.cell ?? id) \(s["status"]?.cell ?? "open")\n")
        }
    }
}

/// A policy argument as the supervisor should see it: a name as is, a path
/// made absolute (the supervisor's working directory is not ours).
func policyArgument(_ policy: String) -> String {
    (policy.contains("/") || policy.hasSuffix(".toml")) ? absolutePath(policy) : policy
}

/// `--ro`/`--rw` values for the API, host sides made absolute.
func bindsJSON(readOnly: [String], readWrite: [String]) -> JSONObject {
    func fix(_ spec: String) -> JSONValue {
        guard !spec.hasPrefix("/") else { return .string(spec) }
        return .string(absolutePath(spec))
    }
    var o: JSONObject = [:]
    if !readOnly.isEmpty { o["ro"] = .array(readOnly.map(fix)) }
    if !readWrite.isEmpty { o["rw"] = .array(readWrite.map(fix)) }
    return o
}

func runsTable(_ runs: [JSONValue]) -> String {
    let rows = runs.map { r -> [String] in
        let argv = r["request"]?.objectValue?["argv"]?.arrayValue?.compactMap(\.stringValue) ?? []
        var cmd = argv.joined(separator: " ")
        if cmd.count > 48 { cmd = String(cmd.prefix(45)) + "..." }
        return [r["id"]?.cell ?? "-", r["session"]?.cell ?? "-", r["status"]?.cell ?? "-", r["exit_status"]?.cell ?? "-",
                r["created_at"]?.cell ?? "-", cmd]
    }
    return table(["RUN", "SESSION", "STATUS", "EXIT", "CREATED", "COMMAND"], rows)
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}

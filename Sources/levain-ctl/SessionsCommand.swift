#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainAPI
import LevainCLI
import LevainJSON
import LevainPolicy
import LevainSessionLog

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
        let path = APIClient.Address.defaultSocketPath
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
            var spec = try sessionSpec(policy: policy.map(policyArgument) ?? "", labels: label, memory: memory, cpus: cpus.map { String($0) },
                                       pids: pids.map { String($0) }, readOnly: readOnly, readWrite: readWrite)
            spec.tenant = tenant ?? ""
            if let timeout {
                guard let v = Quantity.parseDuration(timeout), v > 0, v < 1e7 else {
                    throw UserError("--timeout \(timeout): expected seconds (e.g. 30, 1.5) or a duration (30s, 5m, 1h)")
                }
                spec.timeout = v
            }
            let body = spec.request
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
/// A session's spec from command-line options, checked here as the
/// supervisor would check it (sizes, numbers, binds with absolute host
/// paths), and sent as SessionSpec writes it. An empty policy is the
/// supervisor's default.
func sessionSpec(policy: String, labels: [String], memory: String?, cpus: String?, pids: String?,
                 readOnly: [String], readWrite: [String]) throws -> SessionSpec {
    var spec = SessionSpec(policy: policy)
    for l in labels {
        guard let eq = l.firstIndex(of: "="), eq != l.startIndex else { throw UserError("--label \(l): expected KEY=VALUE") }
        spec.labels[String(l[..<eq])] = String(l[l.index(after: eq)...])
    }
    if let memory {
        guard let v = Quantity.parseSize(memory), v >= 4 << 20 else { throw UserError("--memory \(memory): a size of at least 4M (e.g. 256M, 2G)") }
        spec.memory = v
    }
    if let cpus {
        guard let v = Double(cpus), v >= 0.01, v <= 4096 else { throw UserError("--cpus \(cpus): a number of cores between 0.01 and 4096, e.g. 0.5 or 2") }
        spec.cpus = v
    }
    if let pids {
        guard let v = Int(pids), v >= 1, v <= 4_194_304 else { throw UserError("--pids \(pids): a whole number, 1 or more") }
        spec.pids = v
    }
    for (option, items, writable) in [("--ro", readOnly, false), ("--rw", readWrite, true)] {
        for item in items {
            let absolute = item.hasPrefix("/") ? item : absolutePath(item)
            do throws(PolicyError) {
                spec.binds.append(try PolicyLoader.parseBind(absolute, writable: writable, optional: false, file: option, line: nil, key: option))
            } catch {
                throw UserError("\(option) \(item): \(error.message)")
            }
        }
    }
    return spec
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

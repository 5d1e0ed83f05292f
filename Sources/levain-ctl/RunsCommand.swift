#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainAPI
import LevainCLI
import LevainJSON
import LevainSessionLog

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List and show runs; wait for one; print its output.",
        discussion: """
        `list` and `show` read the session log directly (--state) or ask a
        supervisor (--connect); `wait` and `output` need a supervisor.
        To start a run in a session: levain --connect ADDR run --session ID -- CMD

        Examples:
          levain runs
          levain runs --session s-0123456789ab --status failed
          levain runs show r-0123456789ab --json
          levain runs output r-0123456789ab --stderr
        """,
        subcommands: [List.self, Show.self, Wait.self, Output.self],
        defaultSubcommand: List.self
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")
        @OptionGroup var source: StateOption
        @Option(help: ArgumentHelp("Only this session's runs.", valueName: "SESSION")) var session: String?
        @Option(help: ArgumentHelp("Only runs in this state: queued, starting, running, succeeded, failed, cancelled, timed_out, interrupted, error.", valueName: "STATUS")) var status: String?

        func run() throws {
            let list: [JSONValue] = Array(try LogSource.open(state: source.state).runs(session: session, status: status).reversed())
            // --json: the shape of GET /v1/runs, from the daemon or the file alike.
            writeStdout(source.json ? prettyJSON(["runs": .array(list)]) + "\n" : runsTable(list) + "\n")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a run and its events.")
        @OptionGroup var source: StateOption
        @Argument(help: ArgumentHelp("The run id (r-...).", valueName: "RUN")) var id: String

        func run() throws {
            let src = try LogSource.open(state: source.state)
            guard let r = try src.run(id) else { throw UserError("no run \(id)") }
            let events = try src.events(run: id)
            if source.json {
                var o = r.objectValue ?? [:]
                o["events"] = .array(events)
                writeStdout(prettyJSON(.object(o)) + "\n")
                return
            }
            var text = ""
            for key in ["id", "session", "status", "exit_status", "exit_code", "signal", "error", "attempt", "retry",
                        "idempotency_key", "created_at", "started_at", "finished_at"] {
                text += key.padding(16) + (r[key]?.cell ?? "-") + "\n"
            }
            text += "request".padding(16) + (r["request"]?.encoded() ?? "{}") + "\n\n"
            text += events.map(eventLine).joined(separator: "\n") + "\n"
            writeStdout(text)
        }
    }

    struct Wait: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait for a run to end; exit with its status (the command's, 128+N for signal N).")
        @Argument(help: ArgumentHelp("The run id.", valueName: "RUN")) var id: String
        @Option(help: ArgumentHelp("Give up after this many seconds (exit 124).", valueName: "SECONDS")) var timeout: Double?
        @Flag(help: "Print the run as JSON.") var json = false

        func run() throws {
            let r = try call(try Connection.required(), "POST", "/v1/runs/\(percentEncode(id))/wait" + (timeout.map { "?timeout=\($0)" } ?? ""))
            if json { writeStdout(prettyJSON(.object(r)) + "\n") }
            guard let status = r["exit_status"]?.intValue else {
                if !json { printError("run \(id) is still \(r["status"]?.cell ?? "running")") }
                throw ExitCode(124)
            }
            if !json { writeStdout("\(id) \(r["status"]?.cell ?? "-") exit_status=\(status)\n") }
            throw ExitCode(Int32(truncatingIfNeeded: status))
        }
    }

    struct Output: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a run's stdout (or stderr); follows a live run to its end.")
        @Argument(help: ArgumentHelp("The run id.", valueName: "RUN")) var id: String
        @Flag(help: "Print stderr instead of stdout.") var stderr = false
        @Flag(name: .customLong("no-follow"), help: "Print what there is now and stop.") var noFollow = false
        @Option(help: ArgumentHelp("Start at this byte.", valueName: "N")) var offset: UInt64 = 0

        func run() throws {
            let client = try Connection.required()
            let path = "/v1/runs/\(percentEncode(id))/output/\(stderr ? "stderr" : "stdout")?offset=\(offset)&follow=\(!noFollow)"
            try blocking {
                var failure: APIClient.Reply? = nil
                var errorBody: [UInt8] = []
                try await client.stream("GET", path, onHead: { status, headers in
                    if status != 200 { failure = APIClient.Reply(status: status, headers: headers, body: []) }
                }, onChunk: { chunk in
                    if failure != nil { errorBody += chunk; return true }
                    return writeAll(1, chunk)
                })
                if var f = failure {
                    f.body = errorBody
                    throw UserError(APIFailure(f).description)
                }
            }
        }
    }
}

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a run: its whole process tree is killed (through its cgroup) at once.",
        discussion: """
        Needs a supervisor (--connect, LEVAIN_CONNECT or the default socket).
        A queued run never starts; a running one is killed and recorded as
        cancelled; a finished one is left as it is.

        Example:
          levain cancel r-0123456789ab
        """
    )

    @Argument(help: ArgumentHelp("The run id.", valueName: "RUN")) var id: String
    @Flag(help: "Print the run as JSON.") var json = false

    func run() throws {
        let r = try call(try Connection.required(), "POST", "/v1/runs/\(percentEncode(id))/cancel")
        writeStdout(json ? prettyJSON(.object(r)) + "\n" : "\(id) \(r["status"]?.cell ?? "-")\n")
    }
}

/// One event as a line: seq, time, type, run, payload.
func eventLine(_ e: JSONValue) -> String {
    let seq = e["seq"]?.cell ?? "-"
    let time = e["time"]?.cell ?? "-"
    let type = e["type"]?.cell ?? "-"
    let run = e["run"]?.isNull == false ? e["run"]!.cell : ""
    let payload = e["payload"]?.encoded() ?? "{}"
    return "\(seq.padding(5))\(time)  \(type.padding(20))\(run.isEmpty ? "" : run + "  ")\(payload)"
}

/// Writes all of `bytes` to `fd`; false when the reader went away.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        off += n
    }
    return true
}

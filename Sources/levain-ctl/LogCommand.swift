#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainAPI
import LevainCLI
import LevainJSON
import LevainSessionLog

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Read, follow, verify and export the session log.",
        discussion: """
        The session log (SQLite, WAL, in the state directory) is written only
        by the supervisor and by `levain run`, outside every jail. Each event
        carries a SHA-256 hash chaining it to the previous event of its
        session; `verify` recomputes the chains (docs/SESSION_LOG.md).

        Every subcommand reads the log file directly (--state, default
        /var/lib/levain) or asks a supervisor (--connect before the command).

        Examples:
          levain log show s-0123456789ab
          levain log show r-0123456789ab --json
          levain log show r-0123456789ab      an agent run: its timeline (--raw: the events)
          levain log tail -f
          levain log verify                 exit 1 and the first bad event if a chain is broken
          levain log export --jsonl --session s-0123456789ab -o session.jsonl
        """,
        subcommands: [Show.self, Tail.self, Verify.self, Export.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The events of a session (s-...) or of a run (r-...), in order.")
        @OptionGroup var source: StateOption
        @Argument(help: ArgumentHelp("A session id or a run id.", valueName: "SESSION|RUN")) var id: String
        @Flag(help: "An agent run's events as they are, not as a timeline.") var raw = false

        func run() throws {
            let src = try LogSource.open(state: source.state)
            let events: [JSONValue]
            if id.hasPrefix("r-") {
                guard try src.run(id) != nil else { throw UserError("no run \(id) in the log") }
                events = try src.events(run: id)
            } else {
                guard try src.session(id) != nil else { throw UserError("no session \(id) in the log (ids look like s-0123456789ab or r-0123456789ab)") }
                var all: [JSONValue] = []
                var after: Int64 = 0
                while true {
                    let page = try src.events(session: id, afterSeq: after, limit: 1000)
                    all += page
                    guard page.count == 1000, let last = page.last?["seq"]?.intValue else { break }
                    after = last
                }
                events = all
            }
            // An agent run reads as a timeline (--raw: the events).
            if id.hasPrefix("r-"), !raw, AgentTimeline.isAgentRun(events) {
                // A tool call's audited system calls are its run's (an exec
                // tool's run), in the session: nested under the call.
                let audited = try AgentTimeline.auditedCalls(of: events, in: src)
                if source.json {
                    writeStdout(prettyJSON(["run": .string(id), "timeline": .array(AgentTimeline.items(events, audited: audited)),
                                            "events": .array(events)]) + "\n")
                } else {
                    writeStdout(AgentTimeline.text(run: id, events, audited: audited))
                }
                return
            }
            if source.json { writeStdout(prettyJSON(.array(events)) + "\n"); return }
            writeStdout(events.map(eventLine).joined(separator: "\n") + (events.isEmpty ? "" : "\n"))
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The last events of the whole log; -f follows new ones.")
        @OptionGroup var source: StateOption
        @Flag(name: .shortAndLong, help: "Keep printing events as they are written (Ctrl-C stops).") var follow = false
        @Option(name: .short, help: ArgumentHelp("How many of the last events to print first.", valueName: "N")) var n: Int = 20
        @Option(help: ArgumentHelp("Only this session's events.", valueName: "SESSION")) var session: String?

        func run() throws {
            guard n >= 0 else { throw UserError("-n must be 0 or more") }
            let src = try LogSource.open(state: source.state)
            var cursor: Int64 = 0
            // The last n events (of the session when given).
            let lastID = try self.lastID(src)
            var start = max(0, lastID - Int64(n))
            var shown: [JSONValue] = []
            while shown.count < n || session == nil {
                let page = try src.events(afterID: start, limit: 1000)
                guard !page.isEmpty else { break }
                start = page.last?["id"]?.intValue ?? start
                shown += page.filter { session == nil || $0["session"]?.stringValue == session }
                if page.count < 1000 { break }
            }
            // With a session filter the window above may hold fewer than n of
            // its events; a session's own list gives the rest.
            if let session, shown.count < n {
                let all = try src.events(session: session, afterSeq: 0, limit: 100_000)
                shown = Array(all.suffix(n))
            }
            for e in shown.suffix(n) { print(e) }
            cursor = max(lastID, shown.last?["id"]?.intValue ?? 0)
            guard follow else { return }
            while true {
                let page = try src.events(afterID: cursor, limit: 1000)
                for e in page {
                    cursor = e["id"]?.intValue ?? cursor
                    if session == nil || e["session"]?.stringValue == session { print(e) }
                }
                if page.count < 1000 { usleep(200_000) }
            }
        }

        func lastID(_ src: LogSource) throws -> Int64 {
            switch src {
            case .file(let log):
                do { return try log.lastEventID() } catch { throw UserError("\(error)") }
            case .daemon:
                return try src.get("/v1/log/events?tail=1")["last_id"]?.intValue ?? 0
            }
        }

        func print(_ e: JSONValue) {
            writeStdout((source.json ? e.encoded() : "\(e["session"]?.cell ?? "-")  " + eventLine(e)) + "\n")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute every hash chain (or one session's); exit 1 naming the first event that does not match.")
        @OptionGroup var source: StateOption
        @Argument(help: ArgumentHelp("Only this session.", valueName: "SESSION")) var session: String?

        func run() throws {
            let report = try LogSource.open(state: source.state).verify(session: session)
            let ok = report["ok"]?.boolValue ?? false
            if source.json {
                writeStdout(prettyJSON(.object(report)) + "\n")
            } else {
                writeStdout((report["report"]?.stringValue ?? "") + "\n")
            }
            guard ok else {
                if let first = report["first_bad_event"]?.objectValue {
                    printError("log verify failed: the first event that does not match is seq \(first["seq"]?.cell ?? "?") of session \(first["session"]?.cell ?? "?") (event id \(first["id"]?.cell ?? "?"))")
                } else {
                    printError("log verify failed: \(report["integrity_errors"]?.arrayValue?.first?.cell ?? "the database is damaged")")
                }
                throw ExitCode(1)
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export events as JSON Lines, one event per line with its hashes (docs/SESSION_LOG.md).")
        @OptionGroup var source: StateOption
        @Flag(help: "JSON Lines (the only format; the flag is accepted for clarity).") var jsonl = false
        @Option(help: ArgumentHelp("Only this session.", valueName: "SESSION")) var session: String?
        @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file (atomically) instead of stdout.", valueName: "FILE")) var output: String?

        func run() throws {
            // An export is JSON Lines, the format its hashes are checked
            // in; --json (of the shared options) would mean another shape.
            if source.json {
                throw UserError("log export writes JSON Lines (one event per line, with its hashes; docs/SESSION_LOG.md) and nothing else: drop --json (--jsonl is the default)")
            }
            let src = try LogSource.open(state: source.state)
            if let session, try src.session(session) == nil {
                throw UserError("no session \(session) in the log (ids look like s-0123456789ab)")
            }
            guard let output else {
                try src.export(session: session) { line in writeStdout(line + "\n") }
                return
            }
            let target = absolutePath(output)
            let tmp = target + ".tmp-\(getpid())"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw UserError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
            var ok = true
            var count = 0
            do {
                try src.export(session: session) { line in
                    count += 1
                    if !writeAll(fd, Array((line + "\n").utf8)) { ok = false }
                }
            } catch {
                close(fd)
                unlink(tmp)
                throw error
            }
            if fsync(fd) != 0 { ok = false }
            close(fd)
            guard ok, rename(tmp, target) == 0 else {
                unlink(tmp)
                throw UserError("cannot write \(target): \(String(cString: strerror(errno)))")
            }
            printError("exported \(count) events to \(target)")
        }
    }
}

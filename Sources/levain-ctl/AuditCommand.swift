import ArgumentParser
import LevainCLI
import LevainJSON

/// `levain audit`: the `syscall.audited` events of a session, a run or a
/// tool call (docs/AUDIT.md), from the log file or a supervisor.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The audited system calls ([audit] in a policy) of a session, a run or a tool call.",
        discussion: """
        Each line is one call the supervisor saw before it happened, in order:
        its log position, time, run, system call and what it named (the
        program and argv of an exec, the path of a write, the address of a
        connect). Give one of --session, --run or --call; --syscall (repeatable)
        keeps only those calls.

        Examples:
          levain audit --run r-0123456789ab
          levain audit --session s-0123456789ab --syscall execve --syscall connect
          levain audit --call c-0123456789ab --json
        """)

    @OptionGroup var source: StateOption
    @Option(help: ArgumentHelp("The calls of a session.", valueName: "SESSION")) var session: String?
    @Option(name: .customLong("run"), help: ArgumentHelp("The calls of a run.", valueName: "RUN")) var runID: String?
    @Option(help: ArgumentHelp("The calls of a tool call (its levain.call_id); with --session, only that session is read.", valueName: "CALL"))
    var call: String?
    @Option(help: ArgumentHelp("Only this system call (execve, openat, connect, ...); repeatable.", valueName: "NAME"))
    var syscall: [String] = []

    func validate() throws {
        guard session != nil || runID != nil || call != nil else {
            throw ValidationError("give --session, --run or --call (see levain audit --help)")
        }
        if session != nil && runID != nil { throw ValidationError("give --session or --run, not both") }
    }

    func run() throws {
        let src = try LogSource.open(state: source.state)
        var events: [JSONValue] = []
        if let runID {
            guard try src.run(runID) != nil else { throw UserError("no run \(runID) in the log") }
            events = try src.events(run: runID)
        } else if let session {
            guard try src.session(session) != nil else { throw UserError("no session \(session) in the log") }
            var after: Int64 = 0
            while true {
                let page = try src.events(session: session, afterSeq: after, limit: 1000)
                events += page.filter(Self.isAudit)
                guard page.count == 1000, let last = page.last?["seq"]?.intValue else { break }
                after = last
            }
        } else {
            // A tool call alone: the whole log, page by page.
            var after: Int64 = 0
            while true {
                let page = try src.events(afterID: after, limit: 1000)
                events += page.filter(Self.isAudit)
                guard page.count == 1000, let last = page.last?["id"]?.intValue else { break }
                after = last
            }
        }
        let shown = events.filter { e in
            guard Self.isAudit(e) else { return false }
            let p = e["payload"]
            if let call, p?["gen_ai.tool.call.id"]?.stringValue != call { return false }
            if !syscall.isEmpty, !syscall.contains(p?["syscall"]?.stringValue ?? "") { return false }
            return true
        }
        if source.json { writeStdout(prettyJSON(.array(shown)) + "\n"); return }
        writeStdout(shown.map(Self.line).joined(separator: "\n") + (shown.isEmpty ? "" : "\n"))
    }

    static func isAudit(_ e: JSONValue) -> Bool { e["type"]?.stringValue == "syscall.audited" }

    static func line(_ e: JSONValue) -> String {
        let seq = e["seq"]?.cell ?? "-"
        let time = e["time"]?.cell ?? "-"
        let run = e["run"]?.stringValue ?? "-"
        return "\(seq.padding(6))\(time)  \(run.padding(16))\(summary(e))"
    }

    /// "execve     pid 3    cat a (/usr/bin/cat)": the call, its process, what it named.
    static func summary(_ e: JSONValue) -> String {
        let p = e["payload"]
        let name = p?["syscall"]?.stringValue ?? "?"
        var what: [String] = []
        if let argv = p?["argv"]?.arrayValue {
            what.append(argv.compactMap(\.stringValue).map(shellQuoted).joined(separator: " "))
            if let path = p?["path"]?.stringValue, path != argv.first?.stringValue { what.append("(\(path))") }
        } else if let path = p?["path"]?.stringValue {
            what.append(path)
            if let to = p?["to"]?.stringValue { what.append("-> \(to)") }
        }
        if let a = p?["address"]?.stringValue { what.append(a) }
        if let t = p?["target"]?.intValue { what.append("pid \(t)") }
        if let s = p?["signal"]?.intValue { what.append("signal \(s)") }
        if let c = p?["count"]?.intValue { what.append("(\(c) calls)") }
        if p?["truncated"]?.boolValue == true { what.append("[truncated]") }
        if p?["decision"]?.stringValue == "deny" { what.append("DENIED (\(p?["levain.rule"]?.stringValue ?? "?"))") }
        let pid = p?["pid"]?.intValue.map { "pid \($0)" } ?? ""
        return "\(name.padding(11))\(pid.padding(9))\(what.joined(separator: " "))"
    }

    static func shellQuoted(_ s: String) -> String {
        let plain = s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || "0123456789-_./=:,+@%".unicodeScalars.contains($0) }
        return plain && !s.isEmpty ? s : "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}

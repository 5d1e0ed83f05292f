#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainCLI

/// `levain`: the one-shot jail (`run`), `doctor` and `policy`, in a binary
/// kept small so that a run starts fast; the supervisor's commands (`serve`,
/// `sessions`, `runs`, `cancel`, `log`, `usage`, and anything with `--connect`) are
/// served by `levain-ctl` next to it, which this program execs.
struct Levain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "levain",
        abstract: LevainHelp.abstract,
        discussion: LevainHelp.discussion,
        version: LevainVersion.string,
        subcommands: [RunCommand.self, ServeStub.self, SessionsStub.self, RunsStub.self, CancelStub.self,
                      LogStub.self, AuditStub.self, UsageStub.self, AgentStub.self, ApprovalsStub.self, ApproveStub.self, MCPStub.self, DoctorCommand.self, PolicyCommand.self]
    )
}

// Listed in `levain --help`; `levain CMD ...` runs levain-ctl before any
// parsing, so these never run.
struct ServeStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the supervisor: sessions, the run queue, the session log, the control API.")
}
struct SessionsStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sessions", abstract: "List, show, create, close and reopen sessions.")
}
struct RunsStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "runs", abstract: "List and show runs; wait for one; print its output.")
}
struct CancelStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a run: its whole process tree is killed at once.")
}
struct LogStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "Read, follow, verify and export the session log.")
}

struct AuditStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "The audited system calls ([audit] in a policy) of a session, a run or a tool call.")
}
struct AgentStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the built-in agent loop in a session.")
}
struct ApprovalsStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "approvals", abstract: "List the tool calls waiting for a decision.")
}
struct ApproveStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "approve", abstract: "Allow or deny a tool call that waits for approval.")
}
struct MCPStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mcp", abstract: "Serve Levain's sessions as MCP tools over stdio (for Claude Code, Cursor, any MCP client).")
}
struct UsageStub: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "Sum the tokens and cost of model calls through the gateway.")
}

/// Replaces this process with levain-ctl (next to this binary), same arguments.
func execControl(_ args: [String]) -> Never {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    let dir = exe.lastIndex(of: "/").map { String(exe[..<$0]) } ?? "."
    let ctl = dir + "/levain-ctl"
    var cargs: [UnsafeMutablePointer<CChar>?] = (["levain"] + args).map { strdup($0) } + [nil]
    execv(ctl, &cargs)
    writeStderr("levain: cannot run \(ctl) (it serves serve, sessions, runs, cancel, log and --connect): \(String(cString: strerror(errno)))\n")
    exit(LevainExit.error)
}

@main
enum Main {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        let first = args.first ?? ""
        let connectEnv = getenv("LEVAIN_CONNECT").map { String(cString: $0) } ?? ""
        if first == "--connect" || first.hasPrefix("--connect=") || controlCommands.contains(first)
            || (first == "help" && args.count > 1 && controlCommands.contains(args[1]))
            || (first == "run" && !connectEnv.isEmpty) {
            execControl(args)
        }
        do {
            // `levain run` is the hot path: parse it without ArgumentParser's
            // reflection when the arguments are plain (see RunOptions.parse).
            if first == "run", let fast = RunOptions.parse(Array(args.dropFirst())) {
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
        } catch {
            exitOnError(error, of: Levain.self)
        }
    }
}

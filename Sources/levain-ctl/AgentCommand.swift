#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CLevainSpawn
import LevainAPI
import LevainCLI
import LevainJSON
import LevainPolicy
import LevainSessionLog

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the built-in agent loop in a session.",
        discussion: """
        An agent file (TOML) names the model, the instructions, the tools and
        the bounds (docs/TOOLS.md):

          model = "gpt-4o-mini"          # a [models."NAME"] of the supervisor's config
          instructions = "You fix the tests in the workspace."
          tools = ["read_file", "write_file", "exec"]
          max_steps = 12
          wall_time = "5m"
          [budget]
          tokens = 50000

        The loop asks the model through the session's gateway, runs the tools
        it asks for through the session's tool policy (approvals included;
        see levain approvals), and stops with a stated reason: final_answer, max_steps, budget,
        timeout, cancelled, invalid_output or error. The answer is printed
        (and is the run's stdout); the reason goes to stderr. Exit status 0
        for a final answer, 1 for another reason, 137 when timed out or
        cancelled. Ctrl-C (SIGINT), SIGTERM and SIGHUP cancel the run.

        Examples:
          levain agent run fixer.toml --input "make the tests pass" --session s-0123456789ab
          levain agent run fixer.toml --input "..." --policy /etc/levain/agents.toml
          levain log show r-0123456789ab          the timeline of the run
        """,
        subcommands: [Run.self]
    )

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run an agent file on an input; print its answer.")
        @Argument(help: ArgumentHelp("The agent file (TOML).", valueName: "AGENT.toml")) var file: String
        @Option(help: ArgumentHelp("The task, as text.", valueName: "TEXT")) var input: String
        @Option(help: ArgumentHelp("Run in this open session; without it a session is made for the run and closed after.", valueName: "SESSION")) var session: String?
        @Option(help: ArgumentHelp("The policy of the session made for the run (a built-in name or a file).", valueName: "POLICY")) var policy: String?
        @Flag(help: "Print the finished run as JSON.") var json = false

        func run() throws {
            let text: String
            do { text = try PolicyLoader.readFile(file, what: "an agent file is a few KiB") } catch {
                throw UserError("the agent file: \(error)")
            }
            let client = try Connection.required()
            var sessionID = session
            var made = false
            if sessionID == nil {
                var body: JSONObject = ["labels": [Attribute.agent: .string(file)]]
                if let policy { body["policy"] = .string(policy.contains("/") ? absolutePath(policy) : policy) }
                let s = try call(client, "POST", "/v1/sessions", .object(body))
                sessionID = s["id"]?.stringValue
                made = true
            }
            guard let sid = sessionID else { throw UserError("the supervisor made no session") }
            defer { if made { _ = try? call(client, "DELETE", "/v1/sessions/\(percentEncode(sid))") } }
            // SIGINT, SIGTERM and SIGHUP cancel the run (and end this command
            // with its cancelled status), rather than leave it going.
            let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
            let signalFD = signals.withUnsafeBufferPointer { lv_block_signals_fd($0.baseAddress, $0.count) }
            let started = try call(client, "POST", "/v1/sessions/\(percentEncode(sid))/agent-runs",
                                   ["agent": .string(text), "agent_file": .string(file), "input": .string(input)])
            let id = started["id"]?.stringValue ?? "?"
            if signalFD >= 0 {
                _ = Thread.detach {
                    guard lv_read_signal(signalFD) > 0 else { return }
                    _ = try? blocking { try await client.request("POST", "/v1/runs/\(percentEncode(id))/cancel") }
                }
            }
            let r = try call(client, "POST", "/v1/runs/\(percentEncode(id))/wait")
            if json {
                writeStdout(prettyJSON(.object(r)) + "\n")
            } else {
                let reply = try blocking { try await client.request("GET", "/v1/runs/\(percentEncode(id))/output/stdout?follow=false") }
                let answer = String(decoding: reply.body, as: UTF8.self)
                if !answer.isEmpty { writeStdout(answer + (answer.hasSuffix("\n") ? "" : "\n")) }
                let status = r["status"]?.stringValue ?? "?"
                let error = r["error"]?.stringValue.map { ": " + $0 } ?? ""
                printError("agent run \(id) \(status)\(error) (levain log show \(id))")
            }
            let exit = r["exit_status"]?.intValue ?? 1
            if exit != 0 { throw ExitCode(Int32(truncatingIfNeeded: exit)) }
        }
    }
}

struct ApprovalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List the tool calls waiting for a decision.",
        discussion: """
        A tool that the session's policy lists in [tools] approve waits here
        until someone decides (levain approve) or approval_timeout passes
        (then it is denied). Both are in the session log.

        Examples:
          levain approvals
          levain approvals --session s-0123456789ab --json
        """)
    @Option(help: ArgumentHelp("Only this session's.", valueName: "SESSION")) var session: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let r = try call(try Connection.required(), "GET", "/v1/approvals" + (session.map { "?session=\(percentEncode($0))" } ?? ""))
        let list = r["approvals"]?.arrayValue ?? []
        // The shape of GET /v1/approvals.
        if json { writeStdout(prettyJSON(.object(r)) + "\n"); return }
        if list.isEmpty { writeStdout("no tool call waits for approval\n"); return }
        var text = "CALL".padding(16) + "SESSION".padding(16) + "RUN".padding(16) + "TOOL".padding(24) + "REQUESTED".padding(29) + "ARGUMENTS\n"
        for a in list {
            text += (a["call_id"]?.cell ?? "-").padding(16) + (a["session"]?.cell ?? "-").padding(16) + (a["run"]?.cell ?? "-").padding(16)
                + (a["tool"]?.cell ?? "-").padding(24) + (a["requested_at"]?.cell ?? "-").padding(29) + String((a["arguments"]?.encoded() ?? "").prefix(200)) + "\n"
        }
        writeStdout(text)
    }
}

struct ApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Allow or deny a tool call that waits for approval.",
        discussion: """
        The decision, who made it (--by, default the user running this) and
        the reason go into the session log as approval.decided; a denied call
        reaches the agent as a tool error it can react to.

        Examples:
          levain approve c-0123456789ab --allow --reason "checked the diff"
          levain approve c-0123456789ab --deny --reason "no network writes today"
        """)
    @Argument(help: ArgumentHelp("The call id (c-..., from levain approvals).", valueName: "CALL_ID")) var id: String
    @Flag(help: "Let the call run.") var allow = false
    @Flag(help: "Refuse the call.") var deny = false
    @Option(help: ArgumentHelp("Why (recorded).", valueName: "TEXT")) var reason: String
    @Option(help: ArgumentHelp("Who decides (recorded); default: the login name.", valueName: "NAME")) var by: String?

    func validate() throws {
        guard allow != deny else { throw ValidationError("give exactly one of --allow and --deny") }
    }

    func run() throws {
        let who = by ?? getenv("SUDO_USER").map { String(cString: $0) } ?? getenv("USER").map { String(cString: $0) } ?? "uid \(getuid())"
        let r = try call(try Connection.required(), "POST", "/v1/approvals/\(percentEncode(id))",
                         ["decision": .string(allow ? "allow" : "deny"), "reason": .string(reason), "by": .string(who)])
        writeStdout("\(id) \(allow ? "allowed" : "denied") by \(who): \(r["tool"]?.cell ?? "?") \(String((r["arguments"]?.encoded() ?? "").prefix(200)))\n")
    }
}

/// An agent run's events as a timeline a person reads: model turns, tool
/// calls with their arguments and results, approvals, usage and cost, and
/// why it stopped. `json` gives the same as a structure.
enum AgentTimeline {
    static func isAgentRun(_ events: [JSONValue]) -> Bool { events.contains { $0["type"]?.stringValue == EventType.agentStarted } }

    /// The `syscall.audited` events of the session that name one of this
    /// run's tool calls, by call id (empty when nothing was audited).
    static func auditedCalls(of events: [JSONValue], in src: LogSource) throws -> [String: [JSONValue]] {
        let calls = Set(events.filter { $0["type"]?.stringValue == EventType.toolStarted }
            .compactMap { $0["payload"]?[Attribute.callId]?.stringValue })
        guard !calls.isEmpty, let session = events.first?["session"]?.stringValue else { return [:] }
        var out: [String: [JSONValue]] = [:]
        var after: Int64 = 0
        while true {
            let page = try src.events(session: session, afterSeq: after, limit: 1000)
            for e in page where e["type"]?.stringValue == EventType.syscallAudited {
                if let call = e["payload"]?[Attribute.genAIToolCallId]?.stringValue, calls.contains(call) { out[call, default: []].append(e) }
            }
            guard page.count == 1000, let last = page.last?["seq"]?.intValue else { break }
            after = last
        }
        return out
    }

    static func items(_ events: [JSONValue], audited: [String: [JSONValue]] = [:]) -> [JSONValue] {
        var out: [JSONValue] = []
        var turn = 0
        for e in events {
            let p = e["payload"]?.objectValue ?? [:]
            let type = e["type"]?.stringValue ?? ""
            var item: JSONObject = ["time": e["time"] ?? .null, "type": .string(type)]
            switch type {
            case EventType.agentStarted:
                item["agent"] = p[Attribute.genAIAgentName]; item["model"] = p[Attribute.genAIRequestModel]; item["input"] = p[Attribute.input]
                item["tools"] = p[Attribute.tools]; item["max_steps"] = p[Attribute.maxSteps]
            case EventType.modelRequest:
                if p[Attribute.decision]?.stringValue == "allowed" { turn += 1 }
                item["turn"] = JSONValue(turn); item["model"] = p[Attribute.genAIRequestModel]; item["decision"] = p[Attribute.decision]
                item["rule"] = p[Attribute.rule]; item["message"] = p[Attribute.message]
            case EventType.modelResponse:
                item["turn"] = JSONValue(turn); item["finish_reasons"] = p[Attribute.genAIResponseFinishReasons]
                item["input_tokens"] = p[Attribute.genAIUsageInputTokens]; item["output_tokens"] = p[Attribute.genAIUsageOutputTokens]
                item["cost"] = p[Attribute.cost]; item["latency_ms"] = p[Attribute.latencyMs]; item["status"] = p["http.response.status_code"]
            case EventType.toolStarted, EventType.toolFinished, EventType.toolDenied, EventType.approvalRequested, EventType.approvalDecided:
                item["tool"] = p[Attribute.genAIToolName]; item["call_id"] = p[Attribute.callId]; item["tool_call_id"] = p[Attribute.genAIToolCallId]
                item["arguments"] = p[Attribute.arguments]
                for (k, v) in p where k.hasPrefix("levain.") && ![Attribute.callId, Attribute.arguments, Attribute.origin].contains(k) {
                    item[String(k.dropFirst(7))] = v
                }
                if type == EventType.toolStarted, let call = p[Attribute.callId]?.stringValue, let calls = audited[call] {
                    item["syscalls"] = .array(calls)
                }
            case EventType.agentFinished:
                item["reason"] = p[Attribute.reason]; item["detail"] = p[Attribute.detail]; item["output"] = p[Attribute.output]
                item["steps"] = p[Attribute.steps]; item["tool_calls"] = p[Attribute.toolCalls]
                item["input_tokens"] = p[Attribute.genAIUsageInputTokens]; item["output_tokens"] = p[Attribute.genAIUsageOutputTokens]; item["cost"] = p[Attribute.cost]
            case EventType.runQueued, EventType.runStarted, EventType.runFinished, EventType.runCancelRequested:
                item["status"] = p["status"]; item["error"] = p["error"]
            default:
                continue
            }
            out.append(.object(item.filter { !$0.value.isNull }))
        }
        return out
    }

    static func text(run: String, _ events: [JSONValue], audited: [String: [JSONValue]] = [:]) -> String {
        var s = ""
        func clock(_ v: JSONValue?) -> String {
            guard let t = v?.stringValue, let i = t.firstIndex(of: "T") else { return "        " }
            return String(t[t.index(after: i)...].prefix(12))
        }
        func short(_ v: JSONValue?, _ n: Int = 160) -> String {
            let t = (v?.stringValue ?? v?.encoded() ?? "").replacingOccurrences(of: "\n", with: "⏎ ")
            return t.count > n ? String(t.prefix(n)) + "…" : t
        }
        for i in items(events, audited: audited) {
            let type = i["type"]?.stringValue ?? ""
            let at = clock(i["time"])
            switch type {
            case EventType.agentStarted:
                s += "\(at)  agent \(i["agent"]?.cell ?? "?") on \(i["model"]?.cell ?? "?"), tools \(i["tools"]?.encoded() ?? "[]"), max_steps \(i["max_steps"]?.cell ?? "?")\n"
                s += "\(at)    input: \(short(i["input"], 300))\n"
            case EventType.modelRequest:
                if i["decision"]?.stringValue == "allowed" {
                    s += "\(at)  model turn \(i["turn"]?.cell ?? "?") → \(i["model"]?.cell ?? "?")\n"
                } else {
                    s += "\(at)  model call refused (\(i["rule"]?.cell ?? "?")): \(short(i["message"]))\n"
                }
            case EventType.modelResponse:
                s += "\(at)    ← \(i["finish_reasons"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ",") ?? "status \(i["status"]?.cell ?? "?")"), "
                    + "\(i["input_tokens"]?.cell ?? "?") in / \(i["output_tokens"]?.cell ?? "?") out tokens, cost \(i["cost"]?.cell ?? "?"), \(i["latency_ms"]?.cell ?? "?") ms\n"
            case EventType.toolStarted:
                s += "\(at)    tool \(i["tool"]?.cell ?? "?") [\(i["call_id"]?.cell ?? "?")] \(short(i["arguments"]))\n"
                // What the call did in the jail, as `levain audit` prints it.
                for e in i["syscalls"]?.arrayValue ?? [] {
                    s += "\(clock(e["time"]))      ⤷ \(AuditCommand.summary(e))\n"
                }
            case EventType.toolFinished:
                s += "\(at)      → \(i["status"]?.cell ?? "?") in \(i["duration_ms"]?.cell ?? "?") ms: \(short(i["result"]))\n"
            case EventType.toolDenied:
                s += "\(at)    tool \(i["tool"]?.cell ?? "?") REFUSED (\(i["rule"]?.cell ?? "?")): \(short(i["message"]))\n"
            case EventType.approvalRequested:
                s += "\(at)    tool \(i["tool"]?.cell ?? "?") [\(i["call_id"]?.cell ?? "?")] waits for approval: \(short(i["arguments"]))\n"
            case EventType.approvalDecided:
                s += "\(at)      approval: \(i["decision"]?.cell ?? "?") by \(i["by"]?.cell ?? "?")\(i["timed_out"]?.boolValue == true ? " (timed out)" : ""): \(short(i["reason"]))\n"
            case EventType.agentFinished:
                s += "\(at)  stopped: \(i["reason"]?.cell ?? "?")\(i["detail"].map { " — " + short($0, 300) } ?? "")\n"
                s += "\(at)    \(i["steps"]?.cell ?? "?") model turns, \(i["tool_calls"]?.cell ?? "?") tool calls, \(i["input_tokens"]?.cell ?? "?") in / \(i["output_tokens"]?.cell ?? "?") out tokens, cost \(i["cost"]?.cell ?? "?")\n"
                if let o = i["output"] { s += "\(at)    answer: \(short(o, 2000))\n" }
            case EventType.runFinished:
                s += "\(at)  run \(run) \(i["status"]?.cell ?? "?")\(i["error"].map { ": " + short($0) } ?? "")\n"
            default: break
            }
        }
        return s
    }
}

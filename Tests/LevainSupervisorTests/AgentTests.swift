import Foundation
import LevainJSON
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The built-in agent loop end to end: a real supervisor, real jails, the
/// scripted provider (a real HTTP server) asking for tools, the session's
/// gateway and tool policy in the path, the real `levain approve` CLI.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct AgentTests {
    static let toolsPolicy = """
        [models]
        allow = ["gpt-4o-mini"]

        [tools]
        approve = ["edit_file"]
        approval_timeout = "60s"

        [tools.rules.write_file.args.path]
        path_prefix = ["notes/"]

        [tools.rules.exec]
        timeout = "2s"
        """

    static func agent(_ extra: String = "", tools: String = #"["write_file", "exec", "read_file", "edit_file"]"#) -> String {
        """
        name = "tester"
        model = "gpt-4o-mini"
        instructions = "You test levain."
        tools = \(tools)
        max_steps = 8
        wall_time = "60s"
        \(extra)
        """
    }

    static func call(_ name: String, _ args: JSONValue) -> JSONValue { ["name": .string(name), "arguments": args] }
    static func tools(_ calls: JSONValue...) -> JSONValue { ["tool_calls": .array(calls), "usage": [30, 10]] }

    struct Setup {
        let provider: ScriptedProvider
        let sv: TestSupervisor
        let session: String
        func cleanUp() { sv.cleanUp(); provider.stop() }

        func script(_ replies: [JSONValue], loop: Bool = false) throws {
            let body = JSONValue.object(["replies": .array(replies), "loop": .bool(loop)]).encoded()
            let r = try runProcess(["/usr/bin/curl", "-sS", "-X", "POST", "--data-binary", body, "http://127.0.0.1:\(provider.port)/_script"])
            guard r.status == 0 else { throw TestFailure("scripting the provider: \(r.stderr)") }
        }

        func startAgent(_ agent: String, input: String = "go") async throws -> String {
            let r = try await sv.request("POST", "/v1/sessions/\(session)/agent-runs", ["agent": .string(agent), "input": .string(input)])
            guard r.status == 201, let id = r.json?["id"]?.stringValue else { throw TestFailure("agent run: \(r.status) \(r.text)") }
            return id
        }

        func finished(_ run: String) async throws -> JSONObject {
            let events = try await sv.events(run: run)
            guard let p = events.last(where: { $0["type"]?.stringValue == "agent.finished" })?["payload"]?.objectValue else {
                throw TestFailure("no agent.finished: \(events.map { $0["type"]?.stringValue ?? "" })")
            }
            return p
        }
    }

    static func setUp(_ name: String, policy: String = toolsPolicy, config: (ScriptedProvider) -> String = { $0.config }) async throws -> Setup {
        let provider = try ScriptedProvider()
        let sv = try TestSupervisor(name, config: config(provider))
        try await sv.start(environment: provider.environment)
        let path = try writePolicy(sv.directory, name: "agent", extra: policy)
        let session = try await sv.openSession(["policy": .string(path), "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        return Setup(provider: provider, sv: sv, session: session)
    }

    static func approveScript(_ s: Setup) throws {
        try s.script([
            tools(call("write_file", ["path": "notes/a.txt", "content": "hello agent\n"])),
            tools(call("exec", ["command": "cat notes/a.txt; echo ran-in-jail"])),
            tools(call("read_file", ["path": "notes/a.txt"])),
            tools(call("edit_file", ["path": "notes/a.txt", "old_string": "hello", "new_string": "bye"])),
            ["text": "all done", "usage": [40, 2]],
        ])
    }

    /// Polls GET /v1/approvals until one call waits; its id.
    static func waitingCall(_ s: Setup) async throws -> JSONValue {
        for _ in 0..<600 {
            let r = try await s.sv.request("GET", "/v1/approvals?session=\(s.session)")
            if let a = r.json?["approvals"]?.arrayValue?.first { return a }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("no call waited for approval")
    }

    @Test("an agent writes a file, runs a command, reads the result, waits for an approval (allowed), answers; the log shows every step in order and verifies")
    func approved() async throws {
        let s = try await Self.setUp("agent-ok")
        defer { s.cleanUp() }
        try Self.approveScript(s)
        let run = try await s.startAgent(Self.agent(), input: "write, run, read, edit")
        let waiting = try await Self.waitingCall(s)
        #expect(waiting["tool"]?.stringValue == "edit_file")
        #expect(waiting["run"]?.stringValue == run)
        let callID = try #require(waiting["call_id"]?.stringValue)
        // The real CLI decides.
        let approve = try runProcess([levainBinary, "--connect", "unix:" + s.sv.socket, "approve", callID, "--allow", "--reason", "looked fine", "--by", "alice"])
        #expect(approve.status == 0, "\(approve.stderr)")
        let done = try await s.sv.wait(run)
        #expect(done["status"]?.stringValue == "succeeded", "\(done)")
        #expect(try await s.sv.output(run) == "all done")
        // The file went through the jail's workspace, edited after approval.
        let file = try await s.sv.request("GET", "/v1/sessions/\(s.session)/files/notes/a.txt")
        #expect(file.text == "bye agent\n")

        let events = try await s.sv.events(run: run)
        let types = events.compactMap { $0["type"]?.stringValue }
        let expected = ["run.queued", "run.started", "agent.started",
                        "model.request", "model.response", "tool.started", "tool.finished",
                        "model.request", "model.response", "tool.started", "tool.finished",
                        "model.request", "model.response", "tool.started", "tool.finished",
                        "model.request", "model.response", "approval.requested", "approval.decided", "tool.started", "tool.finished",
                        "model.request", "model.response", "agent.finished", "run.finished"]
        #expect(types == expected)
        let toolNames = events.filter { $0["type"]?.stringValue == "tool.finished" }.compactMap { $0["payload"]?["gen_ai.tool.name"]?.stringValue }
        #expect(toolNames == ["write_file", "exec", "read_file", "edit_file"])
        let results = events.filter { $0["type"]?.stringValue == "tool.finished" }.compactMap { $0["payload"]?["levain.result"]?.stringValue }
        #expect(results.count == 4 && results[1].contains("ran-in-jail") && results[1].contains("exit_code: 0"))
        #expect(results.count == 4 && results[2] == "hello agent\n")
        let decided = try #require(events.first { $0["type"]?.stringValue == "approval.decided" }?["payload"])
        #expect(decided["levain.decision"]?.stringValue == "allow")
        #expect(decided["levain.by"]?.stringValue == "alice")
        #expect(decided["levain.reason"]?.stringValue == "looked fine")
        let fin = try await s.finished(run)
        #expect(fin["levain.reason"]?.stringValue == "final_answer")
        #expect(fin["levain.steps"]?.intValue == 5)
        #expect(fin["gen_ai.usage.input_tokens"]?.intValue == 160)
        // The model saw the exec's output in the next turn.
        let sent = try s.provider.requests().filter { $0["path"] as? String == "/v1/chat/completions" }
        #expect(sent.count == 5)
        let third = (sent.count > 2 ? sent[2]["body"] as? [String: Any] : nil)?["messages"] as? [[String: Any]] ?? []
        #expect((third.last?["content"] as? String ?? "").contains("ran-in-jail"))
        // Verifies; the timeline reads.
        let verify = try runProcess([levainBinary, "log", "verify", "--state", s.sv.state])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let show = try runProcess([levainBinary, "log", "show", run, "--state", s.sv.state])
        #expect(show.stdout.contains("approval: allow by alice"), "\(show.stdout)")
        #expect(show.stdout.contains("stopped: final_answer"))
        #expect(show.stdout.contains("tool exec"))
        let json = try runProcess([levainBinary, "log", "show", run, "--state", s.sv.state, "--json"])
        let timeline = (try jsonObject(json.stdout))["timeline"] as? [[String: Any]] ?? []
        #expect(timeline.contains { $0["type"] as? String == "approval.decided" && $0["decision"] as? String == "allow" })
    }

    @Test("a denied approval reaches the agent as a tool error; the file is not edited; the agent answers")
    func denied() async throws {
        let s = try await Self.setUp("agent-deny")
        defer { s.cleanUp() }
        try Self.approveScript(s)
        let run = try await s.startAgent(Self.agent())
        let callID = try #require(try await Self.waitingCall(s)["call_id"]?.stringValue)
        let deny = try runProcess([levainBinary, "--connect", "unix:" + s.sv.socket, "approve", callID, "--deny", "--reason", "not today", "--by", "bob"])
        #expect(deny.status == 0, "\(deny.stderr)")
        // Deciding twice: nothing waits under that id any more.
        let again = try runProcess([levainBinary, "--connect", "unix:" + s.sv.socket, "approve", callID, "--allow", "--reason", "x"])
        #expect(again.status != 0 && again.stderr.contains("no tool call"))
        let done = try await s.sv.wait(run)
        #expect(done["status"]?.stringValue == "succeeded")
        let file = try await s.sv.request("GET", "/v1/sessions/\(s.session)/files/notes/a.txt")
        #expect(file.text == "hello agent\n")
        let events = try await s.sv.events(run: run)
        #expect(!events.contains { $0["type"]?.stringValue == "tool.started" && $0["payload"]?["gen_ai.tool.name"]?.stringValue == "edit_file" })
        let decided = events.first { $0["type"]?.stringValue == "approval.decided" }?["payload"]
        #expect(decided?["levain.decision"]?.stringValue == "deny")
        let sent = try s.provider.requests().filter { $0["path"] as? String == "/v1/chat/completions" }
        let last = (sent.last?["body"] as? [String: Any])?["messages"] as? [[String: Any]] ?? []
        #expect((last.last?["content"] as? String ?? "").contains("denied by bob"))
    }

    @Test("bounds: max steps, the agent's token budget, a hanging tool cut at its timeout, a cancelled run")
    func bounds() async throws {
        let s = try await Self.setUp("agent-bounds")
        defer { s.cleanUp() }
        // Keeps asking for tools: stops at max_steps.
        try s.script([Self.tools(Self.call("read_file", ["path": "nothing.txt"]))], loop: true)
        let r1 = try await s.startAgent(Self.agent("", tools: #"["read_file"]"#).replacingOccurrences(of: "max_steps = 8", with: "max_steps = 3"))
        let d1 = try await s.sv.wait(r1)
        #expect(d1["status"]?.stringValue == "failed")
        let f1 = try await s.finished(r1)
        #expect(f1["levain.reason"]?.stringValue == "max_steps")
        #expect(f1["levain.steps"]?.intValue == 3)
        // Control: the same loop with a final answer on turn 2 ends with it.
        try s.script([Self.tools(Self.call("read_file", ["path": "nothing.txt"])), "fine"])
        let r1b = try await s.startAgent(Self.agent("", tools: #"["read_file"]"#).replacingOccurrences(of: "max_steps = 8", with: "max_steps = 3"))
        _ = try await s.sv.wait(r1b)
        #expect(try await s.finished(r1b)["levain.reason"]?.stringValue == "final_answer")

        // 40 tokens a turn against a budget of 70: stops after turn 2.
        try s.script([Self.tools(Self.call("read_file", ["path": "x"]))], loop: true)
        let r2 = try await s.startAgent(Self.agent("[budget]\ntokens = 70", tools: #"["read_file"]"#))
        _ = try await s.sv.wait(r2)
        let f2 = try await s.finished(r2)
        #expect(f2["levain.reason"]?.stringValue == "budget")
        #expect(f2["levain.steps"]?.intValue == 2)

        // A tool that hangs is cut at its timeout (exec: 2 s by policy); the agent goes on.
        try s.script([Self.tools(Self.call("exec", ["command": "sleep 60"])), "gave up on it"])
        let r3 = try await s.startAgent(Self.agent())
        let d3 = try await s.sv.wait(r3)
        #expect(d3["status"]?.stringValue == "succeeded")
        let e3 = try await s.sv.events(run: r3)
        let fin3 = e3.first { $0["type"]?.stringValue == "tool.finished" }?["payload"]
        #expect(fin3?["levain.status"]?.stringValue == "timeout", "\(String(describing: fin3))")
        #expect((fin3?["levain.duration_ms"]?.doubleValue ?? 1e9) < 30_000)

        // Cancelled while a tool runs: stops, says so.
        try s.script([Self.tools(Self.call("exec", ["command": "sleep 60"])), "never"])
        let long = Self.agent().replacingOccurrences(of: "[tools]", with: "")
        let r4 = try await s.startAgent(long)
        #expect(await eventually(within: 30) {
            ((try? await s.sv.events(run: r4)) ?? []).contains { $0["type"]?.stringValue == "tool.started" }
        })
        let t0 = Date()
        let c = try await s.sv.request("POST", "/v1/runs/\(r4)/cancel")
        #expect(c.status == 200)
        let d4 = try await s.sv.wait(r4)
        let took = Date().timeIntervalSince(t0) * 1000
        print("agent cancel: run terminal \(String(format: "%.1f", took)) ms after POST cancel")
        #expect(d4["status"]?.stringValue == "cancelled")
        #expect(try await s.finished(r4)["levain.reason"]?.stringValue == "cancelled")
    }

    @Test("argument rules and schemas refuse before anything runs: write_file outside its prefix, a malformed input, an unknown tool")
    func refusals() async throws {
        let s = try await Self.setUp("agent-refuse")
        defer { s.cleanUp() }
        try s.script([
            Self.tools(Self.call("write_file", ["path": "etc/evil.txt", "content": "x"]),
                       Self.call("write_file", ["path": "notes/../../escape.txt", "content": "x"]),
                       Self.call("write_file", ["path": "notes/ok.txt"]),
                       Self.call("launch_missiles", [:]),
                       Self.call("write_file", ["path": "notes/ok.txt", "content": "control"])),
            "done",
        ])
        let run = try await s.startAgent(Self.agent())
        _ = try await s.sv.wait(run)
        let events = try await s.sv.events(run: run)
        let denied = events.filter { $0["type"]?.stringValue == "tool.denied" }.map { $0["payload"]?["levain.rule"]?.stringValue ?? "" }
        #expect(denied.sorted() == ["tools.rules.write_file.args.path", "tools.rules.write_file.args.path", "tools.schema", "tools.unknown"].sorted())
        let schema = events.first { $0["payload"]?["levain.rule"]?.stringValue == "tools.schema" }?["payload"]?["levain.message"]?.stringValue ?? ""
        #expect(schema.contains("\"content\" is required"), "\(schema)")
        let started = events.filter { $0["type"]?.stringValue == "tool.started" }
        #expect(started.count == 1)  // the control only
        let files = try await s.sv.request("GET", "/v1/sessions/\(s.session)/files?path=.")
        #expect(!files.text.contains("etc") && !files.text.contains("escape"))
        #expect(try await s.sv.request("GET", "/v1/sessions/\(s.session)/files/notes/ok.txt").text == "control")
    }

    @Test("an output schema is enforced with one repair; a tool's output cap holds")
    func outputs() async throws {
        let policy = Self.toolsPolicy + "\n\n[tools.rules.read_file]\nmax_output = \"64\"\n"
        let s = try await Self.setUp("agent-out", policy: policy)
        defer { s.cleanUp() }
        let schema = #"output_schema = '{"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string"}}}'"#
        // A file of 1000 bytes read through a 64-byte cap; then prose, then JSON after the repair prompt.
        _ = try await s.sv.raw("PUT", "/v1/sessions/\(s.session)/files/big.txt", body: Array(repeating: UInt8(ascii: "a"), count: 1000))
        try s.script([Self.tools(Self.call("read_file", ["path": "big.txt"])), "It went well.", #"{"summary": "read it"}"#])
        let r1 = try await s.startAgent(Self.agent(schema))
        let d1 = try await s.sv.wait(r1)
        #expect(d1["status"]?.stringValue == "succeeded")
        #expect(try await s.sv.output(r1) == #"{"summary": "read it"}"#)
        let result = try await s.sv.events(run: r1).first { $0["type"]?.stringValue == "tool.finished" }?["payload"]?["levain.result"]?.stringValue ?? ""
        #expect(result.hasPrefix(String(repeating: "a", count: 64) + "\n[truncated"), "\(result)")
        let sent = try s.provider.requests().filter { $0["path"] as? String == "/v1/chat/completions" }
        let last = (sent.last?["body"] as? [String: Any])?["messages"] as? [[String: Any]] ?? []
        #expect((last.last?["content"] as? String ?? "").contains("does not match the required JSON schema"))
        // Still not JSON after the repair: invalid_output, the answer kept.
        try s.script(["prose", "more prose"])
        let r2 = try await s.startAgent(Self.agent(schema))
        let d2 = try await s.sv.wait(r2)
        #expect(d2["status"]?.stringValue == "failed")
        let f2 = try await s.finished(r2)
        #expect(f2["levain.reason"]?.stringValue == "invalid_output")
        #expect(f2["levain.output"]?.stringValue == "more prose")
    }

    @Test("levain agent run prints the answer and exits 0; SIGINT to it cancels the run")
    func cli() async throws {
        let s = try await Self.setUp("agent-cli")
        defer { s.cleanUp() }
        let file = s.sv.directory + "/cli.toml"
        try Self.agent().write(toFile: file, atomically: true, encoding: .utf8)
        try s.script([Self.tools(Self.call("exec", ["command": "echo hi"])), "the answer is 42"])
        let ok = try runProcess([levainBinary, "--connect", "unix:" + s.sv.socket, "agent", "run", file, "--input", "x", "--session", s.session])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout == "the answer is 42\n")
        #expect(ok.stderr.contains("succeeded"))

        try s.script([Self.tools(Self.call("exec", ["command": "sleep 60"])), "never"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: levainBinary)
        p.arguments = ["--connect", "unix:" + s.sv.socket, "agent", "run", file, "--input", "x", "--session", s.session, "--json"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var run: String? = nil
        #expect(await eventually(within: 30) {
            let events = (try? await s.sv.request("GET", "/v1/log/events?session=\(s.session)&limit=10000").json?["events"]?.arrayValue) ?? []
            run = events.last { $0["type"]?.stringValue == "tool.started" && $0["payload"]?["levain.arguments"]?.stringValue?.contains("sleep 60") == true }?["run"]?.stringValue
            return run != nil
        })
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 137)
        let record = try JSONSerialization.jsonObject(with: out.fileHandleForReading.readDataToEndOfFile()) as? [String: Any]
        #expect(record?["status"] as? String == "cancelled")
        if let run { #expect(try await s.finished(run)["levain.reason"]?.stringValue == "cancelled") }
    }

    @Test("bad agent files and unknown tools give clear errors")
    func badInput() async throws {
        let s = try await Self.setUp("agent-bad")
        defer { s.cleanUp() }
        let unknownKey = try await s.sv.request("POST", "/v1/sessions/\(s.session)/agent-runs",
                                                ["agent": .string(Self.agent("colour = \"red\"")), "agent_file": "a.toml", "input": "x"])
        #expect(unknownKey.status == 400)
        #expect(unknownKey.text.contains("a.toml:7") && unknownKey.text.contains("colour"), "\(unknownKey.text)")
        let noModel = try await s.sv.request("POST", "/v1/sessions/\(s.session)/agent-runs",
                                             ["agent": "tools = []\n", "agent_file": "b.toml", "input": "x"])
        #expect(noModel.status == 400 && noModel.text.contains("b.toml") && noModel.text.contains("model"), "\(noModel.text)")
        // A tool the registry does not have: the run ends at once, saying so.
        let run = try await s.startAgent(Self.agent(tools: #"["read_file", "teleport"]"#))
        let done = try await s.sv.wait(run)
        #expect(done["status"]?.stringValue == "failed")
        let fin = try await s.finished(run)
        #expect(fin["levain.reason"]?.stringValue == "error")
        #expect((fin["levain.detail"]?.stringValue ?? "").contains("no tool teleport"))
        #expect(try s.provider.requests().filter { $0["path"] as? String == "/v1/chat/completions" }.isEmpty)
        // The CLI prints the file's error.
        let file = s.sv.directory + "/bad.toml"
        try "model = \"gpt-4o-mini\"\nmax_step = 3\n".write(toFile: file, atomically: true, encoding: .utf8)
        let cli = try runProcess([levainBinary, "--connect", "unix:" + s.sv.socket, "agent", "run", file, "--input", "x", "--session", s.session])
        #expect(cli.status != 0 && cli.stderr.contains("bad.toml:2") && cli.stderr.contains("max_steps"), "\(cli.stderr)")
    }
}

@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct MCPToolTests {
    @Test("a real MCP server (the reference Python SDK, from PyPI) as a host tool in its own jail: called through policy, a denied tool refused, a crash and garbage mid-call end the call with a clear error, the server comes back")
    func hostServer() async throws {
        let policy = AgentTests.toolsPolicy.replacingOccurrences(of: "[tools]\n", with: """
            [tools]
            allow = ["read_file", "write_file", "exec", "mcp__demo__*"]
            deny = ["mcp__demo__add"]

            """)
        let s = try await AgentTests.setUp("mcp-host", policy: policy, config: { p in
            p.config + """

                [mcp.demo]
                command = ["\(testVenv)/bin/python", "/fixtures/mcp_server.py"]
                binds = ["\(testVenv)", "\(fixturesDirectory):/fixtures"]
                start_timeout = "60s"
                """
        })
        defer { s.cleanUp() }
        let tools = try await s.sv.request("GET", "/v1/sessions/\(s.session)/tools")
        let names = tools.json?["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(names.contains("mcp__demo__greet") && names.contains("mcp__demo__crash") && !names.contains("mcp__demo__add"), "\(tools.text)")
        try s.script([
            AgentTests.tools(AgentTests.call("mcp__demo__greet", ["name": "Ada"])),
            AgentTests.tools(AgentTests.call("mcp__demo__add", ["a": 1, "b": 2])),
            AgentTests.tools(AgentTests.call("mcp__demo__crash", [:])),
            AgentTests.tools(AgentTests.call("mcp__demo__greet", ["name": "again"])),
            AgentTests.tools(AgentTests.call("mcp__demo__garbage", [:])),
            AgentTests.tools(AgentTests.call("mcp__demo__greet", ["name": "third"])),
            "done",
        ])
        let run = try await s.startAgent(AgentTests.agent(tools: #"["mcp__demo__greet", "mcp__demo__add", "mcp__demo__crash", "mcp__demo__garbage"]"#)
            .replacingOccurrences(of: "max_steps = 8", with: "max_steps = 10"))
        // add is denied by the session's policy: the agent file naming it is refused.
        let d0 = try await s.sv.wait(run)
        #expect(d0["status"]?.stringValue == "failed")
        #expect((try await s.finished(run)["levain.detail"]?.stringValue ?? "").contains("does not allow the tools mcp__demo__add"))

        let run2 = try await s.startAgent(AgentTests.agent(tools: #"["mcp__demo__greet", "mcp__demo__crash", "mcp__demo__garbage"]"#)
            .replacingOccurrences(of: "max_steps = 8", with: "max_steps = 10"))
        let done = try await s.sv.wait(run2, timeout: 180)
        #expect(done["status"]?.stringValue == "succeeded", "\(done)")
        let events = try await s.sv.events(run: run2)
        let outcomes = events.filter { ["tool.finished", "tool.denied"].contains($0["type"]?.stringValue ?? "") }.map { e -> String in
            let p = e["payload"]
            return "\(p?["gen_ai.tool.name"]?.stringValue ?? "?") \(p?["levain.status"]?.stringValue ?? p?["levain.rule"]?.stringValue ?? "?"): \(p?["levain.result"]?.stringValue ?? p?["levain.message"]?.stringValue ?? "")"
        }
        #expect(outcomes.count == 6, "\(outcomes)")
        guard outcomes.count == 6 else { return }
        #expect(outcomes[0].hasPrefix("mcp__demo__greet ok: Hello, Ada"), "\(outcomes[0])")
        #expect(outcomes[1].hasPrefix("mcp__demo__add tools.deny"), "\(outcomes[1])")
        #expect(outcomes[2].hasPrefix("mcp__demo__crash error") && outcomes[2].contains("failed during the call") && outcomes[2].contains("exit 3"), "\(outcomes[2])")
        #expect(outcomes[3].hasPrefix("mcp__demo__greet ok: Hello, again"), "\(outcomes[3])")
        #expect(outcomes[4].hasPrefix("mcp__demo__garbage error") && outcomes[4].contains("not JSON-RPC"), "\(outcomes[4])")
        #expect(outcomes[5].hasPrefix("mcp__demo__greet ok: Hello, third"), "\(outcomes[5])")
        // The server ran in a jail of its own: a session labelled for it.
        let sessions = try await s.sv.request("GET", "/v1/sessions")
        #expect(sessions.text.contains("levain.mcp"))
    }

    @Test("the in-jail MCP endpoint: the reference Python SDK's client in a jail lists and calls the session's tools, under the same policy and log")
    func bringYourOwnAgent() async throws {
        let s = try await AgentTests.setUp("mcp-byo")
        defer { s.cleanUp() }
        let (code, out, err, run) = try await runInSession(s.sv, s.session, [testVenv + "/bin/python", "/fixtures/mcp_client.py"])
        #expect(code == 0, "stderr: \(err)")
        let o = try jsonObject(out)
        let tools = o["tools"] as? [String] ?? []
        #expect(tools == ["edit_file", "exec", "glob", "grep", "list_files", "read_file", "write_file"])
        #expect((o["write"] as? [Any])?.first as? Bool == false)
        let outside = o["outside"] as? [Any]
        #expect(outside?.first as? Bool == true)
        #expect((outside?.last as? String ?? "").contains("outside the allowed paths"))
        #expect(((o["exec"] as? [Any])?.last as? String ?? "").contains("from my own agent"))
        let events = try await s.sv.events(run: run)
        let mcp = events.filter { ($0["type"]?.stringValue ?? "").hasPrefix("tool.") }
        #expect(mcp.allSatisfy { $0["payload"]?["levain.origin"]?.stringValue == "mcp" })
        #expect(mcp.filter { $0["type"]?.stringValue == "tool.finished" }.count == 2)
        #expect(mcp.filter { $0["type"]?.stringValue == "tool.denied" }.count == 1)
    }
}

@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct MCPHTTPToolTests {
    @Test("a streamable-HTTP MCP server (the reference Python SDK) as a host tool, reached through the egress policy: allowed by name, and a second one the policy does not allow is refused and logged")
    func urlServer() async throws {
        let dir = "/tmp/levain-sv-tests/mcphttp-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let portFile = dir + "/port"
        let server = Process()
        server.executableURL = URL(fileURLWithPath: testVenv + "/bin/python")
        server.arguments = [fixturesDirectory + "/mcp_http_server.py", portFile]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        #expect(await eventually(within: 30) { FileManager.default.fileExists(atPath: portFile) })
        let port = Int(try String(contentsOfFile: portFile, encoding: .utf8)) ?? 0
        // The server's reachability is a TCP connect away once the file is there.
        #expect(await eventually(within: 30) { (try? runProcess(["/usr/bin/curl", "-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/mcp"]).status) == 0 })
        let net = try writePolicy(dir, name: "mcpnet", network: "mode = \"loopback\"\nallow = [\"mcp.test\"]\nports = [\(port)]", extra: "")
        let s = try await AgentTests.setUp("mcp-http", policy: AgentTests.toolsPolicy.replacingOccurrences(of: "[tools]\n", with: """
            [tools]
            allow = ["read_file", "mcp__web__*", "mcp__blocked__*"]

            """), config: { p in
            p.config + """

                [network.hosts]
                "mcp.test" = "127.0.0.1"
                "blocked.test" = "127.0.0.1"

                [mcp.web]
                url = "http://mcp.test:\(port)/mcp"
                policy = "\(net)"

                [mcp.blocked]
                url = "http://blocked.test:\(port)/mcp"
                policy = "\(net)"
                start_timeout = "10s"
                """
        })
        defer { s.cleanUp() }
        let tools = try await s.sv.request("GET", "/v1/sessions/\(s.session)/tools")
        let names = tools.json?["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(names.contains("mcp__web__weather"), "\(tools.text)")
        #expect(!names.contains { $0.hasPrefix("mcp__blocked__") })
        let serveLog = (try? String(contentsOfFile: s.sv.logPath, encoding: .utf8)) ?? ""
        #expect(serveLog.contains("MCP server blocked") && serveLog.contains("network.allow"), "\(serveLog)")

        try s.script([AgentTests.tools(AgentTests.call("mcp__web__weather", ["city": "Paris"])), "done"])
        let run = try await s.startAgent(AgentTests.agent(tools: #"["mcp__web__weather"]"#))
        let done = try await s.sv.wait(run)
        #expect(done["status"]?.stringValue == "succeeded")
        let fin = try await s.sv.events(run: run).first { $0["type"]?.stringValue == "tool.finished" }?["payload"]
        #expect(fin?["levain.status"]?.stringValue == "ok")
        #expect(fin?["levain.result"]?.stringValue == "Paris: sunny, 21 C", "\(String(describing: fin))")
        // Both servers' ways out are in the log: allowed for one, denied for the other.
        // (A tunnel is logged when it closes: idle ones close after 2 s.)
        var events: [JSONValue] = []
        #expect(await eventually(within: 20) {
            events = (try? await s.sv.request("GET", "/v1/log/events?limit=10000").json?["events"]?.arrayValue) ?? []
            return events.contains { $0["type"]?.stringValue == "network.request" && $0["payload"]?["server.address"]?.stringValue == "mcp.test" }
        })
        let denied = events.filter { $0["type"]?.stringValue == "network.denied" }
        #expect(denied.contains { $0["payload"]?["server.address"]?.stringValue == "blocked.test" && $0["payload"]?["levain.rule"]?.stringValue == "network.allow" })
    }
}

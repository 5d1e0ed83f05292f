import LevainJSON
import LevainPolicy
import LevainSessionLog
import Synchronization
import Testing
@testable import LevainAgent

@Suite struct JSONSchemaTests {
    let schema = try! JSONSchema.parse("""
        {"type": "object", "required": ["path", "mode"], "additionalProperties": false,
         "properties": {"path": {"type": "string", "minLength": 1, "pattern": "^[a-z/]+$"},
                        "mode": {"enum": ["r", "w"]},
                        "n": {"type": "integer", "minimum": 1, "maximum": 10},
                        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}}
        """, requireObject: true)

    @Test("instances: what passes, and the first fault with its path")
    func validate() throws {
        func check(_ text: String) -> String? { schema.validate(try! JSONValue.parse(text))?.description }
        #expect(check(#"{"path": "a/b", "mode": "r"}"#) == nil)
        #expect(check(#"{"path": "a/b", "mode": "w", "n": 3.0, "tags": ["x"]}"#) == nil)
        #expect(check(#"{"path": "a/b"}"#) == "$: the property \"mode\" is required")
        #expect(check(#"{"path": "A", "mode": "r"}"#)?.contains("$.path: does not match") == true)
        #expect(check(#"{"path": "a", "mode": "x"}"#)?.contains("$.mode: must be one of") == true)
        #expect(check(#"{"path": "a", "mode": "r", "n": 11}"#) == "$.n: 11 is more than the maximum 10")
        #expect(check(#"{"path": "a", "mode": "r", "n": 1.5}"#) == "$.n: expected integer, got number")
        #expect(check(#"{"path": "a", "mode": "r", "tags": ["x", 1]}"#) == "$.tags[1]: expected string, got integer")
        #expect(check(#"{"path": "a", "mode": "r", "tags": ["x", "y", "z"]}"#) == "$.tags: more than 2 items")
        #expect(check(#"{"path": "a", "mode": "r", "extra": 1}"#)?.contains("\"extra\" is not allowed") == true)
        #expect(check(#"["path"]"#) == "$: expected object, got array")
    }

    @Test("schemas: unsupported keywords and bad shapes are refused when registered, not ignored")
    func schemaChecks() {
        for (text, fragment) in [
            (##"{"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}}"##, "$ref"),
            (#"{"type": "objekt"}"#, "\"type\" is one of"),
            (#"{"type": "object", "required": "a"}"#, "array of property names"),
            (#"{"type": "object", "properties": {"a": {"pattern": "("}}}"#, "does not compile"),
            (#"{"type": "string"}"#, "must have \"type\": \"object\""),
            (#"{"type": "object", "if": {}}"#, "\"if\" is not supported"),
        ] {
            do {
                _ = try JSONSchema.parse(text, requireObject: true)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.description.contains(fragment), "\(text): \(error)")
            }
        }
    }
}

@Suite struct AgentSpecTests {
    @Test("agent files parse; errors name the file, line and key")
    func parse() throws {
        let a = try AgentSpec.parse("""
            model = "gpt-4o-mini"
            instructions = "Be brief."
            tools = ["read_file", "mcp__files__list"]
            max_steps = 4
            wall_time = "90s"
            max_tokens = 512
            output_schema = '{"type": "object", "required": ["ok"]}'
            [budget]
            tokens = 1000
            spend = 0.5
            """, file: "/tmp/fixer.toml")
        #expect(a.name == "fixer" && a.model == "gpt-4o-mini" && a.tools == ["read_file", "mcp__files__list"])
        #expect(a.maxSteps == 4 && a.wallTime == 90 && a.maxTokens == 512 && a.budgetTokens == 1000 && a.budgetSpend == 0.5)
        #expect(a.outputSchema != nil)
        func fails(_ text: String, line: Int?, key: String, _ fragment: String) {
            do {
                _ = try AgentSpec.parse(text, file: "a.toml")
                Issue.record("no error for \(text)")
            } catch {
                #expect(error.line == line && error.key == key && error.message.contains(fragment), "\(error)")
            }
        }
        fails("tools = []", line: nil, key: "model", "must name its model")
        fails("model = \"m\"\nmax_step = 3", line: 2, key: "max_step", "did you mean \"max_steps\"")
        fails("model = \"m\"\ntools = [\"a.b\"]", line: 2, key: "tools", "not a tool name")
        fails("model = \"m\"\nmax_steps = 0", line: 2, key: "max_steps", "out of range")
        fails("model = \"m\"\noutput_schema = \"{\"", line: 2, key: "output_schema", "not a usable JSON schema")
        fails("model = \"m\"\n[budget]\ncoins = 3", line: 3, key: "budget.coins", "unknown key")
    }
}

/// The loop against a model and tools in memory: the stopping rules.
@Suite struct AgentLoopTests {
    final class Model: AgentModel {
        let replies: [JSONValue]
        let count = Mutex(0)
        init(replies: [JSONValue]) { self.replies = replies }
        func complete(_ request: JSONValue) async throws -> ModelReply {
            let i = count.withLock { n -> Int in defer { n += 1 }; return n }
            return ModelReply(body: replies[min(i, replies.count - 1)], inputTokens: 10, outputTokens: 5, cost: 0.001)
        }
    }
    final class Tools: AgentTools {
        let seen = Mutex<[String]>([])
        func call(_ call: ToolCallRequest) async -> ToolOutcome {
            seen.withLock { $0.append(call.name) }
            return ToolOutcome(text: "ok", isError: false)
        }
    }
    static func toolTurn(_ names: String...) -> JSONValue {
        ["choices": [["message": ["role": "assistant", "content": .null, "tool_calls": .array(names.enumerated().map { i, n in
            ["id": .string("call_\(i)"), "type": "function", "function": ["name": .string(n), "arguments": "{}"]]
        })]]]]
    }
    static func answer(_ text: String) -> JSONValue { ["choices": [["message": ["role": "assistant", "content": .string(text)]]]] }

    @Test("final answer; parallel tool calls in order; max steps; token budget; schema repair once")
    func stops() async throws {
        var spec = AgentSpec(name: "t", model: "m")
        let tools = Tools()
        var r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.toolTurn("a", "b"), Self.answer("done")]), invoker: tools)
            .run(input: "x", stop: .init())
        #expect(r.reason == .finalAnswer && r.output == "done" && r.steps == 2 && r.toolCalls == 2)
        #expect(tools.seen.withLock { $0.sorted() } == ["a", "b"])

        spec.maxSteps = 3
        r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.toolTurn("a")]), invoker: Tools()).run(input: "x", stop: .init())
        #expect(r.reason == .maxSteps && r.steps == 3)

        spec.maxSteps = 10
        spec.budgetTokens = 40
        r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.toolTurn("a")]), invoker: Tools()).run(input: "x", stop: .init())
        #expect(r.reason == .budget && r.steps == 3 && r.inputTokens + r.outputTokens == 45)

        spec.budgetTokens = nil
        spec.outputSchema = try JSONSchema.parse(#"{"type": "object", "required": ["ok"]}"#)
        r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.answer("nope"), Self.answer("```json\n{\"ok\": true}\n```")]),
                            invoker: Tools()).run(input: "x", stop: .init())
        #expect(r.reason == .finalAnswer && r.steps == 2)
        r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.answer("nope"), Self.answer("{}")]),
                            invoker: Tools()).run(input: "x", stop: .init())
        #expect(r.reason == .invalidOutput && r.steps == 2 && (r.detail ?? "").contains("\"ok\" is required"))

        let stop = AgentLoop.Stop()
        stop.set(.cancelled)
        r = await AgentLoop(spec: spec, tools: [], model: Model(replies: [Self.answer("x")]), invoker: Tools()).run(input: "x", stop: stop)
        #expect(r.reason == .cancelled && r.steps == 0)
    }
}

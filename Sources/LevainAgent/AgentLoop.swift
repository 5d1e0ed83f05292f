import LevainJSON

/// A tool as the model sees it.
public struct ToolDefinition: Sendable, Equatable {
    public var name: String
    public var description: String
    public var inputSchema: JSONValue
    public init(name: String, description: String, inputSchema: JSONValue) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
    }

    /// The OpenAI chat-completions form.
    public var openAI: JSONValue {
        ["type": "function", "function": ["name": .string(name), "description": .string(description), "parameters": inputSchema]]
    }
}

public struct ToolCallRequest: Sendable, Equatable {
    public var id: String
    public var name: String
    /// As the model wrote it (JSON text, possibly malformed).
    public var arguments: String
    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

public struct ToolOutcome: Sendable, Equatable {
    public var text: String
    public var isError: Bool
    public init(text: String, isError: Bool) {
        self.text = text
        self.isError = isError
    }
}

/// One model answer through the gateway.
public struct ModelReply: Sendable {
    public var body: JSONValue
    public var inputTokens: UInt64
    public var outputTokens: UInt64
    public var cost: Double
    public init(body: JSONValue, inputTokens: UInt64, outputTokens: UInt64, cost: Double) {
        self.body = body
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cost = cost
    }
}

public struct ModelCallError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    /// The gateway's x-levain-budget (a budget refused the call).
    public var budget: String?
    public var message: String
    public init(status: Int, budget: String?, message: String) {
        self.status = status
        self.budget = budget
        self.message = message
    }
    public var description: String { "HTTP \(status): \(message)" }
}

public protocol AgentModel: Sendable {
    func complete(_ request: JSONValue) async throws -> ModelReply
}

public protocol AgentTools: Sendable {
    func call(_ call: ToolCallRequest) async -> ToolOutcome
}

public enum StopReason: String, Sendable, Equatable {
    case finalAnswer = "final_answer"
    case maxSteps = "max_steps"
    case budget
    case timeout
    case cancelled
    case invalidOutput = "invalid_output"
    case error
}

public struct AgentResult: Sendable {
    public var reason: StopReason
    public var output: String?
    public var detail: String?
    public var steps: Int
    public var toolCalls: Int
    public var inputTokens: UInt64
    public var outputTokens: UInt64
    public var cost: Double

    public init(reason: StopReason, output: String?, detail: String?, steps: Int, toolCalls: Int, inputTokens: UInt64,
                outputTokens: UInt64, cost: Double) {
        self.reason = reason
        self.output = output
        self.detail = detail
        self.steps = steps
        self.toolCalls = toolCalls
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cost = cost
    }
}

/// The loop: ask the model, run the tools it asks for (in parallel when it
/// asks for several), give it the results, until it answers or a bound
/// stops it. Wall time and cancellation are the caller's (it cancels the
/// task; `run` then returns `.cancelled` or `.timeout` as told).
public struct AgentLoop: Sendable {
    public let spec: AgentSpec
    public let tools: [ToolDefinition]
    public let model: any AgentModel
    public let invoker: any AgentTools

    /// Calls of one model turn that run; the rest get an error.
    public static let maxCallsPerTurn = 32

    public init(spec: AgentSpec, tools: [ToolDefinition], model: any AgentModel, invoker: any AgentTools) {
        self.spec = spec
        self.tools = tools
        self.model = model
        self.invoker = invoker
    }

    /// Stops the loop from outside (the supervisor's timer and cancel).
    public final class Stop: Sendable {
        private let box = LockedReason()
        public init() {}
        public func set(_ r: StopReason) { box.set(r) }
        public var reason: StopReason? { box.get() }
    }

    public func run(input: String, stop: Stop) async -> AgentResult {
        var messages: [JSONValue] = []
        if !spec.instructions.isEmpty { messages.append(["role": "system", "content": .string(spec.instructions)]) }
        messages.append(["role": "user", "content": .string(input)])
        var r = AgentResult(reason: .error, output: nil, detail: nil, steps: 0, toolCalls: 0, inputTokens: 0, outputTokens: 0, cost: 0)
        var repaired = false
        func stopped() -> Bool {
            if let s = stop.reason { r.reason = s; return true }
            if Task.isCancelled { r.reason = .cancelled; return true }
            return false
        }
        while true {
            if stopped() { return r }
            if r.steps >= spec.maxSteps {
                r.reason = .maxSteps
                r.detail = "the model asked for tools after \(r.steps) turns (max_steps = \(spec.maxSteps))"
                return r
            }
            if let b = spec.budgetTokens, r.inputTokens + r.outputTokens >= b {
                r.reason = .budget
                r.detail = "\(r.inputTokens + r.outputTokens) tokens used of the agent's budget of \(b)"
                return r
            }
            if let b = spec.budgetSpend, r.cost >= b {
                r.reason = .budget
                r.detail = "spent \(r.cost) of the agent's budget of \(b)"
                return r
            }
            var request: JSONObject = ["model": .string(spec.model), "messages": .array(messages)]
            if !tools.isEmpty { request["tools"] = .array(tools.map(\.openAI)) }
            if let m = spec.maxTokens { request["max_tokens"] = JSONValue(m) }
            r.steps += 1
            let reply: ModelReply
            do {
                reply = try await model.complete(.object(request))
            } catch let e as ModelCallError {
                if stopped() { return r }
                r.reason = e.budget != nil ? .budget : .error
                r.detail = e.budget.map { "the gateway refused the call: budget \($0) (\(e.message))" } ?? "the model call failed: \(e)"
                return r
            } catch {
                if stopped() { return r }
                r.reason = .error
                r.detail = "the model call failed: \(error)"
                return r
            }
            r.inputTokens += reply.inputTokens
            r.outputTokens += reply.outputTokens
            r.cost += reply.cost
            guard let message = reply.body["choices"]?.arrayValue?.first?["message"]?.objectValue else {
                r.reason = .error
                r.detail = "the model's answer has no choices[0].message"
                return r
            }
            let calls: [ToolCallRequest] = (message["tool_calls"]?.arrayValue ?? []).compactMap { c in
                guard let id = c["id"]?.stringValue, let f = c["function"], let name = f["name"]?.stringValue else { return nil }
                return ToolCallRequest(id: id, name: name, arguments: f["arguments"]?.stringValue ?? "{}")
            }
            if calls.isEmpty {
                let text = message["content"]?.stringValue ?? ""
                if let schema = spec.outputSchema {
                    let problem: String?
                    if let v = try? JSONValue.parse(Self.stripFence(text)) {
                        problem = schema.validate(v)?.description
                    } else {
                        problem = "the answer is not JSON"
                    }
                    if let problem {
                        if repaired {
                            r.reason = .invalidOutput
                            r.output = text
                            r.detail = "the answer does not match output_schema after one repair: \(problem)"
                            return r
                        }
                        repaired = true
                        messages.append(["role": "assistant", "content": .string(text)])
                        messages.append(["role": "user", "content": .string(
                            "Your answer does not match the required JSON schema (\(problem)). Answer again with only a JSON value matching: \(schema.value.encoded())")])
                        continue
                    }
                }
                r.reason = .finalAnswer
                r.output = text
                return r
            }
            var assistant = message
            assistant["role"] = "assistant"
            if assistant["content"] == nil { assistant["content"] = .null }
            messages.append(.object(assistant))
            r.toolCalls += calls.count
            let invoker = self.invoker
            let outcomes = await withTaskGroup(of: (Int, ToolOutcome).self) { group in
                for (i, c) in calls.enumerated() {
                    guard i < Self.maxCallsPerTurn else {
                        group.addTask { (i, ToolOutcome(text: "not run: more than \(Self.maxCallsPerTurn) tool calls in one turn", isError: true)) }
                        continue
                    }
                    group.addTask { (i, await invoker.call(c)) }
                }
                var out = [ToolOutcome?](repeating: nil, count: calls.count)
                for await (i, o) in group { out[i] = o }
                return out.map { $0 ?? ToolOutcome(text: "no result", isError: true) }
            }
            for (c, o) in zip(calls, outcomes) {
                messages.append(["role": "tool", "tool_call_id": .string(c.id), "content": .string(o.isError ? "ERROR: " + o.text : o.text)])
            }
        }
    }

    /// A JSON answer the model wrapped in a ``` fence.
    static func stripFence(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.hasPrefix("```") else { return t }
        if let nl = t.firstIndex(of: "\n") { t = String(t[t.index(after: nl)...]) }
        if t.hasSuffix("```") { t = String(t.dropLast(3)) }
        return t
    }
}

import Synchronization
final class LockedReason: Sendable {
    private let m = Mutex<StopReason?>(nil)
    func set(_ r: StopReason) { m.withLock { if $0 == nil { $0 = r } } }
    func get() -> StopReason? { m.withLock { $0 } }
}

import Foundation

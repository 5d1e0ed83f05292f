#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainAgent
import LevainJSON
import LevainPolicy
import LevainRuns
import LevainSandbox
import LevainSessionLog

/// Every tool call of every session passes here, whoever asks (the built-in
/// agent loop, or an agent of the user's own through the in-jail MCP
/// endpoint): the registry, the session policy's `[tools]`, the input's
/// schema, the argument rules, the approval gate, the time and output
/// bounds, and the log (`tool.denied`, `approval.requested`,
/// `approval.decided`, `tool.started`, `tool.finished`). A call ends with
/// what it belongs to (`calls`): its run, its session, or the MCP client
/// that made it on the session's path.
public final class ToolService: Sendable {
    public let approvals = Approvals()
    public let calls = CallsInFlight()
    public let hostTools: HostTools
    let log: SessionLog

    /// How much of a call's arguments and result the log keeps.
    static let loggedBytes = 8 << 10

    public init(config: ToolsConfig, log: SessionLog) {
        self.log = log
        hostTools = HostTools(servers: config.servers)
    }

    /// The tools a session's policy lets an agent see (those needing approval included).
    public func definitions(policy: Policy.Tools, only names: [String]? = nil) async -> [ToolDefinition] {
        let all = BuiltinTools.definitions + (await hostTools.definitions())
        return all.filter { d in policy.denyingRule(for: d.name) == nil && (names == nil || names!.contains(d.name)) }
    }

    public struct Caller: Sendable {
        public var sessionID: String
        public var runID: String?
        public var tenant: String
        public var policy: Policy.Tools
        /// "agent" (the built-in loop) or "mcp" (the in-jail endpoint).
        public var origin: String
        /// The MCP client's connection, for a call on the session's path
        /// (it ends when the client hangs up).
        public var connection: UInt64? = nil

        public init(sessionID: String, runID: String?, tenant: String, policy: Policy.Tools, origin: String, connection: UInt64? = nil) {
            self.sessionID = sessionID
            self.runID = runID
            self.tenant = tenant
            self.policy = policy
            self.origin = origin
            self.connection = connection
        }
    }

    public func caller(supervisor: any ToolHost, session: String, run: String?, origin: String) async throws(APIError) -> Caller {
        let (tenant, tools) = try await supervisor.toolCaller(session: session)
        return Caller(sessionID: session, runID: run, tenant: tenant, policy: tools, origin: origin)
    }

    public static func newCallID() -> String { RunID.randomID(prefix: "c-") }

    /// One call, from policy to result. Never throws: a refusal or a
    /// failure is a tool error the agent can read and react to. It runs as
    /// a task of its own, registered with what it belongs to, so that the
    /// end of its run (or session, or MCP client) ends it.
    public func call(_ c: ToolCallRequest, by caller: Caller, supervisor: any ToolHost) async -> ToolOutcome {
        let callID = Self.newCallID()
        guard let task = calls.start(callID, session: caller.sessionID, run: caller.runID, connection: caller.connection, { [self] in
            await perform(c, callID: callID, by: caller, supervisor: supervisor)
        }) else {
            return await perform(c, callID: callID, by: caller, supervisor: supervisor, runEnded: true)
        }
        let outcome = await withTaskCancellationHandler { await task.value } onCancel: { task.cancel() }
        calls.finished(callID)
        return outcome
    }

    private func perform(_ c: ToolCallRequest, callID: String, by caller: Caller, supervisor: any ToolHost, runEnded: Bool = false) async -> ToolOutcome {
        let started = LogTimestamp.now()
        var base: JSONObject = [
            Attribute.genAIOperationName: "execute_tool", Attribute.genAIToolName: .string(c.name), Attribute.genAIToolCallId: .string(c.id),
            Attribute.callId: .string(callID), Attribute.origin: .string(caller.origin),
        ]
        func event(_ type: String, _ extra: JSONObject) -> NewEvent {
            NewEvent(sessionID: caller.sessionID, runID: caller.runID, tenant: caller.tenant, type: type,
                     payload: base.merging(extra) { _, new in new })
        }
        func deny(_ rule: String, _ message: String) async -> ToolOutcome {
            _ = try? await log.record([event(EventType.toolDenied, [Attribute.rule: .string(rule), Attribute.message: .string(message)])], and: [])
            return ToolOutcome(text: "refused (\(rule)): \(message)", isError: true)
        }
        base[Attribute.arguments] = .string(Self.clip(c.arguments))
        if runEnded { return await deny("tools.run", "run \(caller.runID ?? "?") has ended: its tool calls are refused") }
        // 1. What it is.
        let argsValue: JSONValue
        do { argsValue = try JSONValue.parse(c.arguments.isEmpty ? "{}" : c.arguments) } catch {
            return await deny("tools.input", "the arguments are not JSON: \(error)")
        }
        guard let args = argsValue.objectValue else { return await deny("tools.input", "the arguments must be a JSON object") }
        let definition: ToolDefinition
        if let d = BuiltinTools.definitions.first(where: { $0.name == c.name }) {
            definition = d
        } else if let d = await hostTools.definition(c.name) {
            definition = d
        } else {
            let known = await definitions(policy: caller.policy).map(\.name)
            return await deny("tools.unknown", "no tool named \"\(c.name)\"; this session's tools: \(known.joined(separator: ", "))")
        }
        base[Attribute.genAIToolType] = .string(BuiltinTools.definitions.contains(definition) ? "function" : "extension")
        // 2. Policy, schema, argument rules: before anything runs.
        if let rule = caller.policy.denyingRule(for: c.name) {
            return await deny(rule, "the session's policy does not allow \(c.name)")
        }
        if let schema = try? JSONSchema(definition.inputSchema), let problem = schema.validate(argsValue) {
            return await deny("tools.schema", "the input does not match \(c.name)'s schema: \(problem)")
        }
        for (arg, rule) in (caller.policy.rules[c.name]?.arguments ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let v = args[arg] else { continue }
            guard let s = v.stringValue else { return await deny("tools.rules.\(c.name).args.\(arg)", "\(arg) must be a string") }
            if let why = rule.check(s) { return await deny("tools.rules.\(c.name).args.\(arg)", why) }
        }
        // 3. A person, if the policy says so.
        if caller.policy.needsApproval(c.name) {
            let pending = Approvals.Pending(callID: callID, sessionID: caller.sessionID, runID: caller.runID, tool: c.name,
                                            arguments: argsValue, requestedAt: started, timeout: caller.policy.approvalTimeout)
            do {
                _ = try await log.record([event(EventType.approvalRequested, [Attribute.timeoutS: .double(pending.timeout)])], and: [])
            } catch {
                return ToolOutcome(text: "refused: the approval request could not be logged (\(error))", isError: true)
            }
            // Cancelled, the call is denied with why: its run ended, its
            // session closed, its MCP client hung up.
            let calls = self.calls
            let d = await approvals.wait(pending, cancelReason: { calls.endReason(callID) ?? "the call was cancelled" })
            _ = try? await log.record([event(EventType.approvalDecided, [
                Attribute.decision: .string(d.allow ? "allow" : "deny"), Attribute.by: .string(d.by),
                Attribute.reason: .string(d.reason), Attribute.timedOut: .bool(d.timedOut),
            ])], and: [])
            if !d.allow {
                return ToolOutcome(text: "denied by \(d.by)\(d.timedOut ? " (approval timed out)" : ""): \(d.reason)", isError: true)
            }
        }
        // 4. Run it, bounded.
        let timeout = caller.policy.timeout(for: c.name)
        let maxOutput = caller.policy.maxOutput(for: c.name)
        log.enqueue([event(EventType.toolStarted, [Attribute.timeoutS: .double(timeout)])], and: [])
        let t0 = LogTimestamp.now()
        let isBuiltin = base[Attribute.genAIToolType] == "function"
        let hostTools = self.hostTools
        // Runs the call submits are its (their audited system calls name
        // it): the race's tasks inherit the task-local.
        let answer: Result<String, BuiltinTools.Failure>? = await ToolCallScope.$callID.withValue(callID) {
            await Self.withTimeout(timeout + (["exec", "grep", "glob"].contains(c.name) ? 2 : 0)) {
                do throws(BuiltinTools.Failure) {
                    if isBuiltin {
                        return .success(try await BuiltinTools.call(c.name, args, session: caller.sessionID, supervisor: supervisor,
                                                                    timeout: timeout, maxOutput: maxOutput))
                    }
                    return .success(BuiltinTools.clip(try await hostTools.call(c.name, args, timeout: timeout), maxOutput))
                } catch {
                    return .failure(error)
                }
            }
        }
        let result = answer ?? .failure(Task.isCancelled ? .init("cancelled", .cancelled) : .init("timed out after \(timeout)s", .timeout))
        let ms = Double(LogTimestamp.now().microsecondsSinceEpoch - t0.microsecondsSinceEpoch) / 1000
        let outcome: ToolOutcome
        let status: String
        switch result {
        case .success(let text): outcome = ToolOutcome(text: text, isError: false); status = "ok"
        case .failure(let f):
            outcome = ToolOutcome(text: f.message, isError: true)
            // A call whose caller went away ended because of that, whatever it says.
            status = Task.isCancelled ? "cancelled" : f.status.rawValue
        }
        log.enqueue([event(EventType.toolFinished, [
            Attribute.status: .string(status), Attribute.result: .string(Self.clip(outcome.text)),
            Attribute.outputBytes: .int(Int64(outcome.text.utf8.count)), Attribute.durationMs: .double((ms * 1000).rounded() / 1000),
        ])], and: [])
        return outcome
    }

    public static func clip(_ s: String) -> String {
        let b = Array(s.utf8)
        guard b.count > loggedBytes else { return s }
        return String(decoding: b.prefix(loggedBytes), as: UTF8.self) + "…[\(b.count) bytes]"
    }

    /// The body's value, or nil when `seconds` pass first (the body is
    /// cancelled, not waited for).
    static func withTimeout<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async -> T) async -> T? {
        await Race.first(timeout: seconds, [{ await body() }])
    }
}

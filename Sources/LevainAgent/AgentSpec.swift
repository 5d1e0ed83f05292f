import LevainPolicy

/// An agent file: what the built-in agent loop is told, which model it
/// calls, which tools it may ask for, and its bounds.
///
/// ```toml
/// name = "fixer"
/// model = "gpt-4o-mini"            # a [models."NAME"] of the supervisor's config
/// instructions = "You fix the tests in the workspace."
/// tools = ["read_file", "write_file", "exec"]
/// max_steps = 12                   # model turns
/// wall_time = "5m"
/// max_tokens = 2048                # per model call
/// output_schema = '''{"type": "object", "required": ["summary"]}'''
///
/// [budget]
/// tokens = 50000                   # input + output, whole run
/// spend = 0.25
/// ```
public struct AgentSpec: Sendable, Equatable {
    public var name: String
    public var model: String
    public var instructions: String = ""
    public var tools: [String] = []
    public var maxSteps: Int = 10
    public var wallTime: Double = 300
    public var maxTokens: Int? = nil
    public var budgetTokens: UInt64? = nil
    public var budgetSpend: Double? = nil
    public var outputSchema: JSONSchema? = nil
    /// The file's text, kept for the log and for runs submitted remotely.
    public var source: String = ""

    public init(name: String, model: String) {
        self.name = name
        self.model = model
    }

    /// Parses an agent file; errors name the file, the line and the key.
    public static func parse(_ text: String, file: String) throws(PolicyError) -> AgentSpec {
        var t = try TableReader.root(text, file: file)
        let base = file.split(separator: "/").last.map { String($0) } ?? file
        let defaultName = base.hasSuffix(".toml") ? String(base.dropLast(5)) : base
        for key in ["name", "model", "instructions", "tools", "max_steps", "wall_time", "max_tokens", "output_schema", "budget"] {
            _ = t.node(key)
        }
        guard let model = try t.string("model"), !model.isEmpty else {
            throw PolicyError(.missing, file: file, key: "model",
                              "an agent file must name its model: model = \"NAME\" (a [models.\"NAME\"] of the supervisor's config)")
        }
        var spec = AgentSpec(name: try t.string("name") ?? defaultName, model: model)
        spec.source = text
        guard !spec.name.isEmpty, spec.name.utf8.count <= 64 else { throw t.invalid("name", "a name of 1 to 64 characters") }
        spec.instructions = try t.string("instructions") ?? ""
        if let tools = try t.stringArray("tools") {
            for (name, line) in tools where !ToolName.isValid(name) {
                throw PolicyError(.invalidValue, file: file, line: line, key: "tools",
                                  "\"\(name)\" is not a tool name (letters, digits, \"_\" and \"-\", at most 64)")
            }
            spec.tools = tools.map(\.0)
        }
        if let v = try t.integer("max_steps", in: 1...1000) { spec.maxSteps = Int(v) }
        if let v = try t.duration("wall_time") { spec.wallTime = v }
        if let v = try t.integer("max_tokens", in: 1...10_000_000) { spec.maxTokens = Int(v) }
        if let text = try t.string("output_schema") {
            do {
                spec.outputSchema = try JSONSchema.parse(text)
            } catch {
                throw t.invalid("output_schema", "not a usable JSON schema: \(error)")
            }
        }
        if var b = try t.table("budget") {
            if let v = try b.integer("tokens", in: 1...Int64.max) { spec.budgetTokens = UInt64(v) }
            if b.has("spend") {
                guard let v = try b.number("spend"), v > 0 else { throw b.invalid("spend", "a positive amount in the prices' currency (e.g. 0.25)") }
                spec.budgetSpend = v
            }
            try b.finish()
        }
        try t.finish()
        return spec
    }
}

public enum ToolName {
    /// What OpenAI's and Anthropic's tool names allow: ^[a-zA-Z0-9_-]{1,64}$.
    public static func isValid(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
    }
}

import LevainPolicy

/// A request body as the gateway checked it, and the only source of what it
/// forwards (docs/GATEWAY.md, "What reaches the provider").
///
/// Every top-level field is one the gateway knows: a field that decides
/// what a request may cost (the output cap, the number of choices,
/// streaming, the service tier, Anthropic's server tools) is read, typed and
/// checked; a field that cannot change it (messages, tools, temperature,
/// ...: their tokens are in the usage the provider reports) is passed as
/// parsed; a field that changes the cost in ways the budgets cannot see
/// (`best_of`, web search, audio, ...) is refused, and so is any field the
/// gateway does not know. The forwarded body is written from this value,
/// with the output cap the policy allowed, so the provider never reads a
/// value the policy did not check.
struct GatewayRequest {
    var api: GatewayAPI
    var kind: ProviderKind { api.providerKind }
    var model: String
    var stream: Bool
    /// The output cap's field: "max_tokens", OpenAI's "max_completion_tokens"
    /// when the client named that one, the Responses API's
    /// "max_output_tokens"; none for embeddings (no output).
    var tokenField: String
    /// The output cap the client asked for per choice; nil when it named
    /// none (or null). Larger than Int64 is Int64.max.
    var askedTokens: Int64?
    /// OpenAI's `n` (choices per request); 1 when not given.
    var choices: Int64
    /// Whether the client named `n` (it is forwarded only then).
    var namedChoices: Bool
    /// The body's members in the client's order, checked.
    var members: [GatewayJSON.Member]
    /// The size of the client's body.
    var sourceBytes: Int

    /// The largest output cap a request may name when the policy sets none
    /// (the largest cap a policy may set).
    static let maxTokensLimit: Int64 = 10_000_000

    enum Field {
        /// Cannot change what a request costs beyond the tokens the provider
        /// reports: forwarded as parsed.
        case passed
        /// Read and checked by the gateway; forwarded as checked.
        case checked
        /// Changes the cost in a way the budgets cannot see: refused.
        case refused(String)
    }

    static let openAIFields: [String: Field] = [
        "model": .checked, "messages": .checked, "max_tokens": .checked, "max_completion_tokens": .checked, "n": .checked,
        "stream": .checked, "stream_options": .checked, "service_tier": .checked, "modalities": .checked,
        "frequency_penalty": .passed, "presence_penalty": .passed, "logit_bias": .passed, "logprobs": .passed,
        "top_logprobs": .passed, "metadata": .passed, "parallel_tool_calls": .passed, "reasoning_effort": .passed,
        "response_format": .passed, "seed": .passed, "stop": .passed, "store": .passed, "temperature": .passed,
        "top_p": .passed, "tool_choice": .passed, "tools": .passed, "functions": .passed, "function_call": .passed,
        "user": .passed, "safety_identifier": .passed, "prompt_cache_key": .passed, "verbosity": .passed,
        "best_of": .refused("best_of (of the legacy completions API) bills several completions per request"),
        "max_output_tokens": .refused("max_output_tokens is the Responses API's field: chat completions take max_completion_tokens or max_tokens"),
        "web_search_options": .refused("web search is billed per search, outside the token usage the budgets count"),
        "audio": .refused("audio output is billed at its own prices, not the model's prices the budgets use"),
        "prediction": .refused("predicted outputs bill rejected prediction tokens: the gateway cannot bound what they cost"),
    ]

    static let responsesFields: [String: Field] = [
        "model": .checked, "input": .checked, "max_output_tokens": .checked, "stream": .checked, "stream_options": .checked,
        "service_tier": .checked, "tools": .checked, "background": .checked,
        "instructions": .passed, "temperature": .passed, "top_p": .passed, "tool_choice": .passed, "parallel_tool_calls": .passed,
        "text": .passed, "reasoning": .passed, "metadata": .passed, "store": .passed, "previous_response_id": .passed,
        "conversation": .passed, "include": .passed, "truncation": .passed, "user": .passed, "safety_identifier": .passed,
        "prompt_cache_key": .passed, "prompt_cache_retention": .passed, "top_logprobs": .passed, "max_tool_calls": .passed,
        "prompt": .passed,
        "max_tokens": .refused("the Responses API's output cap is max_output_tokens"),
        "max_completion_tokens": .refused("the Responses API's output cap is max_output_tokens"),
        "n": .refused("the Responses API has one output per request"),
    ]

    static let embeddingsFields: [String: Field] = [
        "model": .checked, "input": .checked,
        "encoding_format": .passed, "dimensions": .passed, "user": .passed,
    ]

    /// Responses API tool types the client runs itself (their cost is
    /// tokens); the others (web search, file search, code interpreter,
    /// computer use, image generation, remote MCP) run at the provider and
    /// are billed per use.
    static let responsesClientToolTypes: Set<String> = ["function", "custom", "local_shell", "shell", "apply_patch"]

    static let anthropicFields: [String: Field] = [
        "model": .checked, "messages": .checked, "max_tokens": .checked, "stream": .checked, "service_tier": .checked,
        "tools": .checked,
        "system": .passed, "metadata": .passed, "stop_sequences": .passed, "temperature": .passed, "top_k": .passed,
        "top_p": .passed, "tool_choice": .passed, "thinking": .passed,
        "mcp_servers": .refused("the provider would call remote MCP servers: outside the egress policy, billed per use"),
        "container": .refused("code execution containers are billed by the hour, outside the token usage the budgets count"),
    ]

    /// Anthropic tool types that run on the client (their cost is tokens);
    /// any other type is a server tool (web search, web fetch, code
    /// execution, ...), billed per use on top of the tokens.
    static let anthropicClientToolPrefixes = ["custom", "bash_", "text_editor_", "computer_", "memory_"]
    static let openAIServiceTiers: Set<String> = ["auto", "default", "flex"]
    static let anthropicServiceTiers: Set<String> = ["auto", "standard_only"]

    // MARK: parsing

    /// Parses and checks a body; throws the 400 that names the field.
    static func parse(_ bytes: [UInt8], api: GatewayAPI) throws(GatewayAnswer) -> GatewayRequest {
        let kind = api.providerKind
        let root: GatewayJSON
        do {
            root = try GatewayJSON.parse(bytes)
        } catch {
            switch error.kind {
            case .syntax: throw GatewayAnswer.invalid("request.json", error.message)
            case .duplicateKey:
                let path = Self.shown(error.path ?? "")
                throw GatewayAnswer.invalid("request.duplicate_key", "the key \"\(path)\" appears twice in the body: a provider may read the other one",
                                            param: path)
            }
        }
        guard let members = root.members else {
            throw GatewayAnswer.invalid("request.json", "the request body must be a JSON object, not \(root.kindName)")
        }
        let table: [String: Field]
        let apiName: String
        switch api {
        case .chatCompletions: (table, apiName) = (openAIFields, "chat completions")
        case .responses: (table, apiName) = (responsesFields, "responses")
        case .embeddings: (table, apiName) = (embeddingsFields, "embeddings")
        case .messages: (table, apiName) = (anthropicFields, "messages")
        }
        for m in members {
            // Field names are ASCII: Swift compares strings by canonical
            // equivalence, a provider by bytes, so nothing else is looked up.
            switch m.key.utf8.allSatisfy({ $0 < 0x80 }) ? table[m.key] : nil {
            case nil:
                let key = Self.shown(m.key)
                throw GatewayAnswer.invalid("request.unknown_field",
                                            "\"\(key)\" is not a field of the \(apiName) API the gateway forwards (docs/GATEWAY.md lists them)", param: key)
            case .refused(let why)?:
                throw GatewayAnswer.invalid("request.unsupported_field", "\"\(m.key)\" is not forwarded: \(why)", param: m.key)
            case .passed?, .checked?:
                break
            }
        }
        guard case .string(let model)? = root["model"], !model.isEmpty else {
            throw GatewayAnswer.invalid("request.model", "the request names no \"model\"", param: "model")
        }
        switch api {
        case .chatCompletions, .messages:
            guard case .array? = root["messages"] else {
                throw GatewayAnswer.invalid("request.messages", "\"messages\" must be an array, not \(root["messages"]?.kindName ?? "missing")",
                                            param: "messages")
            }
        case .responses, .embeddings:
            switch root["input"] {
            case .string?, .array?: break
            case nil where api == .responses && (root["prompt"] != nil || root["previous_response_id"] != nil || root["conversation"] != nil): break
            case let other:
                throw GatewayAnswer.invalid("request.input", "\"input\" must be a string or an array, not \(other?.kindName ?? "missing")",
                                            param: "input")
            }
        }
        if api == .responses, let background = root["background"], background != .null, background != .bool(false) {
            throw GatewayAnswer.invalid("request.unsupported_field",
                                        "\"background\" is not forwarded: a background response is fetched later, so the gateway could not read what it used",
                                        param: "background")
        }
        let stream: Bool
        switch root["stream"] {
        case nil, .null?: stream = false
        case .bool(let b)?: stream = b
        case let other?: throw GatewayAnswer.invalid("request.stream", "\"stream\" must be true or false, not \(other.kindName)", param: "stream")
        }

        var tokenField = api == .responses ? "max_output_tokens" : "max_tokens"
        if api == .chatCompletions, root["max_completion_tokens"] != nil {
            if root["max_tokens"] != nil {
                throw GatewayAnswer.invalid("request.max_tokens",
                                            "name one of \"max_completion_tokens\" and \"max_tokens\", not both: a provider may honour either",
                                            param: "max_completion_tokens")
            }
            tokenField = "max_completion_tokens"
        }
        let asked = api == .embeddings ? nil : try positiveInteger(root[tokenField], field: tokenField, rule: "request.max_tokens")

        var choices: Int64 = 1
        var namedChoices = false
        if api == .chatCompletions, let n = try positiveInteger(root["n"], field: "n", rule: "request.n") {
            choices = n
            namedChoices = true
        }

        if kind == .openai, let options = root["stream_options"], options != .null {
            let allowed = api == .responses ? ["include_obfuscation"] : ["include_usage", "include_obfuscation"]
            guard let fields = options.members else {
                throw GatewayAnswer.invalid("request.stream_options", "\"stream_options\" must be an object, not \(options.kindName)",
                                            param: "stream_options")
            }
            for f in fields {
                guard allowed.contains(where: { f.key.utf8.elementsEqual($0.utf8) }) else {
                    let key = "stream_options." + Self.shown(f.key)
                    throw GatewayAnswer.invalid("request.stream_options", "\"\(key)\" is not a stream option the gateway forwards (\(allowed.joined(separator: ", ")))",
                                                param: key)
                }
                switch f.value {
                case .bool, .null: break
                default:
                    throw GatewayAnswer.invalid("request.stream_options", "\"stream_options.\(f.key)\" must be true or false, not \(f.value.kindName)",
                                                param: "stream_options.\(f.key)")
                }
            }
        }

        switch root["service_tier"] {
        case nil, .null?: break
        case .string(let tier)? where (kind == .openai ? openAIServiceTiers : anthropicServiceTiers).contains(tier): break
        case let other?:
            let allowed = (kind == .openai ? openAIServiceTiers : anthropicServiceTiers).sorted().joined(separator: ", ")
            let what = if case .string(let s) = other { "\"\(Self.shown(s))\"" } else { other.kindName }
            throw GatewayAnswer.invalid("request.service_tier",
                                        "\"service_tier\" \(what) is not forwarded (allowed: \(allowed)): another tier is billed at other prices than the budgets use",
                                        param: "service_tier")
        }

        if kind == .openai, let modalities = root["modalities"], modalities != .null {
            guard case .array(let items) = modalities, items.allSatisfy({ $0 == .string("text") }) else {
                throw GatewayAnswer.invalid("request.modalities", "\"modalities\" may only be [\"text\"]: audio output is billed at its own prices",
                                            param: "modalities")
            }
        }

        // Tools: each an object whose type is one the client runs (its cost
        // is tokens); a provider-hosted tool is billed per use.
        if api == .responses || api == .messages, let tools = root["tools"], tools != .null {
            guard case .array(let items) = tools else {
                throw GatewayAnswer.invalid("request.tools", "\"tools\" must be an array, not \(tools.kindName)", param: "tools")
            }
            for (i, tool) in items.enumerated() {
                guard tool.members != nil else {
                    throw GatewayAnswer.invalid("request.tools", "\"tools[\(i)]\" must be an object, not \(tool.kindName)", param: "tools[\(i)]")
                }
                let type = tool["type"]
                let clientTool: Bool = switch (api, type) {
                case (.responses, .string(let t)?): responsesClientToolTypes.contains(t)
                case (.messages, nil), (.messages, .null?): true
                case (.messages, .string(let t)?): anthropicClientToolPrefixes.contains(where: { t.hasPrefix($0) })
                default: false
                }
                guard !clientTool else { continue }
                let what = if case .string(let s)? = type { "\"\(Self.shown(s))\"" } else { type?.kindName ?? "missing" }
                let why = api == .responses
                    ? "only tools the client runs (\(responsesClientToolTypes.sorted().joined(separator: ", "))) are; a hosted tool is billed per use, outside the token usage the budgets count"
                    : "a server tool is billed per use, outside the token usage the budgets count"
                throw GatewayAnswer.invalid("request.tools", "\"tools[\(i)].type\" \(what) is not forwarded: \(why)", param: "tools[\(i)].type")
            }
        }

        return GatewayRequest(api: api, model: model, stream: stream, tokenField: tokenField, askedTokens: asked,
                              choices: choices, namedChoices: namedChoices, members: members, sourceBytes: bytes.count)
    }

    /// A positive integer written as one (`100`, not `100.0`, `1e2`,
    /// `"100"` or `true`); nil when absent or null. A literal beyond Int64 is
    /// Int64.max (above every cap).
    private static func positiveInteger(_ value: GatewayJSON?, field: String, rule: String) throws(GatewayAnswer) -> Int64? {
        switch value {
        case nil, .null?: return nil
        case .number(let literal)? where !literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }):
            guard !literal.hasPrefix("-"), literal != "0" else {
                throw GatewayAnswer.invalid(rule, "\"\(field)\" must be a positive integer, not \(literal)", param: field)
            }
            return Int64(literal) ?? .max
        case let other?:
            throw GatewayAnswer.invalid(rule, "\"\(field)\" must be a positive integer, not \(other.kindName)", param: field)
        }
    }

    /// A client's key or value in a message: at most 64 characters.
    static func shown(_ s: String) -> String {
        s.count <= 64 ? s : String(s.prefix(64)) + "…"
    }

    // MARK: policy

    /// What a request may produce under a policy.
    struct OutputLimit: Equatable {
        /// The cap forwarded: the client's, or the policy's when the client
        /// named none; nil when neither names one (the provider's default
        /// applies).
        var forwarded: Int?
        /// The cap per choice the reservation assumes (`forwarded`, or
        /// `uncappedReservation`).
        var perChoice: Int
        /// The request's worst-case output: choices × perChoice.
        var reserved: UInt64
    }

    /// The output a request without a cap is assumed to use at most, when
    /// the policy sets none either (`max_tokens = "off"`).
    static let uncappedReservation = 32_768

    /// The output limit under `policy`; above the cap, or more choices than
    /// the policy allows: the 403 naming the rule.
    func outputLimit(under policy: Policy.Models) throws(GatewayAnswer) -> OutputLimit {
        // Embeddings produce no output tokens: only their input counts.
        if api == .embeddings { return OutputLimit(forwarded: nil, perChoice: 0, reserved: 0) }
        if let cap = policy.maxTokens, let asked = askedTokens, asked > Int64(cap) {
            throw GatewayAnswer.denied("models.max_tokens", "\(tokenField) \(Self.shown(asked)) is above the policy's cap of \(cap) (models.max_tokens)",
                                       param: tokenField)
        }
        if let asked = askedTokens, asked > Self.maxTokensLimit {
            throw GatewayAnswer.invalid("request.max_tokens", "\"\(tokenField)\" \(Self.shown(asked)) is above \(Self.maxTokensLimit), the most the gateway forwards",
                                        param: tokenField)
        }
        if choices > Int64(policy.maxChoices) {
            throw GatewayAnswer.denied("models.max_choices",
                                       "n \(Self.shown(choices)) is above the policy's limit of \(policy.maxChoices) choice\(policy.maxChoices == 1 ? "" : "s") per request (models.max_choices)",
                                       param: "n")
        }
        let forwarded = askedTokens.map { Int($0) } ?? policy.maxTokens
        let perChoice = forwarded ?? Self.uncappedReservation
        return OutputLimit(forwarded: forwarded, perChoice: perChoice, reserved: UInt64(perChoice) * UInt64(choices))
    }

    private static func shown(_ n: Int64) -> String {
        n == .max ? "(beyond 64 bits)" : String(n)
    }

    // MARK: the forwarded body

    /// The body to forward: the client's members in order, as checked, the
    /// output cap set to `outputCap` (added when the client named none), and
    /// an OpenAI stream asking for its usage.
    func body(outputCap: Int?) -> [UInt8] {
        var out: [GatewayJSON.Member] = []
        out.reserveCapacity(members.count + 2)
        var wroteCap = false
        var wroteOptions = false
        for m in members {
            switch m.key {
            case "max_tokens", "max_completion_tokens", "max_output_tokens":
                // Only `tokenField` can be here (both is refused).
                if let outputCap {
                    out.append(.init(tokenField, .number(String(outputCap))))
                    wroteCap = true
                }
            case "n":
                if namedChoices { out.append(.init("n", .number(String(choices)))) }
            case "stream":
                if m.value != .null { out.append(m) }
            case "stream_options" where api == .chatCompletions:
                guard var fields = m.value.members else { continue }  // null
                if stream {
                    // Usage of a stream comes only in its final chunk, when asked for.
                    fields.removeAll { $0.key.utf8.elementsEqual("include_usage".utf8) }
                    fields.insert(.init("include_usage", .bool(true)), at: 0)
                }
                fields.removeAll { $0.value == .null }
                out.append(.init("stream_options", .object(fields)))
                wroteOptions = true
            default:
                out.append(m)
            }
        }
        if !wroteCap, let outputCap { out.append(.init(tokenField, .number(String(outputCap)))) }
        if api == .chatCompletions && stream && !wroteOptions { out.append(.init("stream_options", .object([.init("include_usage", .bool(true))]))) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sourceBytes + 64)
        GatewayJSON.object(out).write(to: &bytes)
        return bytes
    }
}

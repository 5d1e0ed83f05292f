import LevainPolicy
import Testing
@testable import LevainProxy

/// The gateway's canonical form of a request: what is checked, what is
/// refused (naming the field), and the exact body that is forwarded.
@Suite struct GatewayRequestTests {
    static let policy: Policy.Models = {
        var p = Policy.Models()
        p.maxTokens = 4096
        return p
    }()

    static func openai(_ fields: String) -> String {
        #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]"# + (fields.isEmpty ? "" : "," + fields) + "}"
    }

    static func anthropic(_ fields: String) -> String {
        #"{"model":"claude-3-5-haiku-latest","messages":[{"role":"user","content":"hi"}]"# + (fields.isEmpty ? "" : "," + fields) + "}"
    }

    /// The forwarded body and output limit, or the refusal.
    func check(_ text: String, api: GatewayAPI = .chatCompletions, policy: Policy.Models = Self.policy)
        -> Result<(body: String, limit: GatewayRequest.OutputLimit), GatewayAnswer> {
        do throws(GatewayAnswer) {
            let r = try GatewayRequest.parse(Array(text.utf8), api: api)
            let limit = try r.outputLimit(under: policy)
            return .success((String(decoding: r.body(outputCap: limit.forwarded), as: UTF8.self), limit))
        } catch {
            return .failure(error)
        }
    }

    func expectForwarded(_ text: String, api: GatewayAPI = .chatCompletions, policy: Policy.Models = Self.policy, as expected: String,
                         reserved: UInt64? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        switch check(text, api: api, policy: policy) {
        case .success(let (body, limit)):
            #expect(body == expected, sourceLocation: sourceLocation)
            if let reserved { #expect(limit.reserved == reserved, sourceLocation: sourceLocation) }
        case .failure(let answer):
            Issue.record("refused \(text): \(answer.status) \(answer.rule) \(answer.message)", sourceLocation: sourceLocation)
        }
    }

    func expectRefused(_ text: String, api: GatewayAPI = .chatCompletions, policy: Policy.Models = Self.policy, status: UInt, rule: String,
                       param: String, sourceLocation: SourceLocation = #_sourceLocation) {
        switch check(text, api: api, policy: policy) {
        case .success(let (body, _)):
            Issue.record("forwarded \(text) as \(body)", sourceLocation: sourceLocation)
        case .failure(let answer):
            #expect(answer.status.code == status && answer.rule == rule && answer.param == param,
                    "\(text): \(answer.status.code) \(answer.rule) \(answer.param ?? "-") \(answer.message)", sourceLocation: sourceLocation)
            #expect(answer.message.contains(param.split(separator: "[").first.map(String.init) ?? param), "\(answer.message)", sourceLocation: sourceLocation)
            let header = status == 403 ? "x-levain-denied" : "x-levain-error"
            #expect(answer.extraHeaders.contains { $0 == (header, rule) }, sourceLocation: sourceLocation)
        }
    }

    @Test("a normal request is forwarded with its other fields as sent, in order; the cap is set when none is named")
    func controls() {
        let tools = #"[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}}}]"#
        let plain = Self.openai(#""temperature":0.25,"top_p":1,"seed":18446744073709551615,"tools":\#(tools),"tool_choice":"auto","max_tokens":100,"user":"u1""#)
        expectForwarded(plain, as: plain, reserved: 100)
        // Whitespace is not kept; nothing else changes.
        expectForwarded(#"{ "model" : "gpt-4o-mini", "messages" : [ {"role": "user", "content": "h\u0069 \u00e9"} ], "max_tokens" : 7 }"#,
                        as: #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi é"}],"max_tokens":7}"#)
        expectForwarded(Self.openai(""), as: Self.openai(#""max_tokens":4096"#), reserved: 4096)
        expectForwarded(Self.openai(#""max_completion_tokens":300"#), as: Self.openai(#""max_completion_tokens":300"#))
        // A stream asks for its usage (the only place it is reported).
        expectForwarded(Self.openai(#""stream":true,"max_tokens":50"#), as: Self.openai(#""stream":true,"max_tokens":50,"stream_options":{"include_usage":true}"#))
        expectForwarded(Self.openai(#""stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false},"max_tokens":50"#),
                        as: Self.openai(#""stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},"max_tokens":50"#))
        expectForwarded(Self.openai(#""stream":false,"n":1"#), as: Self.openai(#""stream":false,"n":1,"max_tokens":4096"#), reserved: 4096)
        let a = Self.anthropic(#""max_tokens":100,"system":[{"type":"text","text":"be brief"}],"temperature":0.5,"tools":[{"name":"read_file","input_schema":{"type":"object"}},{"type":"bash_20250124","name":"bash"}],"thinking":{"type":"enabled","budget_tokens":50},"stream":true"#)
        expectForwarded(a, api: .messages, as: a, reserved: 100)
        expectForwarded(Self.anthropic(""), api: .messages, as: Self.anthropic(#""max_tokens":4096"#))
    }

    @Test("null means not given: the cap is set in its place")
    func nulls() {
        expectForwarded(Self.openai(#""max_tokens":null,"temperature":0"#), as: Self.openai(#""max_tokens":4096,"temperature":0"#))
        expectForwarded(Self.openai(#""max_completion_tokens":null"#), as: Self.openai(#""max_completion_tokens":4096"#))
        expectForwarded(Self.openai(#""n":null,"stream":null,"stream_options":null"#), as: Self.openai(#""max_tokens":4096"#), reserved: 4096)
        expectForwarded(Self.anthropic(#""max_tokens":null"#), api: .messages, as: Self.anthropic(#""max_tokens":4096"#))
    }

    @Test("the output cap: anything but a positive integer literal is 400 naming the field; above the cap 403; both aliases 400")
    func outputCap() {
        for form in [#""100000""#, "true", "false", "1e6", "1e3", "1E2", "3.5", "100.0", "[100]", #"{"v":100}"#] {
            expectRefused(Self.openai(#""max_tokens":\#(form)"#), status: 400, rule: "request.max_tokens", param: "max_tokens")
            expectRefused(Self.openai(#""max_completion_tokens":\#(form)"#), status: 400, rule: "request.max_tokens", param: "max_completion_tokens")
            expectRefused(Self.anthropic(#""max_tokens":\#(form)"#), api: .messages, status: 400, rule: "request.max_tokens", param: "max_tokens")
        }
        for form in ["0", "-1", "-0"] {
            expectRefused(Self.openai(#""max_tokens":\#(form)"#), status: 400, rule: "request.max_tokens", param: "max_tokens")
            expectRefused(Self.anthropic(#""max_tokens":\#(form)"#), api: .messages, status: 400, rule: "request.max_tokens", param: "max_tokens")
        }
        for form in ["4097", "1000000", "99999999999999999999999"] {
            expectRefused(Self.openai(#""max_tokens":\#(form)"#), status: 403, rule: "models.max_tokens", param: "max_tokens")
            expectRefused(Self.openai(#""max_completion_tokens":\#(form)"#), status: 403, rule: "models.max_tokens", param: "max_completion_tokens")
            expectRefused(Self.anthropic(#""max_tokens":\#(form)"#), api: .messages, status: 403, rule: "models.max_tokens", param: "max_tokens")
        }
        expectForwarded(Self.openai(#""max_tokens":4096"#), as: Self.openai(#""max_tokens":4096"#))
        // Both aliases: the provider may honour either, so neither is chosen.
        for pair in [#""max_completion_tokens":100,"max_tokens":100000"#, #""max_tokens":100,"max_completion_tokens":100000"#,
                     #""max_tokens":100,"max_completion_tokens":100"#, #""max_tokens":null,"max_completion_tokens":100"#] {
            expectRefused(Self.openai(pair), status: 400, rule: "request.max_tokens", param: "max_completion_tokens")
        }
        // No cap in the policy: the client's value is forwarded (within the
        // gateway's own limit); none named: none set, 32768 reserved.
        var off = Self.policy
        off.maxTokens = nil
        expectForwarded(Self.openai(#""max_tokens":100000"#), policy: off, as: Self.openai(#""max_tokens":100000"#), reserved: 100000)
        expectForwarded(Self.openai(""), policy: off, as: Self.openai(""), reserved: 32768)
        expectRefused(Self.openai(#""max_tokens":10000001"#), policy: off, status: 400, rule: "request.max_tokens", param: "max_tokens")
        expectRefused(Self.openai(#""max_tokens":99999999999999999999999"#), policy: off, status: 400, rule: "request.max_tokens", param: "max_tokens")
    }

    @Test("n: a positive integer within models.max_choices; the reservation is n × the cap per choice")
    func choices() {
        expectRefused(Self.openai(#""n":50"#), status: 403, rule: "models.max_choices", param: "n")
        expectRefused(Self.openai(#""n":2"#), status: 403, rule: "models.max_choices", param: "n")
        for form in [#""2""#, "2.5", "2e0", "0", "-1", "true", "[2]"] {
            expectRefused(Self.openai(#""n":\#(form)"#), status: 400, rule: "request.n", param: "n")
        }
        var four = Self.policy
        four.maxChoices = 4
        expectForwarded(Self.openai(#""n":4,"max_tokens":100"#), policy: four, as: Self.openai(#""n":4,"max_tokens":100"#), reserved: 400)
        expectForwarded(Self.openai(#""n":3"#), policy: four, as: Self.openai(#""n":3,"max_tokens":4096"#), reserved: 3 * 4096)
        expectRefused(Self.openai(#""n":5"#), policy: four, status: 403, rule: "models.max_choices", param: "n")
        var off = four
        off.maxTokens = nil
        expectForwarded(Self.openai(#""n":2"#), policy: off, as: Self.openai(#""n":2"#), reserved: 2 * 32768)
        // Anthropic has no n.
        expectRefused(Self.anthropic(#""max_tokens":10,"n":2"#), api: .messages, status: 400, rule: "request.unknown_field", param: "n")
    }

    @Test("duplicate keys anywhere: 400 naming the key")
    func duplicates() {
        expectRefused(Self.openai(#""max_tokens":100,"max_tokens":100000"#), status: 400, rule: "request.duplicate_key", param: "max_tokens")
        expectRefused(Self.openai(#""model":"gpt-4o""#), status: 400, rule: "request.duplicate_key", param: "model")
        expectRefused(Self.openai(#""stream":true,"stream_options":{"include_usage":true,"include_usage":false}"#), status: 400, rule: "request.duplicate_key",
                      param: "stream_options.include_usage")
        expectRefused(#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#, status: 400, rule: "request.duplicate_key", param: "messages[0].content")
        expectRefused(Self.anthropic(#""max_tokens":100,"max_tokens":100000"#), api: .messages, status: 400, rule: "request.duplicate_key", param: "max_tokens")
    }

    @Test("fields: unknown ones and those that cost outside the tokens are refused; stream, stream_options, service_tier, modalities and Anthropic's tools are checked")
    func fields() {
        for field in ["best_of", "max_output_tokens", "web_search_options", "audio", "prediction"] {
            expectRefused(Self.openai(#""\#(field)":{}"#), status: 400, rule: "request.unsupported_field", param: field)
        }
        for field in ["mcp_servers", "container"] {
            expectRefused(Self.anthropic(#""max_tokens":10,"\#(field)":[]"#), api: .messages, status: 400, rule: "request.unsupported_field", param: field)
        }
        expectRefused(Self.openai(#""models":["gpt-4o"]"#), status: 400, rule: "request.unknown_field", param: "models")
        expectRefused(Self.openai(#""extra_body":{"n":50}"#), status: 400, rule: "request.unknown_field", param: "extra_body")
        expectRefused(Self.anthropic(#""max_tokens":10,"stream_options":{}"#), api: .messages, status: 400, rule: "request.unknown_field", param: "stream_options")
        expectRefused(Self.openai(#""stream":"true""#), status: 400, rule: "request.stream", param: "stream")
        expectRefused(Self.openai(#""stream":1"#), status: 400, rule: "request.stream", param: "stream")
        expectRefused(Self.anthropic(#""max_tokens":10,"stream":"yes""#), api: .messages, status: 400, rule: "request.stream", param: "stream")
        expectRefused(Self.openai(#""stream":true,"stream_options":{"include_usage":"no"}"#), status: 400, rule: "request.stream_options", param: "stream_options.include_usage")
        expectRefused(Self.openai(#""stream":true,"stream_options":{"chunk_size":1}"#), status: 400, rule: "request.stream_options", param: "stream_options.chunk_size")
        expectRefused(Self.openai(#""stream":true,"stream_options":true"#), status: 400, rule: "request.stream_options", param: "stream_options")
        expectRefused(Self.openai(#""service_tier":"priority""#), status: 400, rule: "request.service_tier", param: "service_tier")
        expectRefused(Self.openai(#""service_tier":1"#), status: 400, rule: "request.service_tier", param: "service_tier")
        expectRefused(Self.anthropic(#""max_tokens":10,"service_tier":"priority""#), api: .messages, status: 400, rule: "request.service_tier", param: "service_tier")
        expectForwarded(Self.openai(#""service_tier":"flex","max_tokens":5"#), as: Self.openai(#""service_tier":"flex","max_tokens":5"#))
        expectForwarded(Self.anthropic(#""service_tier":"standard_only","max_tokens":5"#), api: .messages,
                        as: Self.anthropic(#""service_tier":"standard_only","max_tokens":5"#))
        expectRefused(Self.openai(#""modalities":["text","audio"]"#), status: 400, rule: "request.modalities", param: "modalities")
        expectForwarded(Self.openai(#""modalities":["text"],"max_tokens":5"#), as: Self.openai(#""modalities":["text"],"max_tokens":5"#))
        expectRefused(Self.anthropic(#""max_tokens":10,"tools":[{"name":"f","input_schema":{}},{"type":"web_search_20250305","name":"web_search","max_uses":50}]"#),
                      api: .messages, status: 400, rule: "request.tools", param: "tools[1].type")
        expectRefused(Self.anthropic(#""max_tokens":10,"tools":[{"type":"code_execution_20250522","name":"x"}]"#), api: .messages, status: 400, rule: "request.tools",
                      param: "tools[0].type")
        expectRefused(Self.anthropic(#""max_tokens":10,"tools":{"name":"f"}"#), api: .messages, status: 400, rule: "request.tools", param: "tools")
        expectRefused(Self.anthropic(#""max_tokens":10,"tools":["f"]"#), api: .messages, status: 400, rule: "request.tools", param: "tools[0]")
        // The shape of the body.
        expectRefused(#"{"messages":[]}"#, status: 400, rule: "request.model", param: "model")
        expectRefused(#"{"model":"","messages":[]}"#, status: 400, rule: "request.model", param: "model")
        expectRefused(#"{"model":["gpt-4o-mini"],"messages":[]}"#, status: 400, rule: "request.model", param: "model")
        expectRefused(#"{"model":"gpt-4o-mini","messages":"hi"}"#, status: 400, rule: "request.messages", param: "messages")
        expectRefused(#"{"model":"gpt-4o-mini"}"#, status: 400, rule: "request.messages", param: "messages")
        // A client's long field name is cut in the message.
        let long = String(repeating: "x", count: 5000)
        if case .failure(let answer) = check(Self.openai(#""\#(long)":1"#)) {
            #expect(answer.rule == "request.unknown_field" && answer.message.count < 300 && (answer.param?.count ?? 0) < 100)
        } else {
            Issue.record("a long unknown field was forwarded")
        }
        if case .failure(let answer) = check("[1]") {
            #expect(answer.rule == "request.json" && answer.message.contains("JSON object"))
        } else {
            Issue.record("an array body was forwarded")
        }
    }

    @Test("the Responses API: max_output_tokens is the cap (set when absent, 403 above the policy's); input is a string or an array; hosted tools and background refused; client tools and the rest forwarded in order")
    func responses() {
        let r = GatewayAPI.responses
        expectForwarded(#"{"model":"gpt-4o-mini","input":"hi","instructions":"be brief","stream":true}"#, api: r,
                        as: #"{"model":"gpt-4o-mini","input":"hi","instructions":"be brief","stream":true,"max_output_tokens":4096}"#, reserved: 4096)
        expectForwarded(#"{"model":"gpt-4o-mini","input":[{"role":"user","content":"hi"}],"max_output_tokens":100,"tools":[{"type":"function","name":"f","parameters":{}}],"reasoning":{"effort":"low"}}"#,
                        api: r, as: #"{"model":"gpt-4o-mini","input":[{"role":"user","content":"hi"}],"max_output_tokens":100,"tools":[{"type":"function","name":"f","parameters":{}}],"reasoning":{"effort":"low"}}"#,
                        reserved: 100)
        // A stream is not given include_usage: the Responses API's usage is in response.completed.
        expectForwarded(#"{"model":"m","input":"x","stream":true,"stream_options":{"include_obfuscation":false}}"#, api: r,
                        as: #"{"model":"m","input":"x","stream":true,"stream_options":{"include_obfuscation":false},"max_output_tokens":4096}"#)
        expectForwarded(#"{"model":"m","previous_response_id":"resp_1"}"#, api: r, as: #"{"model":"m","previous_response_id":"resp_1","max_output_tokens":4096}"#)
        expectRefused(#"{"model":"m","input":"x","max_output_tokens":5000}"#, api: r, status: 403, rule: "models.max_tokens", param: "max_output_tokens")
        expectRefused(#"{"model":"m","input":"x","max_output_tokens":"100"}"#, api: r, status: 400, rule: "request.max_tokens", param: "max_output_tokens")
        expectRefused(#"{"model":"m","input":"x","max_tokens":100}"#, api: r, status: 400, rule: "request.unsupported_field", param: "max_tokens")
        expectRefused(#"{"model":"m","input":5}"#, api: r, status: 400, rule: "request.input", param: "input")
        expectRefused(#"{"model":"m"}"#, api: r, status: 400, rule: "request.input", param: "input")
        expectRefused(#"{"model":"m","input":"x","background":true}"#, api: r, status: 400, rule: "request.unsupported_field", param: "background")
        expectRefused(#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#, api: r, status: 400, rule: "request.tools", param: "tools[0].type")
        expectRefused(#"{"model":"m","input":"x","tools":[{"type":"function"},{"type":"mcp","server_url":"https://x"}]}"#, api: r,
                      status: 400, rule: "request.tools", param: "tools[1].type")
        expectRefused(#"{"model":"m","input":"x","stream_options":{"include_usage":true}}"#, api: r, status: 400, rule: "request.stream_options",
                      param: "stream_options.include_usage")
        expectRefused(#"{"model":"m","input":"x","messages":[]}"#, api: r, status: 400, rule: "request.unknown_field", param: "messages")
        expectRefused(#"{"model":"m","input":"x","service_tier":"priority"}"#, api: r, status: 400, rule: "request.service_tier", param: "service_tier")
    }

    @Test("embeddings: input only, no output cap and nothing reserved for output; unknown fields refused")
    func embeddings() {
        let e = GatewayAPI.embeddings
        expectForwarded(#"{"model":"text-embedding-3-small","input":["a","b"],"dimensions":256}"#, api: e,
                        as: #"{"model":"text-embedding-3-small","input":["a","b"],"dimensions":256}"#, reserved: 0)
        expectForwarded(#"{"input":"a","model":"m","encoding_format":"base64"}"#, api: e, as: #"{"input":"a","model":"m","encoding_format":"base64"}"#, reserved: 0)
        expectRefused(#"{"model":"m"}"#, api: e, status: 400, rule: "request.input", param: "input")
        expectRefused(#"{"model":"m","input":"a","stream":true}"#, api: e, status: 400, rule: "request.unknown_field", param: "stream")
        expectRefused(#"{"model":"m","input":"a","max_tokens":5}"#, api: e, status: 400, rule: "request.unknown_field", param: "max_tokens")
    }
}

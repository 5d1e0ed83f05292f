import NIOCore
import Testing
@testable import LevainProxy

@Suite struct UsageScannerTests {
    /// Feeds `text` in pieces of `step` bytes (events split anywhere).
    func scan(_ api: GatewayAPI, stream: Bool, _ text: String, step: Int = 7) -> UsageScanner {
        var s = UsageScanner(api: api, stream: stream, maxBody: 1 << 20)
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            s.feed(ByteBuffer(bytes: bytes[i..<min(i + step, bytes.count)]))
            i += step
        }
        s.finish()
        return s
    }

    @Test("OpenAI: a whole answer, and a stream's final usage chunk")
    func openai() {
        let whole = scan(.chatCompletions, stream: false, #"{"id":"x","model":"gpt-4o-mini","choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#)
        #expect(whole.inputTokens == 12 && whole.outputTokens == 5 && whole.model == "gpt-4o-mini" && whole.finishReason == "stop")
        let stream = scan(.chatCompletions, stream: true, """
            data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"Hi"}}],"usage":null}

            data: {"model":"gpt-4o-mini","choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}

            data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39}}

            data: [DONE]

            """)
        #expect(stream.inputTokens == 30 && stream.outputTokens == 9 && stream.finishReason == "stop")
        let none = scan(.chatCompletions, stream: true, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n")
        #expect(none.inputTokens == nil && none.outputTokens == nil)
    }

    @Test("Anthropic: message_start's input and message_delta's output (not added together), cached input counted")
    func anthropic() {
        let stream = scan(.messages, stream: true, """
            event: message_start\r
            data: {"type":"message_start","message":{"model":"claude-3-5-haiku","usage":{"input_tokens":40,"cache_read_input_tokens":2,"output_tokens":1}}}\r
            \r
            event: content_block_delta\r
            data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hello"}}\r
            \r
            event: message_delta\r
            data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\r
            \r
            """, step: 3)
        #expect(stream.inputTokens == 42 && stream.outputTokens == 15 && stream.finishReason == "end_turn" && stream.model == "claude-3-5-haiku")
        let whole = scan(.messages, stream: false, #"{"type":"message","stop_reason":"tool_use","usage":{"input_tokens":7,"output_tokens":3}}"#)
        #expect(whole.inputTokens == 7 && whole.outputTokens == 3 && whole.finishReason == "tool_use")
    }

    @Test("Responses API: usage of a whole response, and of response.completed in a stream (not the in-progress events)")
    func responses() {
        let whole = scan(.responses, stream: false, #"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o-mini","output":[],"usage":{"input_tokens":21,"input_tokens_details":{"cached_tokens":4},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":29}}"#)
        #expect(whole.inputTokens == 21 && whole.outputTokens == 8 && whole.model == "gpt-4o-mini" && whole.finishReason == "completed")
        let stream = scan(.responses, stream: true, """
            event: response.created
            data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","model":"gpt-4o-mini","usage":null}}

            event: response.output_text.delta
            data: {"type":"response.output_text.delta","sequence_number":3,"delta":"Hi","usage":{"input_tokens":999}}

            event: response.incomplete
            data: {"type":"response.incomplete","sequence_number":9,"response":{"id":"resp_1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-4o-mini-2024","usage":{"input_tokens":30,"output_tokens":16,"total_tokens":46}}}

            """)
        #expect(stream.inputTokens == 30 && stream.outputTokens == 16 && stream.model == "gpt-4o-mini-2024" && stream.finishReason == "max_output_tokens")
        let cut = scan(.responses, stream: true, "data: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\",\"usage\":null}}\n\n")
        #expect(cut.inputTokens == nil && cut.outputTokens == nil && cut.finishReason == nil)
    }

    @Test("embeddings: prompt tokens are the input, the output is 0")
    func embeddings() {
        let e = scan(.embeddings, stream: false, #"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#)
        #expect(e.inputTokens == 5 && e.outputTokens == 0 && e.model == "text-embedding-3-small")
        let none = scan(.embeddings, stream: false, #"{"object":"list","data":[]}"#)
        #expect(none.inputTokens == nil && none.outputTokens == nil)
    }

    @Test("bounded: an answer past maxBody leaves usage unknown")
    func bounded() {
        var s = UsageScanner(api: .chatCompletions, stream: false, maxBody: 16)
        s.feed(ByteBuffer(string: #"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#))
        s.finish()
        #expect(s.overflowed && s.inputTokens == nil)
    }
}

import NIOCore
import Testing
@testable import LevainProxy

@Suite struct UsageScannerTests {
    /// Feeds `text` in pieces of `step` bytes (events split anywhere).
    func scan(_ kind: ProviderKind, stream: Bool, _ text: String, step: Int = 7) -> UsageScanner {
        var s = UsageScanner(kind: kind, stream: stream, maxBody: 1 << 20)
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
        let whole = scan(.openai, stream: false, #"{"id":"x","model":"gpt-4o-mini","choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#)
        #expect(whole.inputTokens == 12 && whole.outputTokens == 5 && whole.model == "gpt-4o-mini" && whole.finishReason == "stop")
        let stream = scan(.openai, stream: true, """
            data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"Hi"}}],"usage":null}

            data: {"model":"gpt-4o-mini","choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}

            data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39}}

            data: [DONE]

            """)
        #expect(stream.inputTokens == 30 && stream.outputTokens == 9 && stream.finishReason == "stop")
        let none = scan(.openai, stream: true, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n")
        #expect(none.inputTokens == nil && none.outputTokens == nil)
    }

    @Test("Anthropic: message_start's input and message_delta's output (not added together), cached input counted")
    func anthropic() {
        let stream = scan(.anthropic, stream: true, """
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
        let whole = scan(.anthropic, stream: false, #"{"type":"message","stop_reason":"tool_use","usage":{"input_tokens":7,"output_tokens":3}}"#)
        #expect(whole.inputTokens == 7 && whole.outputTokens == 3 && whole.finishReason == "tool_use")
    }

    @Test("bounded: an answer past maxBody leaves usage unknown")
    func bounded() {
        var s = UsageScanner(kind: .openai, stream: false, maxBody: 16)
        s.feed(ByteBuffer(string: #"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#))
        s.finish()
        #expect(s.overflowed && s.inputTokens == nil)
    }
}

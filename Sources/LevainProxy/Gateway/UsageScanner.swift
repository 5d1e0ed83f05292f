import LevainJSON
import NIOCore

/// Reads what an answer used while it passes through: the `usage` of a
/// whole JSON answer, or of server-sent events as they stream (OpenAI's
/// final usage chunk; the Responses API's response.completed (or
/// .incomplete, .failed); Anthropic's message_start and message_delta). It
/// never holds more than one event line, or `maxBody` bytes of a whole
/// answer.
struct UsageScanner {
    let api: GatewayAPI
    let stream: Bool
    let maxBody: Int
    private(set) var inputTokens: UInt64?
    private(set) var outputTokens: UInt64?
    private(set) var model: String?
    private(set) var finishReason: String?
    /// The whole answer went past `maxBody` (usage unknown) or an event line
    /// was longer than that.
    private(set) var overflowed = false
    private var buffer: [UInt8] = []

    init(api: GatewayAPI, stream: Bool, maxBody: Int) {
        self.api = api
        self.stream = stream
        self.maxBody = maxBody
    }

    mutating func feed(_ chunk: ByteBuffer) {
        guard !overflowed else { return }
        chunk.withUnsafeReadableBytes { raw in
            if !stream {
                if buffer.count + raw.count > maxBody { overflowed = true; buffer = []; return }
                buffer.append(contentsOf: raw)
                return
            }
            var start = 0
            for i in 0..<raw.count where raw[i] == 0x0A {
                buffer.append(contentsOf: raw[start..<i])
                line(buffer)
                buffer.removeAll(keepingCapacity: true)
                start = i + 1
            }
            if start < raw.count {
                buffer.append(contentsOf: raw[start..<raw.count])
                if buffer.count > maxBody { overflowed = true; buffer = [] }
            }
        }
    }

    mutating func finish() {
        if stream {
            if !buffer.isEmpty { line(buffer) }
        } else if !overflowed, let object = Self.object(buffer[...]) {
            readAnswer(object)
        }
        buffer = []
    }

    private mutating func line(_ bytes: [UInt8]) {
        // "data: {...}" (a trailing \r tolerated); event names are not needed:
        // every payload names its own type.
        var slice = bytes[...]
        if slice.last == 0x0D { slice = slice.dropLast() }
        guard slice.starts(with: Array("data:".utf8)) else { return }
        slice = slice.dropFirst(5)
        while slice.first == 0x20 { slice = slice.dropFirst() }
        guard slice.first == UInt8(ascii: "{"), let object = Self.object(slice) else { return }
        readEvent(object)
    }

    private mutating func readAnswer(_ o: JSONObject) {
        model = o["model"]?.stringValue ?? model
        switch api {
        case .chatCompletions:
            readOpenAIUsage(o["usage"])
            if let r = o["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue { finishReason = r }
        case .responses:
            readResponse(o)
        case .embeddings:
            // Input only: an embedding has no output tokens.
            if let u = o["usage"]?.objectValue, let i = Self.count(u["prompt_tokens"]) {
                inputTokens = i
                outputTokens = 0
            }
        case .messages:
            readAnthropicUsage(o["usage"])
            finishReason = o["stop_reason"]?.stringValue ?? finishReason
        }
    }

    private mutating func readEvent(_ o: JSONObject) {
        switch api {
        case .chatCompletions, .embeddings:
            if let m = o["model"]?.stringValue { model = m }
            readOpenAIUsage(o["usage"])
            if let r = o["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue { finishReason = r }
        case .responses:
            // Every event names its type; the response object (with its
            // usage once it has ended) rides on the lifecycle events.
            switch o["type"]?.stringValue {
            case "response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed":
                if let r = o["response"]?.objectValue { readResponse(r) }
            default: break
            }
        case .messages:
            switch o["type"]?.stringValue {
            case "message_start":
                if let m = o["message"]?.objectValue {
                    model = m["model"]?.stringValue ?? model
                    readAnthropicUsage(m["usage"])
                }
            case "message_delta":
                readAnthropicUsage(o["usage"])
                if let r = o["delta"]?["stop_reason"]?.stringValue { finishReason = r }
            default: break
            }
        }
    }

    /// A Responses API response object: its model, usage (input tokens
    /// include cached ones; output tokens include reasoning ones) and why it
    /// ended (`completed`, or the reason it is incomplete).
    private mutating func readResponse(_ r: JSONObject) {
        if let m = r["model"]?.stringValue { model = m }
        if let u = r["usage"]?.objectValue {
            if let i = Self.count(u["input_tokens"]) { inputTokens = i }
            if let o = Self.count(u["output_tokens"]) { outputTokens = o }
        }
        if let reason = r["incomplete_details"]?["reason"]?.stringValue {
            finishReason = reason
        } else if let status = r["status"]?.stringValue, status != "in_progress", status != "queued" {
            finishReason = status
        }
    }

    private mutating func readOpenAIUsage(_ u: JSONValue?) {
        guard let u = u?.objectValue else { return }
        if let i = Self.count(u["prompt_tokens"]) { inputTokens = i }
        if let o = Self.count(u["completion_tokens"]) { outputTokens = o }
    }

    /// Anthropic counts cached input apart; all of it is input. Streamed
    /// counts are cumulative: the largest seen is the total.
    private mutating func readAnthropicUsage(_ u: JSONValue?) {
        guard let u = u?.objectValue else { return }
        let parts = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"].compactMap { Self.count(u[$0]) }
        if !parts.isEmpty { inputTokens = max(inputTokens ?? 0, parts.reduce(0, +)) }
        if let o = Self.count(u["output_tokens"]) { outputTokens = max(outputTokens ?? 0, o) }
    }

    /// A token count: a whole number, 0 or more (written 12 or 12.0).
    static func count(_ v: JSONValue?) -> UInt64? {
        switch v {
        case .int(let i)?: return i >= 0 ? UInt64(i) : nil
        case .double(let d)?: return d >= 0 && d < 1.8e19 && d.rounded() == d ? UInt64(d) : nil
        default: return nil
        }
    }

    /// A JSON object, or nil for anything else (usage is then unknown).
    static func object(_ bytes: ArraySlice<UInt8>) -> JSONObject? {
        guard !bytes.isEmpty else { return nil }
        return try? JSONValue.parseObject(utf8: Array(bytes))
    }
}

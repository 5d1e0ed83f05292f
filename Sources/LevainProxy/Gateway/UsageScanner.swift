import Foundation
import NIOCore

/// Reads what an answer used while it passes through: the `usage` of a
/// whole JSON answer, or of server-sent events as they stream (OpenAI's
/// final usage chunk; Anthropic's message_start and message_delta). It
/// never holds more than one event line, or `maxBody` bytes of a whole
/// answer.
struct UsageScanner {
    let kind: ProviderKind
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

    init(kind: ProviderKind, stream: Bool, maxBody: Int) {
        self.kind = kind
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

    private mutating func readAnswer(_ o: [String: Any]) {
        model = o["model"] as? String ?? model
        switch kind {
        case .openai:
            readOpenAIUsage(o["usage"])
            if let choices = o["choices"] as? [[String: Any]], let r = choices.first?["finish_reason"] as? String { finishReason = r }
        case .anthropic:
            readAnthropicUsage(o["usage"])
            finishReason = o["stop_reason"] as? String ?? finishReason
        }
    }

    private mutating func readEvent(_ o: [String: Any]) {
        switch kind {
        case .openai:
            if let m = o["model"] as? String { model = m }
            readOpenAIUsage(o["usage"])
            if let choices = o["choices"] as? [[String: Any]], let r = choices.first?["finish_reason"] as? String { finishReason = r }
        case .anthropic:
            switch o["type"] as? String {
            case "message_start":
                if let m = o["message"] as? [String: Any] {
                    model = m["model"] as? String ?? model
                    readAnthropicUsage(m["usage"])
                }
            case "message_delta":
                readAnthropicUsage(o["usage"])
                if let d = o["delta"] as? [String: Any], let r = d["stop_reason"] as? String { finishReason = r }
            default: break
            }
        }
    }

    private mutating func readOpenAIUsage(_ u: Any?) {
        guard let u = u as? [String: Any] else { return }
        if let i = Self.count(u["prompt_tokens"]) { inputTokens = i }
        if let o = Self.count(u["completion_tokens"]) { outputTokens = o }
    }

    /// Anthropic counts cached input apart; all of it is input. Streamed
    /// counts are cumulative: the largest seen is the total.
    private mutating func readAnthropicUsage(_ u: Any?) {
        guard let u = u as? [String: Any] else { return }
        let parts = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"].compactMap { Self.count(u[$0]) }
        if !parts.isEmpty { inputTokens = max(inputTokens ?? 0, parts.reduce(0, +)) }
        if let o = Self.count(u["output_tokens"]) { outputTokens = max(outputTokens ?? 0, o) }
    }

    static func count(_ v: Any?) -> UInt64? {
        if let n = v as? NSNumber, n.int64Value >= 0 { return UInt64(n.int64Value) }
        return nil
    }

    static func object(_ bytes: ArraySlice<UInt8>) -> [String: Any]? {
        guard !bytes.isEmpty else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }
}

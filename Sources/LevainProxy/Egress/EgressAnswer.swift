import NIOCore

/// An answer the proxy gives itself (a refusal, a failure, a protocol
/// error), written raw: it must also follow a CONNECT, whose response
/// NIO's encoder would send without a body. The body is JSON that says
/// which rule decided and what to do about it, so an agent reading it can
/// tell "not allowed" from "not reachable" from "not HTTP".
struct EgressAnswer: Error, Equatable {
    var status: Int
    var reason: String
    /// The record this answer makes.
    var decision: EgressRecord.Decision
    var rule: String
    var message: String
    var fields: [(String, JSONField)]
    var extraHeaders: [(String, String)] = []

    enum JSONField: Equatable {
        case string(String)
        case int(Int)
    }

    static func == (a: EgressAnswer, b: EgressAnswer) -> Bool {
        a.status == b.status && a.rule == b.rule && a.message == b.message
    }

    /// 403: the policy refuses the destination.
    static func denied(_ rule: String, host: String, port: Int, message: String) -> EgressAnswer {
        EgressAnswer(status: 403, reason: "Forbidden", decision: .denied, rule: rule, message: message,
                     fields: [("error", .string("egress_denied")), ("rule", .string(rule)), ("host", .string(host)),
                              ("port", .int(port)), ("message", .string(message))],
                     extraHeaders: [("x-levain-denied", rule)])
    }

    /// 502: allowed, but the name did not resolve ("dns"), the operator's
    /// mapping is unusable ("network.hosts") or the connection failed ("connect").
    static func unreachable(_ rule: String, host: String, port: Int, message: String) -> EgressAnswer {
        EgressAnswer(status: 502, reason: "Bad Gateway", decision: .error, rule: rule, message: message,
                     fields: [("error", .string("upstream_unreachable")), ("rule", .string(rule)), ("host", .string(host)),
                              ("port", .int(port)), ("message", .string(message))],
                     extraHeaders: [("x-levain-error", rule)])
    }

    /// 400 (or 408, 431): the jail did not speak proxy HTTP.
    static func badRequest(_ message: String, status: Int = 400, reason: String = "Bad Request") -> EgressAnswer {
        EgressAnswer(status: status, reason: reason, decision: .error, rule: "protocol", message: message,
                     fields: [("error", .string("bad_request")), ("rule", .string("protocol")), ("message", .string(message))],
                     extraHeaders: [("x-levain-error", "protocol")])
    }

    /// 503: the proxy's connection limit for this jail is reached.
    static func overloaded(limit: Int) -> EgressAnswer {
        let message = "the egress proxy is at its limit of \(limit) open connections for this sandbox; close some and retry"
        return EgressAnswer(status: 503, reason: "Service Unavailable", decision: .error, rule: "proxy.connections",
                            message: message,
                            fields: [("error", .string("proxy_busy")), ("rule", .string("proxy.connections")),
                                     ("message", .string(message))],
                            extraHeaders: [("x-levain-error", "proxy.connections"), ("retry-after", "1")])
    }

    var body: String {
        "{" + fields.map { key, value in
            switch value {
            case .string(let s): return "\(EgressAnswer.quote(key)):\(EgressAnswer.quote(s))"
            case .int(let i): return "\(EgressAnswer.quote(key)):\(i)"
            }
        }.joined(separator: ",") + "}\n"
    }

    func buffer(_ allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = self.body
        var head = "HTTP/1.1 \(status) \(reason)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n"
        for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
        head += "connection: close\r\n\r\n"
        var buffer = allocator.buffer(capacity: head.utf8.count + body.utf8.count)
        buffer.writeString(head)
        buffer.writeString(body)
        return buffer
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static let connectEstablished = "HTTP/1.1 200 Connection Established\r\n\r\n"
}

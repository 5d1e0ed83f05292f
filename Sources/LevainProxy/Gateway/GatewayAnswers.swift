import Foundation
import LevainJSON
import NIOCore
import NIOHTTP1

/// The gateway's own answers: in the wire format of the API that was
/// called (so the official SDKs raise a typed error with the message), with
/// a `levain` member and headers naming the rule or the budget.
struct GatewayAnswer: Error {
    var status: HTTPResponseStatus
    /// The error type of the API's format ("permission_error", ...).
    var type: String
    var message: String
    var decision: ModelExchangeRecord.Decision
    var rule: String
    var extraHeaders: [(String, String)] = []
    /// The request field the answer is about (`max_tokens`,
    /// `stream_options.include_usage`): OpenAI's `error.param`, and
    /// `levain.param` in both formats.
    var param: String? = nil

    static func denied(_ rule: String, _ message: String, param: String? = nil) -> GatewayAnswer {
        GatewayAnswer(status: .forbidden, type: "permission_error", message: message, decision: .denied, rule: rule,
                      extraHeaders: [("x-levain-denied", rule), ("x-should-retry", "false")], param: param)
    }

    static func budget(_ budget: String, _ message: String, retryAfter: Int? = nil) -> GatewayAnswer {
        var headers = [("x-levain-budget", budget)]
        if let retryAfter { headers.append(("retry-after", String(retryAfter))) } else { headers.append(("x-should-retry", "false")) }
        return GatewayAnswer(status: .tooManyRequests, type: "rate_limit_error", message: message, decision: .budget,
                             rule: budget, extraHeaders: headers)
    }

    static func invalid(_ rule: String, _ message: String, status: HTTPResponseStatus = .badRequest, param: String? = nil) -> GatewayAnswer {
        GatewayAnswer(status: status, type: status == .notFound ? "not_found_error" : "invalid_request_error",
                      message: message, decision: .error, rule: rule, extraHeaders: [("x-levain-error", rule), ("x-should-retry", "false")],
                      param: param)
    }

    static func upstream(_ message: String) -> GatewayAnswer {
        GatewayAnswer(status: .badGateway, type: "api_error", message: message, decision: .error, rule: "upstream",
                      extraHeaders: [("x-levain-error", "upstream")])
    }

    func body(for kind: ProviderKind?) -> ByteBuffer {
        var levain: JSONObject = ["decision": .string(decision.rawValue), "rule": .string(rule)]
        if let param { levain["param"] = .string(param) }
        let object: JSONValue
        switch kind {
        case .anthropic:
            object = ["type": "error", "error": ["type": .string(type), "message": .string(message)], "levain": .object(levain)]
        case .openai, nil:
            object = ["error": ["message": .string(message), "type": .string(type), "code": .string(rule), "param": param.map { .string($0) } ?? .null],
                      "levain": .object(levain)]
        }
        return ByteBuffer(string: object.encoded())
    }

    func head(for kind: ProviderKind?, keepAlive: Bool, contentLength: Int) -> HTTPResponseHead {
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(contentLength))])
        for (k, v) in extraHeaders { headers.add(name: k, value: v) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    }
}

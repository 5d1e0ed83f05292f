import Foundation
import LevainPolicy
import NIOHTTP1

/// The policy side of the egress proxy, pure: which rule refuses a
/// destination, and what the headers look like on the way out and back.
enum EgressRules {
    struct Denial: Equatable {
        var rule: String
        var message: String
    }

    /// The rule that refuses `method host:port`, in the documented order:
    /// methods, ports, deny, allow. Nil: the policy allows it (the address
    /// check comes after resolution).
    static func denial(method: String, host: String, port: Int, rules: Policy.Egress) -> Denial? {
        if !rules.methods.contains(where: { $0.uppercased() == method }) {
            return Denial(rule: "network.methods", message:
                "method \(method) is not allowed by the egress policy (network.methods: \(rules.methods.joined(separator: ", "))); ask the operator to add it to the policy")
        }
        if !rules.ports.contains(port) {
            return Denial(rule: "network.ports", message:
                "port \(port) is not allowed by the egress policy (network.ports: \(rules.ports.map(String.init).joined(separator: ", "))); ask the operator to add it to the policy")
        }
        if let pattern = rules.deny.first(where: { $0.matches(host) }) {
            return Denial(rule: "network.deny", message:
                "\(host) is denied by the egress policy (network.deny: \(pattern)); this destination cannot be reached from this sandbox")
        }
        if !rules.allow.contains(where: { $0.matches(host) }) {
            return Denial(rule: "network.allow", message:
                "\(host) is not in the egress policy's allow list (network.allow); ask the operator to add it to the policy")
        }
        return nil
    }

    /// Hop-by-hop headers (RFC 9110 §7.6.1): they describe the jail's
    /// connection to the proxy and must not travel further. Proxy-Authorization
    /// names the run and is the proxy's alone.
    static let hopByHop = ["connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
                           "proxy-authorization", "proxy-authenticate"]

    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        let named = headers[canonicalForm: "connection"].map { $0.lowercased() }
        for name in hopByHop + named {
            headers.remove(name: name)
        }
    }

    /// The request sent upstream: origin-form target, HTTP/1.1, the jail's
    /// headers less the hop-by-hop ones, Host set to the target, the
    /// policy's injected headers (replacing any the jail sent under that
    /// name) and `connection: close` (one upstream connection per request).
    static func upstreamHead(_ head: HTTPRequestHead, target: EgressTarget, settings: EgressSettings) -> HTTPRequestHead {
        var headers = head.headers
        removeHopByHop(&headers)
        headers.replaceOrAdd(name: "host", value: target.hostHeader)
        for rule in settings.rules.inject where rule.domain.matches(target.host) {
            if let value = settings.secrets[rule.secret] {
                headers.replaceOrAdd(name: rule.header, value: value)
            }
        }
        // The encoder frames by these headers as they stand: one framing only.
        if headers.contains(name: "transfer-encoding") {
            headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
            headers.remove(name: "content-length")
        }
        headers.replaceOrAdd(name: "connection", value: "close")
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path, headers: headers)
    }

    /// The response relayed to the jail. The jail-side encoder does no
    /// framing of its own, so the headers here must describe exactly the
    /// bytes that follow: no body for HEAD/1xx/204/304, chunked only towards
    /// an HTTP/1.1 client, otherwise the body runs until the connection
    /// closes (always the case: `connection: close`).
    static func jailHead(_ upstream: HTTPResponseHead, requestMethod: HTTPMethod, requestVersion: HTTPVersion) -> HTTPResponseHead {
        var headers = upstream.headers
        removeHopByHop(&headers)
        let code = upstream.status.code
        let bodiless = requestMethod == .HEAD || (100..<200).contains(code) || code == 204 || code == 304
        if bodiless {
            headers.remove(name: "transfer-encoding")
        } else if headers.contains(name: "transfer-encoding") {
            headers.remove(name: "content-length")
            if requestVersion.major == 1 && requestVersion.minor >= 1 {
                headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
            } else {
                headers.remove(name: "transfer-encoding")
            }
        }
        if !(100..<200).contains(code) {
            headers.replaceOrAdd(name: "connection", value: "close")
        }
        return HTTPResponseHead(version: .http1_1, status: upstream.status, headers: headers)
    }

    /// The user of `Proxy-Authorization: Basic base64(user:pass)`; the
    /// password is never looked at (the user names the run).
    static func proxyUser(_ headers: HTTPHeaders) -> String? {
        guard let value = headers.first(name: "proxy-authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic", parts[1].utf8.count <= 1024,
              let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
              let decoded = String(data: data, encoding: .utf8) else { return nil }
        let user = decoded.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return user.isEmpty ? nil : user
    }
}

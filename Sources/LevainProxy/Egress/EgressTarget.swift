/// Where a request from the jail wants to go, read from its request target:
/// `CONNECT host:port` or an absolute-form `http://host[:port]/path`.
/// Parsing is strict on purpose: the host is what the policy decides on,
/// so anything that could be read two ways (user info, unbracketed IPv6,
/// stray characters) is refused instead of guessed at.
struct EgressTarget: Equatable, Sendable {
    /// Lower case, no trailing dot, no brackets around an IPv6 literal.
    var host: String
    var port: Int
    /// The origin-form target to send upstream ("/path?query"); "" for CONNECT.
    var path: String

    struct Malformed: Error, Equatable {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// `authority` of a CONNECT request; the port is required (RFC 9110 §9.3.6).
    static func connect(_ uri: String) throws(Malformed) -> EgressTarget {
        let (host, port) = try authority(Substring(uri), defaultPort: nil)
        return EgressTarget(host: host, port: port, path: "")
    }

    /// An absolute-form target. Only `http` is forwarded: an `https` URL
    /// here would ask the proxy to speak TLS for the jail, which it does not
    /// do; clients send those through CONNECT.
    static func absolute(_ uri: String) throws(Malformed) -> EgressTarget {
        if uri.hasPrefix("/") || uri == "*" {
            throw Malformed("this is a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port")
        }
        guard let sep = uri.range(of: "://") else {
            throw Malformed("the request target is not an absolute http:// URL")
        }
        let scheme = uri[..<sep.lowerBound].lowercased()
        guard scheme == "http" else {
            if scheme == "https" || scheme == "wss" {
                throw Malformed("\(scheme):// URLs go through a CONNECT tunnel; configure the client with this proxy for HTTPS too")
            }
            throw Malformed("scheme \(scheme.prefix(16)):// is not supported: only http:// and CONNECT are")
        }
        let rest = uri[sep.upperBound...]
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let (host, port) = try authority(rest[..<end], defaultPort: 80)
        var path = String(rest[end...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        return EgressTarget(host: host, port: port, path: path)
    }

    /// `host[:port]` or `[v6]:port`.
    static func authority(_ text: Substring, defaultPort: Int?) throws(Malformed) -> (String, Int) {
        if text.contains("@") {
            throw Malformed("user information in the URL is not accepted (it hides the real host)")
        }
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw Malformed("unterminated [ in the host") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Malformed("unexpected text after ]") }
                portText = after.dropFirst()
            }
            guard let bytes = AddressClass.parse(String(host)), bytes.count == 16 else {
                throw Malformed("[\(host.prefix(64))] is not an IPv6 address")
            }
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw Malformed("an IPv6 address must be written in brackets") }
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
            guard isHostName(host) else { throw Malformed("invalid host name") }
        }
        let port: Int
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let p = Int(portText), (1...65535).contains(p) else {
                throw Malformed("invalid port")
            }
            port = p
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw Malformed("CONNECT needs host:port")
        }
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return (name, port)
    }

    /// Letters, digits, '-', '_' and dots; no empty label but a trailing one.
    static func isHostName(_ s: Substring) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 254 else { return false }
        let body = s.hasSuffix(".") ? s.dropLast() : s
        return body.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.utf8.allSatisfy { c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
            }
        }
    }

    /// The Host header for this target: the port only when not the default.
    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }
}

/// What leaves a jail: the egress proxy's rules and the model gateway's.
/// Both are pure values; the supervisor's LevainProxy enforces them.

/// A domain rule: "example.com" matches that name only; "*.example.com"
/// matches every name below it (a.example.com, a.b.example.com) but not
/// example.com itself; "*" matches every name. Names compare
/// case-insensitively, without a trailing dot.
public struct DomainPattern: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let text: String

    public init?(_ text: String) {
        let t = DomainPattern.normalize(text)
        if t == "*" { self.text = t; return }
        let body = t.hasPrefix("*.") ? String(t.dropFirst(2)) : t
        guard !body.isEmpty, body.utf8.count <= 253,
              body.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ label in
                  !label.isEmpty && label.utf8.count <= 63 && label.utf8.allSatisfy { c in
                      (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
                  }
              }) else { return nil }
        self.text = t
    }

    public var description: String { text }

    public func matches(_ host: String) -> Bool {
        let h = DomainPattern.normalize(host)
        if text == "*" { return true }
        if text.hasPrefix("*.") {
            let suffix = text.dropFirst(1)  // ".example.com"
            return h.count > suffix.count && h.hasSuffix(suffix)
        }
        return h == text
    }

    /// Lower case, no trailing dot.
    public static func normalize(_ host: String) -> String {
        var h = host.lowercased()
        if h.hasSuffix(".") { h.removeLast() }
        return h
    }
}

extension Policy {
    /// The egress proxy's rules (`[network]` beside `mode`). Nothing is
    /// allowed unless a rule allows it; a deny rule wins over an allow rule.
    public struct Egress: Sendable, Equatable {
        public var allow: [DomainPattern] = []
        public var deny: [DomainPattern] = []
        /// Destination ports; CONNECT and plain HTTP alike.
        public var ports: [Int] = [80, 443]
        /// Methods of plain HTTP requests; "CONNECT" allows tunnels.
        public var methods: [String] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"]
        /// Headers added to plain-HTTP requests to matching domains, from
        /// secrets named in the supervisor's config: the jail never sees them.
        public var inject: [HeaderInjection] = []
        public init() {}
    }

    public struct HeaderInjection: Sendable, Equatable {
        public var domain: DomainPattern
        public var header: String
        /// The name of a `[secrets.NAME]` entry of the supervisor's config.
        public var secret: String
        public init(domain: DomainPattern, header: String, secret: String) {
            self.domain = domain
            self.header = header
            self.secret = secret
        }
    }

    /// The model gateway's rules (`[models]`).
    public struct Models: Sendable, Equatable {
        /// Provider names of the supervisor's config; nil: every configured one.
        public var providers: [String]? = nil
        /// Model names; a trailing "*" matches a prefix ("gpt-4o*"); "*" all.
        public var allow: [String] = ["*"]
        public var deny: [String] = []
        /// Largest max_tokens a request may ask for; a request that names
        /// none gets this one.
        public var maxTokens: Int? = 8192
        /// Largest `n` (choices per request) of an OpenAI request; each
        /// choice may use up to the request's max_tokens, so a request
        /// reserves n × max_tokens of output.
        public var maxChoices: Int = 1
        public var runTokens: UInt64? = nil
        public var runSpend: Double? = nil
        public var sessionTokens: UInt64? = nil
        public var sessionSpend: Double? = nil
        /// Requests per minute, per session.
        public var requestsPerMinute: Int? = nil
        public init() {}

        public static func modelMatches(_ pattern: String, _ model: String) -> Bool {
            if pattern == "*" { return true }
            if pattern.hasSuffix("*") { return model.hasPrefix(pattern.dropLast()) }
            return pattern == model
        }

        /// The rule that denies `model`, or nil when it is allowed.
        public func denyingRule(for model: String) -> String? {
            if deny.contains(where: { Models.modelMatches($0, model) }) { return "models.deny" }
            if !allow.contains(where: { Models.modelMatches($0, model) }) { return "models.allow" }
            return nil
        }
    }
}

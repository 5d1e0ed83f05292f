import LevainPolicy

/// What the egress proxy of one session decides with: the policy's rules,
/// the operator's name mappings and the secrets for header injection.
/// The supervisor builds it; the proxy only reads it.
public struct EgressSettings: Sendable {
    public var rules: Policy.Egress
    /// `[network.hosts]` of the supervisor's config: a name mapped by the
    /// operator to IP addresses. A mapped name is not looked up, and its
    /// addresses are exempt from the loopback/private/link-local/metadata
    /// refusal (tests stand local servers in for named domains this way).
    public var hosts: [String: [String]]
    /// `[secrets.NAME]` values, by name, for `rules.inject`.
    public var secrets: [String: String]
    public var connectTimeout: Double
    /// Largest request head (request line and headers) read from the jail.
    public var maxHeadBytes: Int

    public init(rules: Policy.Egress, hosts: [String: [String]] = [:], secrets: [String: String] = [:],
                connectTimeout: Double = 10, maxHeadBytes: Int = 64 << 10) {
        self.rules = rules
        self.hosts = hosts
        self.secrets = secrets
        self.connectTimeout = connectTimeout
        self.maxHeadBytes = maxHeadBytes
    }
}

/// One decision of the egress proxy, reported when the exchange ends (or
/// at once, for a refusal). The supervisor writes it to the session log as
/// `network.request` (allowed, or failed upstream) or `network.denied`.
public struct EgressRecord: Sendable, Equatable {
    public enum Decision: String, Sendable {
        case allowed
        case denied
        /// Allowed by policy but not completed: DNS failure, connect
        /// failure, a malformed request.
        case error
    }

    public var decision: Decision
    /// The rule that decided ("network.allow", "network.deny", "network.ports",
    /// "network.methods", "network.address", "network.hosts", "protocol", "dns", "connect").
    public var rule: String
    public var method: String
    /// "http" for a forwarded request, "connect" for a tunnel.
    public var kind: String
    public var host: String
    public var port: Int
    /// The address connected to (after resolution), when one was.
    public var address: String?
    /// The status answered to the jail (the upstream's, or the proxy's own).
    public var status: Int?
    public var bytesUp: UInt64
    public var bytesDown: UInt64
    public var durationMillis: Double
    /// The user of `Proxy-Authorization: Basic` (the proxy URL of a jail's
    /// environment names its run there), when present.
    public var proxyUser: String?
    public var message: String?

    public init(decision: Decision, rule: String, method: String, kind: String, host: String, port: Int,
                address: String? = nil, status: Int? = nil, bytesUp: UInt64 = 0, bytesDown: UInt64 = 0,
                durationMillis: Double = 0, proxyUser: String? = nil, message: String? = nil) {
        self.decision = decision
        self.rule = rule
        self.method = method
        self.kind = kind
        self.host = host
        self.port = port
        self.address = address
        self.status = status
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
        self.durationMillis = durationMillis
        self.proxyUser = proxyUser
        self.message = message
    }
}

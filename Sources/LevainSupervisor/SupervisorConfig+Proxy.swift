#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainPolicy
import LevainProxy

/// What leaves a jail, in the supervisor's config: the in-jail ports, the
/// providers and their keys, the model catalog with prices, the operator's
/// name mappings, secrets for header injection, tenant budgets.
public struct ProxyConfig: Sendable, Equatable {
    /// Where a secret comes from: an environment variable of the supervisor
    /// or a file (first line, whitespace trimmed). Read at start-up.
    public enum SecretSource: Sendable, Equatable {
        case env(String)
        case file(String)
        case value(String)
    }

    public struct Provider: Sendable, Equatable {
        public var name: String
        public var kind: ProviderKind
        public var baseURL: String
        public var key: SecretSource
        public var timeout: Double
    }

    /// Ports inside every jail (its own network namespace: no clash).
    public var gatewayPort = 8790
    public var egressPort = 8791
    public var maxGatewayBody = 4 << 20
    public var connectTimeout: Double = 10
    public var providers: [Provider] = []
    public var catalog: [String: ModelEntry] = [:]
    public var hosts: [String: [String]] = [:]
    public var secrets: [String: SecretSource] = [:]
    public var tenants: [String: TenantBudget] = [:]

    public init() {}

    static func readSecret(_ source: SecretSource, what: String) throws(SupervisorError) -> String {
        switch source {
        case .value(let v): return v
        case .env(let name):
            guard let v = getenv(name).map({ String(cString: $0) }), !v.isEmpty else {
                throw SupervisorError(.invalid, "\(what): the environment variable \(name) is not set for levain serve")
            }
            return v
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SupervisorError(.invalid, "\(what): cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 16384)
            let n = read(fd, &buf, buf.count)
            guard n > 0 else { throw SupervisorError(.invalid, "\(what): \(path) is empty") }
            let text = String(decoding: buf[0..<n], as: UTF8.self)
            let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            let v = String(line.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed())
            guard !v.isEmpty else { throw SupervisorError(.invalid, "\(what): the first line of \(path) is empty") }
            return v
        }
    }

    /// Reads every key and secret: a missing one stops `levain serve` with
    /// the key that names it.
    func resolvedProviders() throws(SupervisorError) -> [String: ProviderConfig] {
        var out: [String: ProviderConfig] = [:]
        for p in providers {
            let key = try Self.readSecret(p.key, what: "providers.\(p.name)")
            out[p.name] = ProviderConfig(name: p.name, kind: p.kind, baseURL: p.baseURL, apiKey: key, timeout: p.timeout)
        }
        return out
    }

    func resolvedSecrets() throws(SupervisorError) -> [String: String] {
        var out: [String: String] = [:]
        for (name, source) in secrets { out[name] = try Self.readSecret(source, what: "secrets.\(name)") }
        return out
    }

    static func parse(_ root: inout TableReader, into c: inout ProxyConfig) throws(PolicyError) {
        if var t = try root.table("gateway") {
            if let v = try t.integer("port", in: 1...65535) { c.gatewayPort = Int(v) }
            if let v = try t.size("max_body") {
                guard v >= 1024, v <= 256 << 20 else { throw t.invalid("max_body", "between 1K and 256M") }
                c.maxGatewayBody = Int(v)
            }
            try t.finish()
        }
        if var t = try root.table("egress") {
            if let v = try t.integer("port", in: 1...65535) { c.egressPort = Int(v) }
            if let v = try t.duration("connect_timeout") { c.connectTimeout = v }
            try t.finish()
        }
        guard c.gatewayPort != c.egressPort else {
            throw PolicyError(.invalidValue, file: root.file, key: "egress.port", "the gateway and the egress proxy need different ports")
        }
        if var t = try root.table("providers") {
            for entry in t.table.entries {
                guard var p = try t.table(entry.key) else { continue }
                guard let kindText = try p.string("kind"), let kind = ProviderKind(rawValue: kindText) else {
                    throw p.has("kind") ? p.invalid("kind", "expected \(ProviderKind.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or "))")
                        : PolicyError(.missing, file: p.file, line: p.line, key: p.qualified("kind"), "a provider needs kind = \"openai\" or \"anthropic\"")
                }
                guard let url = try p.string("base_url") else {
                    throw PolicyError(.missing, file: p.file, line: p.line, key: p.qualified("base_url"),
                                      kind == .openai ? "give base_url, e.g. \"https://api.openai.com/v1\"" : "give base_url, e.g. \"https://api.anthropic.com\"")
                }
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw p.invalid("base_url", "must start with http:// or https://") }
                let key = try secretSource(&p, envKey: "api_key_env", fileKey: "api_key_file")
                guard let key else {
                    throw PolicyError(.missing, file: p.file, line: p.line, key: p.qualified("api_key_env"),
                                      "name where the key is: api_key_env = \"VAR\" or api_key_file = \"/path\"")
                }
                let timeout = try p.duration("timeout") ?? 600
                try p.finish()
                c.providers.append(Provider(name: entry.key, kind: kind, baseURL: url, key: key, timeout: timeout))
            }
            try t.finish()
        }
        if var t = try root.table("models") {
            for entry in t.table.entries {
                guard var m = try t.table(entry.key) else { continue }
                guard let provider = try m.string("provider") else {
                    throw PolicyError(.missing, file: m.file, line: m.line, key: m.qualified("provider"), "name the provider that serves this model")
                }
                guard c.providers.contains(where: { $0.name == provider }) else {
                    throw m.invalid("provider", "no [providers.\(provider)] in this file; known: \(c.providers.map(\.name).joined(separator: ", "))")
                }
                let input = try m.number("input_price") ?? 0
                let output = try m.number("output_price") ?? 0
                guard input >= 0, output >= 0 else { throw m.invalid("input_price", "prices are per million tokens, not negative") }
                try m.finish()
                c.catalog[entry.key] = ModelEntry(name: entry.key, provider: provider, inputPrice: input, outputPrice: output)
            }
            try t.finish()
        }
        if var t = try root.table("network") {
            if var h = try t.table("hosts") {
                for entry in h.table.entries {
                    guard DomainPattern(entry.key) != nil, !entry.key.contains("*") else { throw h.invalid(entry.key, "not a host name") }
                    var addrs: [String] = []
                    if case .array = entry.node.value {
                        addrs = (try h.stringArray(entry.key) ?? []).map(\.0)
                    } else if let s = try h.string(entry.key) {
                        addrs = [s]
                    }
                    for a in addrs where !isIPAddress(a) { throw h.invalid(entry.key, "\"\(a)\" is not an IP address") }
                    c.hosts[DomainPattern.normalize(entry.key)] = addrs
                }
                try h.finish()
            }
            try t.finish()
        }
        if var t = try root.table("secrets") {
            for entry in t.table.entries {
                guard var s = try t.table(entry.key) else { continue }
                let source = try secretSource(&s, envKey: "env", fileKey: "file")
                try s.finish()  // an unknown key first: it may be a misspelt env/file
                guard let source else {
                    throw PolicyError(.missing, file: s.file, line: s.line, key: s.qualified("env"), "give env = \"VAR\" or file = \"/path\"")
                }
                c.secrets[entry.key] = source
            }
            try t.finish()
        }
        if var t = try root.table("tenants") {
            for entry in t.table.entries {
                guard var b = try t.table(entry.key) else { continue }
                var budget = TenantBudget()
                if let v = try b.integer("tokens", in: 1...Int64.max) { budget.tokens = UInt64(v) }
                if let v = try b.number("spend") {
                    guard v > 0 else { throw b.invalid("spend", "a positive amount") }
                    budget.spend = v
                }
                try b.finish()
                c.tenants[entry.key] = budget
            }
            try t.finish()
        }
    }

    private static func secretSource(_ t: inout TableReader, envKey: String, fileKey: String) throws(PolicyError) -> SecretSource? {
        let env = try t.string(envKey)
        let file = try t.string(fileKey)
        if env != nil && file != nil { throw t.invalid(fileKey, "give \(envKey) or \(fileKey), not both") }
        if let env {
            guard PolicyLoader.isValidEnvName(env) else { throw t.invalid(envKey, "not an environment variable name") }
            return .env(env)
        }
        if let file {
            guard file.hasPrefix("/") else { throw t.invalid(fileKey, "must be an absolute path") }
            return .file(file)
        }
        return nil
    }

    static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }
}

extension PolicyLoader {
    static let httpMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]

    /// `[network]`: allow, deny, ports, methods and `[network.inject."DOMAIN"]`.
    static func readEgress(_ t: inout TableReader, into egress: inout Policy.Egress) throws(PolicyError) {
        for key in ["allow", "deny", "ports", "methods", "inject"] { _ = t.node(key) }
        func patterns(_ key: String) throws(PolicyError) -> [DomainPattern]? {
            guard let items = try t.stringArray(key) else { return nil }
            var out: [DomainPattern] = []
            for (s, line) in items {
                guard let p = DomainPattern(s) else {
                    throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified(key),
                                      "\"\(s)\" is not a domain rule: use a name (\"pypi.org\"), \"*.suffix\" (\"*.pythonhosted.org\") or \"*\"")
                }
                out.append(p)
            }
            return out
        }
        if let v = try patterns("allow") { egress.allow = v }
        if let v = try patterns("deny") { egress.deny = v }
        if let node = t.node("ports") {
            guard case .array(let items) = node.value else { throw t.invalid("ports", "expected an array of port numbers, e.g. [80, 443]") }
            var ports: [Int] = []
            for item in items {
                guard case .integer(let i) = item.value, (1...65535).contains(i) else {
                    throw PolicyError(.invalidValue, file: t.file, line: item.position.line, key: t.qualified("ports"),
                                      "ports are integers from 1 to 65535")
                }
                ports.append(Int(i))
            }
            egress.ports = ports
        }
        if let items = try t.stringArray("methods") {
            var methods: [String] = []
            for (m, line) in items {
                let u = m.uppercased()
                guard httpMethods.contains(u) else {
                    throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified("methods"),
                                      "\"\(m)\" is not an HTTP method; known: \(httpMethods.sorted().joined(separator: ", "))")
                }
                methods.append(u)
            }
            egress.methods = methods
        }
        if var inject = try t.table("inject") {
            var rules: [Policy.HeaderInjection] = []
            for entry in inject.table.entries {
                guard let domain = DomainPattern(entry.key) else {
                    throw inject.invalid(entry.key, "\"\(entry.key)\" is not a domain rule")
                }
                guard var headers = try inject.table(entry.key) else { continue }
                for h in headers.table.entries {
                    guard isValidHeaderName(h.key) else { throw headers.invalid(h.key, "not a valid HTTP header name") }
                    guard let secret = try headers.string(h.key), !secret.isEmpty else {
                        throw headers.invalid(h.key, "give the name of a [secrets.NAME] entry of the supervisor's config")
                    }
                    rules.append(Policy.HeaderInjection(domain: domain, header: h.key, secret: secret))
                }
                try headers.finish()
            }
            try inject.finish()
            egress.inject = rules
        }
    }

    /// `[models]`.
    static func readModels(_ t: inout TableReader, into models: inout Policy.Models) throws(PolicyError) {
        // Every key is known to the unknown-key hint, read or not.
        for key in ["providers", "allow", "deny", "max_tokens", "max_choices", "run_tokens", "run_spend", "session_tokens",
                    "session_spend", "requests_per_minute"] { _ = t.node(key) }
        if let v = try t.stringArray("providers") { models.providers = v.map(\.0) }
        for key in ["allow", "deny"] {
            guard let items = try t.stringArray(key) else { continue }
            for (p, line) in items where p.isEmpty || p.dropLast().contains("*") {
                throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified(key),
                                  "\"\(p)\": a model rule is a name, a prefix ending in \"*\", or \"*\"")
            }
            if key == "allow" { models.allow = items.map(\.0) } else { models.deny = items.map(\.0) }
        }
        if t.has("max_tokens") {
            models.maxTokens = try t.isOff("max_tokens") ? nil : try t.integer("max_tokens", in: 1...10_000_000).map(Int.init)
        }
        if let v = try t.integer("max_choices", in: 1...128) { models.maxChoices = Int(v) }
        func tokens(_ key: String) throws(PolicyError) -> UInt64?? {
            guard t.has(key) else { return .none }
            if try t.isOff(key) { return .some(nil) }
            return .some(try t.integer(key, in: 1...Int64.max).map(UInt64.init))
        }
        func spend(_ key: String) throws(PolicyError) -> Double?? {
            guard t.has(key) else { return .none }
            if try t.isOff(key) { return .some(nil) }
            guard let v = try t.number(key), v > 0 else { throw t.invalid(key, "a spend budget is a positive amount in the prices' currency (e.g. 2.50)") }
            return .some(v)
        }
        if let v = try tokens("run_tokens") { models.runTokens = v }
        if let v = try tokens("session_tokens") { models.sessionTokens = v }
        if let v = try spend("run_spend") { models.runSpend = v }
        if let v = try spend("session_spend") { models.sessionSpend = v }
        if t.has("requests_per_minute") {
            models.requestsPerMinute = try t.isOff("requests_per_minute") ? nil : try t.integer("requests_per_minute", in: 1...1_000_000).map(Int.init)
        }
    }

    /// RFC 9110 token characters.
    public static func isValidHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }
}

/// `[tools]` of a policy: which tools an agent of the session may call,
/// which wait for a person's approval, the rules on their arguments, and
/// their time and output bounds. A pure value; the supervisor's tool
/// service enforces it.
extension Policy {
    public struct Tools: Sendable, Equatable {
        /// The built-in sandbox tools (they run inside the session's jail).
        public static let builtins = ["exec", "read_file", "write_file", "edit_file", "list_files", "glob", "grep"]

        /// Tool names; a trailing "*" matches a prefix ("mcp__files__*"), "*" all.
        /// By default the built-in sandbox tools, which can do nothing the
        /// jail does not already allow; host tools (MCP servers) must be named.
        public var allow: [String] = Tools.builtins
        public var deny: [String] = []
        /// Calls of these tools wait for a decision (`levain approve`).
        public var approve: [String] = []
        /// How long a call waits for a decision before it is denied.
        public var approvalTimeout: Double = 300
        /// Default bounds of one call (a tool's own entry may lower or raise them).
        public var timeout: Double = 60
        public var maxOutput: UInt64 = 64 << 10
        /// Per tool: bounds and argument rules (`[tools.rules."NAME"]`).
        public var rules: [String: ToolRules] = [:]
        public init() {}

        /// The same rule syntax as `[models]`: a name, a prefix ending in "*", or "*".
        public static func matches(_ pattern: String, _ name: String) -> Bool { Models.modelMatches(pattern, name) }

        /// The rule that denies `tool`, or nil when it may be called.
        public func denyingRule(for tool: String) -> String? {
            if deny.contains(where: { Tools.matches($0, tool) }) { return "tools.deny" }
            if !allow.contains(where: { Tools.matches($0, tool) }) { return "tools.allow" }
            return nil
        }

        public func needsApproval(_ tool: String) -> Bool { approve.contains(where: { Tools.matches($0, tool) }) }
        public func timeout(for tool: String) -> Double { rules[tool]?.timeout ?? timeout }
        public func maxOutput(for tool: String) -> UInt64 { rules[tool]?.maxOutput ?? maxOutput }
    }

    public struct ToolRules: Sendable, Equatable {
        public var timeout: Double?
        public var maxOutput: UInt64?
        /// Per string argument: constraints checked after the schema.
        public var arguments: [String: ArgumentRule] = [:]
        public init() {}
    }

    /// A constraint on one string argument of a tool.
    public struct ArgumentRule: Sendable, Equatable {
        /// The argument, a workspace-relative path once normalized
        /// ("a/./b" is "a/b"; ".." may not leave the workspace), must
        /// start with one of these prefixes ("out/" or "out").
        public var pathPrefix: [String]? = nil
        /// An extended regular expression (POSIX) the whole argument must match.
        public var pattern: String? = nil
        public init() {}

        /// nil when `value` passes, else why it does not.
        public func check(_ value: String) -> String? {
            if let prefixes = pathPrefix {
                guard let p = ArgumentRule.normalizedPath(value) else {
                    return "\"\(value)\" leaves the workspace"
                }
                let ok = prefixes.contains { pre in
                    let q = pre.hasSuffix("/") ? String(pre.dropLast()) : pre
                    return q.isEmpty || q == "." || p == q || p.hasPrefix(q + "/")
                }
                if !ok { return "\"\(value)\" is outside the allowed paths \(prefixes.map { "\"\($0)\"" }.joined(separator: ", "))" }
            }
            if let pattern, !PosixRegex.wholeMatch(pattern, value) {
                return "\"\(value)\" does not match the pattern \(pattern)"
            }
            return nil
        }

        /// "a/./b//c" → "a/b/c"; ".." folds; nil if it climbs above the root
        /// or is absolute (workspace tools take relative paths).
        public static func normalizedPath(_ path: String) -> String? {
            if path.hasPrefix("/") { return nil }
            var parts: [Substring] = []
            for c in path.split(separator: "/", omittingEmptySubsequences: true) {
                if c == "." { continue }
                if c == ".." {
                    if parts.isEmpty { return nil }
                    parts.removeLast()
                    continue
                }
                parts.append(c)
            }
            return parts.joined(separator: "/")
        }
    }
}

#if canImport(Glibc)
import Glibc

/// POSIX extended regular expressions (regcomp), anchored to the whole text.
public enum PosixRegex {
    /// nil when `pattern` compiles, else the compiler's message.
    public static func compileError(_ pattern: String) -> String? {
        var re = regex_t()
        let rc = regcomp(&re, "^(" + pattern + ")$", REG_EXTENDED | REG_NOSUB)
        if rc == 0 { regfree(&re); return nil }
        var buf = [CChar](repeating: 0, count: 256)
        regerror(rc, &re, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func wholeMatch(_ pattern: String, _ text: String) -> Bool {
        var re = regex_t()
        guard regcomp(&re, "^(" + pattern + ")$", REG_EXTENDED | REG_NOSUB) == 0 else { return false }
        defer { regfree(&re) }
        return regexec(&re, text, 0, nil, 0) == 0
    }
}
#endif

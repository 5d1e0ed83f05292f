extension PolicyLoader {
    /// `[tools]`: allow, deny, approve, approval_timeout, timeout,
    /// max_output and `[tools.rules."NAME"]` (timeout, max_output and
    /// `args.ARG = { path_prefix = [...], pattern = "..." }`).
    static func readTools(_ t: inout TableReader, into tools: inout Policy.Tools) throws(PolicyError) {
        for key in ["allow", "deny", "approve", "approval_timeout", "timeout", "max_output", "rules"] { _ = t.node(key) }
        func names(_ key: String) throws(PolicyError) -> [String]? {
            guard let items = try t.stringArray(key) else { return nil }
            for (p, line) in items where p.isEmpty || p.dropLast().contains("*") {
                throw PolicyError(.invalidValue, file: t.file, line: line, key: t.qualified(key),
                                  "\"\(p)\": a tool rule is a name (\"write_file\"), a prefix ending in \"*\" (\"mcp__files__*\"), or \"*\"")
            }
            return items.map(\.0)
        }
        if let v = try names("allow") { tools.allow = v }
        if let v = try names("deny") { tools.deny = v }
        if let v = try names("approve") { tools.approve = v }
        if let v = try t.duration("approval_timeout") { tools.approvalTimeout = v }
        if let v = try t.duration("timeout") { tools.timeout = v }
        if let v = try t.size("max_output") { tools.maxOutput = v }
        guard var rules = try t.table("rules") else { return }
        for entry in rules.table.entries {
            guard var r = try rules.table(entry.key) else { continue }
            var out = Policy.ToolRules()
            out.timeout = try r.duration("timeout")
            out.maxOutput = try r.size("max_output")
            if var args = try r.table("args") {
                for arg in args.table.entries {
                    guard var a = try args.table(arg.key) else { continue }
                    var rule = Policy.ArgumentRule()
                    if let prefixes = try a.stringArray("path_prefix") {
                        for (p, line) in prefixes where p.hasPrefix("/") || Policy.ArgumentRule.normalizedPath(p) == nil {
                            throw PolicyError(.invalidValue, file: a.file, line: line, key: a.qualified("path_prefix"),
                                              "\"\(p)\": a path prefix is relative to the workspace (\"out/\")")
                        }
                        rule.pathPrefix = prefixes.map(\.0)
                    }
                    if let pattern = try a.string("pattern") {
                        if let error = PosixRegex.compileError(pattern) {
                            throw a.invalid("pattern", "not a POSIX extended regular expression: \(error)")
                        }
                        rule.pattern = pattern
                    }
                    try a.finish()
                    out.arguments[arg.key] = rule
                }
                try args.finish()
            }
            try r.finish()
            tools.rules[entry.key] = out
        }
        try rules.finish()
    }
}

import Testing
@testable import LevainPolicy

@Suite struct ToolsPolicyTests {
    @Test("[tools] parses: allow, deny, approve, bounds, argument rules; errors name the file, line and key")
    func parse() throws {
        let p = try PolicyLoader.parse("""
            [tools]
            allow = ["read_file", "write_file", "mcp__files__*"]
            deny = ["mcp__files__delete"]
            approve = ["write_file"]
            approval_timeout = "2m"
            timeout = "30s"
            max_output = "16K"

            [tools.rules.write_file]
            timeout = "5s"

            [tools.rules.write_file.args.path]
            path_prefix = ["out/", "tmp"]

            [tools.rules."mcp__files__read".args.name]
            pattern = "[a-z]+\\\\.txt"
            """, file: "p.toml", directory: nil)
        let t = p.tools
        #expect(t.denyingRule(for: "read_file") == nil)
        #expect(t.denyingRule(for: "mcp__files__list") == nil)
        #expect(t.denyingRule(for: "mcp__files__delete") == "tools.deny")
        #expect(t.denyingRule(for: "exec") == "tools.allow")
        #expect(t.needsApproval("write_file") && !t.needsApproval("read_file"))
        #expect(t.approvalTimeout == 120 && t.timeout(for: "read_file") == 30 && t.timeout(for: "write_file") == 5)
        #expect(t.maxOutput(for: "read_file") == 16 << 10)
        let path = try #require(t.rules["write_file"]?.arguments["path"])
        #expect(path.check("out/a.txt") == nil && path.check("out") == nil && path.check("tmp/x/y") == nil && path.check("./out/b") == nil)
        #expect(path.check("outside.txt") != nil)
        #expect(path.check("output/a") != nil)  // a prefix is a directory, not a string prefix
        #expect(path.check("out/../etc/passwd") != nil)
        #expect(path.check("/out/a") != nil)
        #expect(path.check("out/../../x") != nil)
        let name = try #require(t.rules["mcp__files__read"]?.arguments["name"])
        #expect(name.check("notes.txt") == nil && name.check("notes.txt.sh") != nil && name.check("../x.txt") != nil)

        // Without [tools]: the built-in sandbox tools, nothing else.
        let d = try PolicyLoader.parse("", file: "d.toml", directory: nil).tools
        #expect(Policy.Tools.builtins.allSatisfy { d.denyingRule(for: $0) == nil })
        #expect(d.denyingRule(for: "mcp__x__y") == "tools.allow")

        expectPolicyError("[tools]\nallow = [\"a*b\"]", line: 2, key: "tools.allow", "a tool rule")
        expectPolicyError("[tools]\naprove = [\"x\"]", line: 2, key: "tools.aprove", "did you mean \"approve\"")
        expectPolicyError("[tools.rules.x.args.p]\npath_prefix = [\"/etc\"]", line: 2, key: "tools.rules.x.args.p.path_prefix", "relative")
        expectPolicyError("[tools.rules.x.args.p]\npattern = \"(\"", line: 2, key: "tools.rules.x.args.p.pattern", "POSIX")
        expectPolicyError("[tools.rules.x]\ntimeout = \"soon\"", line: 2, key: "tools.rules.x.timeout", "invalid duration")
    }
}

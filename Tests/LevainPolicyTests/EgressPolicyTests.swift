import Testing
@testable import LevainPolicy

@Suite struct EgressPolicyTests {
    @Test("domain rules: exact names, *.suffix below a name only, *, case and trailing dots")
    func domainPatterns() throws {
        let exact = try #require(DomainPattern("PyPI.org."))
        #expect(exact.matches("pypi.org") && exact.matches("PYPI.ORG.") && !exact.matches("files.pypi.org"))
        let suffix = try #require(DomainPattern("*.pythonhosted.org"))
        #expect(suffix.matches("files.pythonhosted.org") && suffix.matches("a.b.pythonhosted.org"))
        #expect(!suffix.matches("pythonhosted.org") && !suffix.matches("evilpythonhosted.org"))
        #expect(DomainPattern("*")!.matches("anything.example"))
        #expect(DomainPattern("169.254.169.254")!.matches("169.254.169.254"))
        for bad in ["", "a..b", "exa mple.com", "*foo.com", "foo.*.com", "http://x.com", "x.com/path"] {
            #expect(DomainPattern(bad) == nil, "\(bad)")
        }
    }

    @Test("[network] and [models] parse; errors name the file, line and key")
    func parse() throws {
        let p = try PolicyLoader.parse("""
            [network]
            mode = "loopback"
            allow = ["pypi.org", "*.pythonhosted.org"]
            deny = ["evil.pypi.org"]
            ports = [443]
            methods = ["get", "CONNECT"]

            [network.inject."api.github.com"]
            Authorization = "github"

            [models]
            providers = ["openai"]
            allow = ["gpt-4o*"]
            deny = ["gpt-4o"]
            max_tokens = 2048
            run_tokens = 10000
            session_spend = 1.5
            requests_per_minute = 30
            """, file: "p.toml", directory: nil)
        #expect(p.egress.allow.map(\.text) == ["pypi.org", "*.pythonhosted.org"])
        #expect(p.egress.deny.map(\.text) == ["evil.pypi.org"])
        #expect(p.egress.ports == [443])
        #expect(p.egress.methods == ["GET", "CONNECT"])
        #expect(p.egress.inject == [Policy.HeaderInjection(domain: DomainPattern("api.github.com")!, header: "Authorization", secret: "github")])
        #expect(p.models.providers == ["openai"])
        #expect(p.models.denyingRule(for: "gpt-4o-mini") == nil)
        #expect(p.models.denyingRule(for: "gpt-4o") == "models.deny")
        #expect(p.models.denyingRule(for: "claude-3") == "models.allow")
        #expect(p.models.maxTokens == 2048 && p.models.runTokens == 10000 && p.models.sessionSpend == 1.5 && p.models.requestsPerMinute == 30)

        expectPolicyError("[network]\nallow = [\"ok.com\",\n  \"http://bad.com\"]", line: 3, key: "network.allow", "not a domain rule")
        expectPolicyError("[network]\nports = [80, 70000]", line: 2, key: "network.ports", "1 to 65535")
        expectPolicyError("[network]\nmethods = [\"FETCH\"]", line: 2, key: "network.methods", "not an HTTP method")
        expectPolicyError("[models]\nrun_spend = -1", line: 2, key: "models.run_spend", "positive")
        expectPolicyError("[models]\nallow = [\"g*pt\"]", line: 2, key: "models.allow", "prefix ending in")
        expectPolicyError("[models]\nmax_tokenz = 5", line: 2, key: "models.max_tokenz", "did you mean \"max_tokens\"")
    }

    @Test("the built-in default: nothing out by the proxy, every configured model within 8192 tokens")
    func defaults() throws {
        let p = try PolicyLoader.load("default")
        #expect(p.egress.allow.isEmpty)
        #expect(p.models.allow == ["*"] && p.models.maxTokens == 8192)
    }
}

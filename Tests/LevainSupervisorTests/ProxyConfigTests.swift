import Foundation
import LevainAPI
import LevainPolicy
import LevainProxy
import LevainTools
import Testing
@testable import LevainSupervisor

/// The gateway's and the proxy's keys of the supervisor's config: values,
/// and errors that name the file, the line and the key.
@Suite struct ProxyConfigTests {
    @Test("providers, models, hosts, secrets and tenants parse")
    func parses() throws {
        let c = try SupervisorConfig.parse("""
            [gateway]
            port = 9000
            max_body = "1M"

            [egress]
            port = 9001
            connect_timeout = "3s"

            [providers.oa]
            kind = "openai"
            base_url = "https://api.openai.com/v1/"
            api_key_file = "/etc/levain/openai"

            [models."gpt-4o-mini"]
            provider = "oa"
            input_price = 0.15
            output_price = 0.6

            [network.hosts]
            "Mirror.Internal." = "10.0.0.5"
            "dual.internal" = ["10.0.0.6", "fd00::6"]

            [secrets.gh]
            env = "GH_TOKEN"

            [tenants.acme]
            tokens = 1000
            spend = 2.5
            """, file: "c.toml")
        #expect(c.proxy.gatewayPort == 9000 && c.proxy.egressPort == 9001 && c.proxy.maxGatewayBody == 1 << 20)
        #expect(c.proxy.connectTimeout == 3)
        #expect(c.proxy.providers.first?.kind == .openai && c.proxy.providers.first?.key == .file("/etc/levain/openai"))
        #expect(c.proxy.catalog["gpt-4o-mini"] == ModelEntry(name: "gpt-4o-mini", provider: "oa", inputPrice: 0.15, outputPrice: 0.6))
        #expect(c.proxy.hosts["mirror.internal"] == ["10.0.0.5"])
        #expect(c.proxy.hosts["dual.internal"] == ["10.0.0.6", "fd00::6"])
        #expect(c.proxy.secrets["gh"] == .env("GH_TOKEN"))
        #expect(c.proxy.tenants["acme"] == TenantBudget(tokens: 1000, spend: 2.5))
        // The cost of a million tokens each way.
        #expect(abs(c.proxy.catalog["gpt-4o-mini"]!.cost(input: 1_000_000, output: 1_000_000) - 0.75) < 1e-9)
    }

    @Test("bad input names the file, the line and the key")
    func errors() {
        expectConfigError("[providers.x]\nkind = \"gemini\"\nbase_url = \"https://x\"\napi_key_env = \"K\"", line: 2, key: "providers.x.kind", "\"openai\" or \"anthropic\"")
        expectConfigError("[providers.x]\nkind = \"openai\"\napi_key_env = \"K\"", line: 1, key: "providers.x.base_url", "give base_url")
        expectConfigError("[providers.x]\nkind = \"openai\"\nbase_url = \"ftp://x\"\napi_key_env = \"K\"", line: 3, key: "providers.x.base_url", "http://")
        expectConfigError("[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"", line: 1, key: "providers.x.api_key_env", "api_key_env")
        expectConfigError("[providers.x]\nkind = \"openai\"\nbase_url = \"https://x\"\napi_key_env = \"K\"\napi_key_file = \"/k\"", line: 5, key: "providers.x.api_key_file", "not both")
        expectConfigError("[models.\"m\"]\nprovider = \"nobody\"", line: 2, key: "models.m.provider", "no [providers.nobody]")
        expectConfigError("[network.hosts]\n\"a.test\" = \"not-an-ip\"", line: 2, key: "network.hosts.a.test", "not an IP address")
        expectConfigError("[secrets.s]\nvalue = \"inline\"", line: 2, key: "secrets.s.value", "unknown key")
        expectConfigError("[tenants.t]\nspend = -1", line: 2, key: "tenants.t.spend", "positive")
        expectConfigError("[gateway]\nport = 9\n[egress]\nport = 9", line: nil, key: "egress.port", "different ports")
    }

    @Test("a provider's key is read when the supervisor starts; a missing one names the key")
    func secrets() throws {
        var c = ProxyConfig()
        c.providers = [.init(name: "oa", kind: .openai, baseURL: "https://x", key: .env("LEVAIN_TEST_SURELY_UNSET_KEY"), timeout: 10)]
        #expect(throws: SupervisorError.self) { _ = try c.resolvedProviders() }
        do {
            _ = try c.resolvedProviders()
        } catch {
            #expect(error.message.contains("providers.oa") && error.message.contains("LEVAIN_TEST_SURELY_UNSET_KEY"))
        }
        c.providers[0].key = .value("sk-1")
        #expect(try c.resolvedProviders()["oa"]?.apiKey == "sk-1")
    }
}

/// `[tools]` and `[mcp.NAME]` of the supervisor's config.
@Suite struct ToolsConfigTests {
    @Test("stdio and URL servers parse; errors name the file, line and key")
    func parses() throws {
        let c = try SupervisorConfig.parse("""
            [tools]
            mcp_port = 9792

            [mcp.files]
            command = ["python3", "/srv/files.py"]
            policy = "default"
            binds = ["/srv", "/opt/venv:/venv"]
            env = { LOG = "warning" }
            start_timeout = "5s"

            [mcp.search]
            url = "https://mcp.example.com/mcp"
            policy = "/etc/levain/search.toml"
            """, file: "c.toml")
        #expect(c.tools.mcpPort == 9792)
        #expect(c.tools.servers.map(\.name) == ["files", "search"])
        #expect(c.tools.servers[0].command == ["python3", "/srv/files.py"] && c.tools.servers[0].binds == ["/srv", "/opt/venv:/venv"])
        #expect(c.tools.servers[0].env == ["LOG": "warning"] && c.tools.servers[0].startTimeout == 5)
        #expect(c.tools.servers[1].url == "https://mcp.example.com/mcp" && c.tools.servers[1].command.isEmpty)

        expectConfigError("[mcp.x]\npolicy = \"default\"", line: 1, key: "mcp.x.command", "either command")
        expectConfigError("[mcp.x]\ncommand = [\"a\"]\nurl = \"http://h/mcp\"", line: 1, key: "mcp.x.command", "not both")
        expectConfigError("[mcp.x]\nurl = \"ftp://h\"", line: 2, key: "mcp.x.url", "not an http")
        expectConfigError("[mcp.Bad_Name]\ncommand = [\"a\"]", line: 1, key: "mcp.Bad_Name", "a server name")
        expectConfigError("[mcp.x]\ncommand = [\"a\"]\nbinds = [\"relative\"]", line: 3, key: "mcp.x.binds", "absolute")
        expectConfigError("[mcp.x]\ncommand = [\"a\"]\ncomand = 1", line: 3, key: "mcp.x.comand", "did you mean")
        expectConfigError("[tools]\nmcp_port = 0", line: 2, key: "tools.mcp_port", "out of range")
    }
}

/// `text` as the supervisor's config must fail to parse naming c.toml,
/// this line and key, with a message containing `fragment`.
func expectConfigError(_ text: String, line: Int?, key: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try SupervisorConfig.parse(text, file: "c.toml")
        Issue.record("no error for \(text)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.file == "c.toml", sourceLocation: sourceLocation)
        #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
        #expect(error.key == key, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct WarmPoolConfigTests {
    @Test("[warm_pool]: default two of the default policy; counts per policy; errors name the line and key")
    func parses() throws {
        #expect(try SupervisorConfig.parse("", file: "c.toml").warmPools == ["default": 2])
        let c = try SupervisorConfig.parse("""
            [supervisor]
            default_policy = "strict"

            [warm_pool]
            default = 0
            strict = 3
            """, file: "c.toml")
        #expect(c.warmPools == ["default": 0, "strict": 3])
        #expect(try SupervisorConfig.parse("[supervisor]\ndefault_policy = \"strict\"\n", file: "c.toml").warmPools == ["strict": 2])
        expectConfigError("[warm_pool]\ndefault = 65\n", line: 2, key: "warm_pool.default", "64")
        expectConfigError("[warm_pool]\nnope = 1\n", line: 2, key: "warm_pool.nope", "does not load")
        expectConfigError("[warm_pool]\n\"/etc/levain/missing.toml\" = 1\n", line: 2, key: "warm_pool./etc/levain/missing.toml", "does not load")
        // A policy with [audit] is not pooled.
        let dir = "/tmp/levain-warm-config-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let audited = try String(contentsOfFile: packageRoot + "/policies/default.toml", encoding: .utf8)
            .replacingOccurrences(of: "name = \"default\"", with: "name = \"audited\"") + "\n[audit]\nrecord = [\"execve\"]\n"
        try audited.write(toFile: dir + "/audited.toml", atomically: true, encoding: .utf8)
        expectConfigError("[warm_pool]\n\"\(dir)/audited.toml\" = 1\n", line: 2, key: "warm_pool.\(dir)/audited.toml", "[audit]")
        // Off needs no policy to load.
        #expect(try SupervisorConfig.parse("[warm_pool]\nnope = 0\n", file: "c.toml").warmPools == ["nope": 0])
    }
}

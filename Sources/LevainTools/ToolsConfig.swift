import LevainPolicy

/// The supervisor config's tool settings: the in-jail MCP endpoint's port
/// and the host tools (MCP servers over stdio, each in its own jail).
///
/// ```toml
/// [tools]
/// mcp_port = 8792             # in every session jail, 127.0.0.1
///
/// [mcp.files]                 # its tools are mcp__files__NAME
/// command = ["python3", "/srv/mcp/files_server.py"]
/// policy = "default"          # built-in name or path: the server's own jail
/// env = { LOG_LEVEL = "warning" }
/// start_timeout = "20s"       # initialize + tools/list
/// binds = ["/srv/mcp"]        # read-only, "HOST" or "HOST:JAIL"
///
/// [mcp.search]                # streamable HTTP instead of stdio
/// url = "https://mcp.example.com/mcp"
/// policy = "/etc/levain/mcp-search.toml"   # its [network] rules decide the way out
/// ```
public struct ToolsConfig: Sendable, Equatable {
    public struct Server: Sendable, Equatable {
        public var name: String
        /// A stdio server: the command, run in the server's own jail.
        public var command: [String]
        /// A streamable-HTTP server: its URL, reached through an egress
        /// proxy of the supervisor's under `policy`'s [network] rules.
        public var url: String?
        public var policy: String?
        public var env: [String: String] = [:]
        public var startTimeout: Double = 20
        /// Read-only binds into the server's jail ("HOST" or "HOST:JAIL").
        public var binds: [String] = []
    }

    public var mcpPort = 8792
    public var servers: [Server] = []
    public init() {}

    public static func parse(_ root: inout TableReader, into c: inout ToolsConfig) throws(PolicyError) {
        if var t = try root.table("tools") {
            if let v = try t.integer("mcp_port", in: 1...65535) { c.mcpPort = Int(v) }
            try t.finish()
        }
        guard var t = try root.table("mcp") else { return }
        for entry in t.table.entries {
            guard var s = try t.table(entry.key) else { continue }
            guard entry.key.utf8.count <= 24, entry.key.utf8.allSatisfy({ c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
            }) else {
                throw t.invalid(entry.key, "a server name is 1 to 24 lower-case letters, digits or \"-\" (its tools are mcp__NAME__TOOL)")
            }
            let argv = try s.stringArray("command")?.map(\.0) ?? []
            let url = try s.string("url")
            guard argv.isEmpty != (url == nil) else {
                throw PolicyError(.missing, file: s.file, line: entry.node.keyPosition?.line, key: s.qualified("command"),
                                  "an MCP server needs either command = [\"program\", \"arg\", ...] (stdio, run inside its own jail) or url = \"https://...\" (streamable HTTP, through the egress policy), not both")
            }
            if let url, !(url.hasPrefix("http://") || url.hasPrefix("https://")) || url.contains(" ") {
                throw s.invalid("url", "\"\(url)\" is not an http:// or https:// URL")
            }
            var server = Server(name: entry.key, command: argv)
            server.url = url
            server.policy = try s.string("policy")
            if var env = try s.table("env") {
                for e in env.table.entries {
                    guard let v = try env.string(e.key) else { continue }
                    server.env[e.key] = v
                }
                try env.finish()
            }
            if let v = try s.duration("start_timeout") { server.startTimeout = v }
            if let v = try s.stringArray("binds") {
                for (b, line) in v where !b.hasPrefix("/") {
                    throw PolicyError(.invalidValue, file: s.file, line: line, key: s.qualified("binds"), "\"\(b)\": binds are absolute host paths, \"HOST\" or \"HOST:JAIL\"")
                }
                server.binds = v.map(\.0)
            }
            try s.finish()
            c.servers.append(server)
        }
        try t.finish()
    }
}

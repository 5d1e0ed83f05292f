#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainPolicy
import LevainTools

/// The supervisor's settings: `levain serve --config FILE` (TOML), then
/// the command-line options. Every key is optional; docs/SUPERVISOR.md
/// lists them.
public struct SupervisorConfig: Sendable, Equatable {
    /// The control API's Unix socket.
    public var socketPath = APIClient.Address.defaultSocketPath
    /// Its mode: 0600 (root only) unless a group is granted (0660).
    public var socketGroup: String?
    /// Optional TCP listener ("127.0.0.1:7480"); it requires a bearer token.
    public var tcpAddress: String?
    /// The file holding the bearer token for TCP clients.
    public var tokenFile: String?
    public var stateDirectory = "/var/lib/levain"
    /// Runs executing at once, across sessions; the rest wait in the queue.
    public var concurrency = 8
    public var maxSessions = 256
    /// Runs of one session, and of one tenant, executing at once (nil: up
    /// to `concurrency`). Free slots go round-robin between tenants, then
    /// between a tenant's sessions (FairRunQueue).
    public var queuePerSession: Int?
    public var queuePerTenant: Int?
    /// On SIGTERM: how long running runs may finish before they are killed.
    public var shutdownGrace: Double = 30
    /// Infrastructure failures (a jail that did not start, a harness that
    /// died before the run started) are retried this many times in all,
    /// with exponential backoff from `retryBackoff` seconds.
    public var retryAttempts = 3
    public var retryBackoff: Double = 0.2
    /// levain-harness; default: next to the levain binary.
    public var harnessPath: String?
    public var defaultPolicy = "default"
    public var maxFrame = 1 << 20
    public var streamWindow = 2 << 20
    public var heartbeatMillis = 2000
    /// Largest output kept per stream of a run; past it the run's output is
    /// drained and dropped, and the run is marked truncated.
    public var maxOutputBytes: UInt64 = 1 << 30
    /// Largest file written through the API.
    public var maxFileBytes: UInt64 = 256 << 20
    /// Largest JSON request body.
    public var maxRequestBytes = 4 << 20
    /// Connections each control-API listener holds at once; past it a new
    /// connection gets a 503 and is closed. nil: derived from the open-files
    /// limit when `levain serve` starts (APIConnections.defaultLimit).
    public var maxConnections: Int?
    /// A request's head (request line and headers) must arrive within this
    /// many seconds of its first byte.
    public var headerTimeout: Double = 10
    /// A connection with no request in progress (or a request body that
    /// stopped arriving) is closed after this many seconds of silence.
    public var idleTimeout: Double = 60
    /// Forced cgroup2 mount (as LEVAIN_CGROUP_V2_ROOT for levain run).
    public var cgroupV2Root: String?
    /// The model gateway and the egress proxy (SupervisorConfig+Proxy).
    public var proxy = ProxyConfig()
    /// The in-jail MCP endpoint and the host tools (LevainTools/ToolsConfig).
    public var tools = ToolsConfig()
    /// `[warm_pool]`: ready jails kept per policy (name -> count, 0: off);
    /// nil: `defaultWarmPool` of the default policy (WarmPool.swift).
    public var warmPool: [String: Int]?
    public static let defaultWarmPool = 2

    /// The pools to keep: the config's, or two jails of the default policy.
    public var warmPools: [String: Int] { warmPool ?? [defaultPolicy: Self.defaultWarmPool] }

    public init() {}

    /// The session log and the runs' output live under the state directory.
    public var logPath: String { stateDirectory + "/log.sqlite" }

    public static func load(_ path: String) throws(PolicyError) -> SupervisorConfig {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PolicyError(.notFound, file: path, "cannot open: \(String(cString: strerror(errno)))") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        close(fd)
        return try parse(String(decoding: bytes, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws(PolicyError) -> SupervisorConfig {
        var c = SupervisorConfig()
        var root = try TableReader.root(text, file: file)
        if var t = try root.table("supervisor") {
            if let v = try t.string("socket") { c.socketPath = try absolute(v, t, "socket") }
            c.socketGroup = try t.string("socket_group")
            if let v = try t.string("state") { c.stateDirectory = try absolute(v, t, "state") }
            if let v = try t.integer("concurrency", in: 1...4096) { c.concurrency = Int(v) }
            if let v = try t.integer("max_sessions", in: 1...100_000) { c.maxSessions = Int(v) }
            if let v = try t.duration("shutdown_grace") { c.shutdownGrace = v }
            if let v = try t.string("harness") { c.harnessPath = try absolute(v, t, "harness") }
            if let v = try t.string("default_policy") { c.defaultPolicy = v }
            if let v = try t.string("cgroup_v2_root") { c.cgroupV2Root = try absolute(v, t, "cgroup_v2_root") }
            if let v = try t.integer("max_connections", in: 1...1_000_000) { c.maxConnections = Int(v) }
            if let v = try t.duration("header_timeout") {
                guard v >= 0.1, v <= 3600 else { throw t.invalid("header_timeout", "between 100ms and 1h") }
                c.headerTimeout = v
            }
            if let v = try t.duration("idle_timeout") {
                guard v >= 0.1, v <= 86_400 else { throw t.invalid("idle_timeout", "between 100ms and 24h") }
                c.idleTimeout = v
            }
            try t.finish()
        }
        if var t = try root.table("tcp") {
            c.tcpAddress = try t.string("address")
            if let v = try t.string("token_file") { c.tokenFile = try absolute(v, t, "token_file") }
            if c.tcpAddress != nil && c.tokenFile == nil {
                throw t.invalid("address", "a TCP listener needs a bearer token: set tcp.token_file")
            }
            try t.finish()
        }
        if var t = try root.table("queue") {
            if let v = try t.integer("per_session", in: 1...4096) { c.queuePerSession = Int(v) }
            if let v = try t.integer("per_tenant", in: 1...4096) { c.queuePerTenant = Int(v) }
            try t.finish()
        }
        if var t = try root.table("retries") {
            if let v = try t.integer("attempts", in: 1...20) { c.retryAttempts = Int(v) }
            if let v = try t.duration("backoff") { c.retryBackoff = v }
            try t.finish()
        }
        if var t = try root.table("protocol") {
            if let v = try t.size("max_frame") {
                guard v >= 4096, v <= 16 << 20 else { throw t.invalid("max_frame", "between 4K and 16M") }
                c.maxFrame = Int(v)
            }
            if let v = try t.size("window") {
                guard v >= 4096, v <= 64 << 20 else { throw t.invalid("window", "between 4K and 64M") }
                c.streamWindow = Int(v)
            }
            if let v = try t.duration("heartbeat") {
                guard v >= 0.1, v <= 60 else { throw t.invalid("heartbeat", "between 100ms and 60s") }
                c.heartbeatMillis = Int(v * 1000)
            }
            try t.finish()
        }
        if var t = try root.table("limits") {
            if let v = try t.size("max_output") { c.maxOutputBytes = v }
            if let v = try t.size("max_file") { c.maxFileBytes = v }
            if let v = try t.size("max_request") { c.maxRequestBytes = Int(min(v, 1 << 30)) }
            try t.finish()
        }
        if var t = try root.table("warm_pool") {
            var pools: [String: Int] = [:]
            for entry in t.table.entries {
                guard let n = try t.integer(entry.key, in: 0...Int64(WarmPools.maximumSize)) else { continue }
                // A pool of a policy that does not load would only fail in
                // the background: said here, with the key.
                if n > 0 {
                    let policy: Policy
                    do {
                        policy = try PolicyLoader.load(entry.key)
                    } catch {
                        throw t.invalid(entry.key, "a warm pool of policy \"\(entry.key)\", which does not load: \(error.message)")
                    }
                    // Its audited calls (the harness's exec first) would name
                    // a session the log does not have yet.
                    if policy.audit.isEnabled {
                        throw t.invalid(entry.key, "policy \"\(entry.key)\" has [audit]: its sessions' jails are not pooled; set it to 0")
                    }
                }
                pools[entry.key] = Int(n)
            }
            try t.finish()
            c.warmPool = pools
        }
        try ProxyConfig.parse(&root, into: &c.proxy)
        try ToolsConfig.parse(&root, into: &c.tools)
        try root.finish()
        return c
    }

    private static func absolute(_ v: String, _ t: TableReader, _ key: String) throws(PolicyError) -> String {
        guard v.hasPrefix("/") else { throw t.invalid(key, "\"\(v)\" must be an absolute path") }
        return v
    }
}

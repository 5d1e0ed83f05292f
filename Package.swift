// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "levain",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "levain", targets: ["levain"]),
        .executable(name: "levain-ctl", targets: ["levain-ctl"]),
        .executable(name: "levain-harness", targets: ["levain-harness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
    ],
    targets: [
        // The post-clone child path: the only C in the project.
        .target(
            name: "CLevainSpawn",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra"])],
            linkerSettings: [.linkedLibrary("cap")]
        ),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap",
                       providers: [.apt(["libcap-dev"])]),
        // The one monotonic clock: no dependencies, so every target (the
        // harness included) reads time the same way.
        .target(name: "LevainClock"),
        // One JSON model: the value, a strict parser with positions, the
        // canonical writer. No dependencies.
        .target(name: "LevainJSON"),
        .target(
            name: "LevainSystem",
            dependencies: [
                "CLevainSpawn", "LevainClock",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "LevainPolicy",
            dependencies: ["CSeccomp", "LevainSystem"]
        ),
        .target(
            name: "LevainSandbox",
            dependencies: ["CLevainSpawn", "CCap", "LevainClock", "LevainSystem", "LevainPolicy"]
        ),
        // Frame format and messages shared by supervisor and harness: no
        // privileged code, no NIO (the harness stays small).
        .target(name: "LevainProtocol", dependencies: ["LevainJSON"]),
        // The supervisor's side of the protocol on swift-nio.
        .target(
            name: "LevainProtocolNIO",
            dependencies: [
                "LevainProtocol", "LevainClock",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]
        ),
        .target(
            name: "LevainSessionLog",
            dependencies: [
                "LevainClock", "LevainJSON",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "LevainHarness",
            dependencies: ["LevainProtocol", "LevainClock", "CLevainSpawn"]
        ),
        .executableTarget(
            name: "levain-harness",
            dependencies: ["LevainHarness"],
            // PID 1 of every session's jail, which holds no Swift runtime:
            // the standard library is linked in, in every build (debug too).
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]
        ),
        // What leaves a jail: the model gateway (OpenAI- and Anthropic-
        // compatible, keys added on the way out, budgets) and the egress
        // proxy (HTTP forwarding and CONNECT under the policy's rules). No
        // session-log dependency: decisions are reported to the supervisor.
        .target(
            name: "LevainProxy",
            dependencies: [
                "LevainPolicy", "LevainClock", "LevainJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // The agent loop, agent files and the JSON Schema subset tools use:
        // pure logic, driven by the supervisor through two protocols (the
        // model behind the gateway, the tools behind the tool service).
        .target(name: "LevainAgent", dependencies: ["LevainPolicy", "LevainJSON"]),
        // The control API's contract as values: the request and response
        // types with one reader and one writer each, the errors, and the
        // client. No server: `levain-ctl` needs the supervisor only for serve.
        .target(
            name: "LevainAPI",
            dependencies: [
                "LevainJSON", "LevainPolicy", "LevainProtocol", "LevainSessionLog", "LevainSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Levain as an MCP server (`levain mcp` over stdio, `/mcp` on the
        // daemon): its tools are calls of the control API through the client.
        .target(
            name: "LevainMCP",
            dependencies: [
                "LevainAPI", "LevainJSON",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A run as the supervisor holds it: its record, waiters and output
        // spools (what the API, the tools and the run's task share).
        .target(
            name: "LevainRuns",
            dependencies: [
                "LevainAPI", "LevainClock", "LevainJSON", "LevainSessionLog",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The tool service, built-in tools, MCP host servers, the in-jail MCP
        // endpoint, approvals: over ToolHost, what they need of the supervisor.
        .target(
            name: "LevainTools",
            dependencies: [
                "LevainAPI", "LevainAgent", "LevainJSON", "LevainMCP", "LevainPolicy", "LevainProtocol", "LevainProxy", "LevainRuns",
                "LevainSandbox", "LevainSessionLog",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "LevainSupervisor",
            dependencies: [
                "LevainAPI", "LevainJSON", "LevainMCP", "LevainRuns", "LevainTools", "LevainSandbox", "LevainPolicy", "LevainSystem", "LevainClock", "LevainProtocol", "LevainProtocolNIO",
                "LevainSessionLog", "LevainProxy", "LevainAgent", "CLevainSpawn",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The CLI: `levain` (run, doctor, policy) stays small so a one-shot
        // run starts fast; `levain-ctl` is the whole CLI with the supervisor,
        // which `levain` execs for serve, sessions, runs, cancel, log and
        // --connect.
        .target(
            name: "LevainCLI",
            dependencies: [
                "LevainSandbox", "LevainPolicy", "LevainSystem", "LevainClock", "LevainJSON", "LevainSessionLog", "CLevainSpawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "levain",
            dependencies: [
                "LevainCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "levain-ctl",
            dependencies: [
                "LevainCLI", "LevainAPI", "LevainJSON", "LevainMCP", "LevainSupervisor", "LevainSessionLog", "LevainPolicy", "CLevainSpawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "MCP", package: "swift-sdk"),
            ]
        ),
        // Benchmarks (make bench): the supervisor against plain references,
        // and durable session-log appends.
        .executableTarget(name: "levain-bench-supervisor", dependencies: ["LevainAPI", "LevainJSON", "LevainSupervisor", "LevainSessionLog"],
                          path: "benchmarks/Supervisor"),
        .executableTarget(name: "levain-log-bench", dependencies: ["LevainClock", "LevainSessionLog"], path: "benchmarks/LogAppends"),
        .testTarget(name: "LevainPolicyTests", dependencies: ["LevainPolicy"]),
        .testTarget(name: "LevainSystemTests", dependencies: ["LevainClock", "LevainSystem"]),
        .testTarget(
            name: "LevainProtocolTests",
            dependencies: [
                "LevainProtocol", "LevainProtocolNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "LevainSessionLogTests", dependencies: ["LevainJSON", "LevainSessionLog"]),
        .testTarget(name: "LevainJSONTests", dependencies: ["LevainJSON"]),
        .testTarget(name: "LevainMCPTests", dependencies: ["LevainMCP", "LevainAPI", "LevainJSON", .product(name: "MCP", package: "swift-sdk")]),
        .testTarget(name: "LevainAPITests", dependencies: ["LevainAPI", "LevainJSON", "LevainSessionLog", "LevainPolicy", "LevainProtocol"]),
        .testTarget(
            name: "LevainProxyTests",
            dependencies: [
                "LevainProxy", "LevainPolicy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // What the root-only test targets share (running a program with a
        // watchdog): a plain target, as test targets cannot depend on each other.
        .target(name: "LevainTestSupport", path: "Tests/LevainTestSupport"),
        // Need root and a real kernel; every test checks getuid() == 0.
        .testTarget(name: "LevainJailTests", dependencies: ["LevainSandbox", "LevainPolicy", "LevainSystem", "LevainTestSupport"],
                    exclude: ["Payloads"]),
        .testTarget(name: "LevainSupervisorTests", dependencies: ["LevainAPI", "LevainJSON", "LevainRuns", "LevainSupervisor", "LevainTestSupport", "LevainTools", "LevainSessionLog", "LevainProtocol", "LevainAgent"]),
        .testTarget(name: "LevainAgentTests", dependencies: ["LevainAgent", "LevainJSON", "LevainPolicy", "LevainSessionLog"]),
    ]
)

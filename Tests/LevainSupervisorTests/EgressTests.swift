import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The egress proxy end to end: curl and Python requests in a real jail,
/// the supervisor's proxy in the jail's network namespace, a real HTTP
/// server on the host's loopback standing in (through [network.hosts]) for
/// named domains.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct EgressTests {
    @Test("allowed and denied names, loopback and metadata refused, CONNECT rules, no way around the proxy; every decision logged")
    func egress() async throws {
        let upstream = try ScriptedProvider()
        defer { upstream.stop() }
        let token = "tool-token-" + UUID().uuidString
        let sv = try TestSupervisor("egress", config: """

            [network.hosts]
            "allowed.test" = "127.0.0.1"
            "denied.test" = "127.0.0.1"
            "other.test" = "127.0.0.1"

            [secrets.tool]
            env = "LEVAIN_TEST_TOOL_TOKEN"
            """)
        defer { sv.cleanUp() }
        try await sv.start(environment: ["LEVAIN_TEST_TOOL_TOKEN": token])
        let policy = try writePolicy(sv.directory, name: "egress", network: """
            mode = "loopback"
            allow = ["allowed.test", "denied.test", "localhost", "169.254.169.254", "*.invalid"]
            deny = ["denied.test"]
            ports = [80, 443, \(upstream.port)]

            [network.inject."allowed.test"]
            X-Tool-Token = "tool"
            """, extra: "")
        let session = try await sv.openSession(["policy": .string(policy),
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let (code, out, err, run) = try await runInSession(sv, session, ["/bin/sh", "/fixtures/egress_client.sh", String(upstream.port), testVenv + "/bin/python"])
        #expect(code == 0, "\(err)")
        var r: [String: String] = [:]
        for line in out.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            r[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        #expect(r["allowed"] == "200", "\(out)\n\(err)")
        // The injected header reached the upstream; the proxy credentials did not.
        let echo = (try? JSONSerialization.jsonObject(with: Data((r["allowed_echo"] ?? "").utf8))) as? [String: Any]
        let headers = echo?["headers"] as? [String: String] ?? [:]
        #expect(headers["x-tool-token"] == token)
        #expect(headers["proxy-authorization"] == nil)
        #expect(r["denied"] == "403")
        #expect(r["denied_header"] == "network.deny")
        #expect(r["unlisted"] == "403")
        #expect(r["loopback_name"] == "403")
        #expect(r["metadata"] == "403")
        #expect(r["denied_port"] == "403")
        #expect(r["no_dns"] == "502")
        #expect(r["tunnel_sha"] == r["expected_sha"] && r["tunnel_sha"] != nil)
        #expect(r["direct_name"] != "0" && r["direct_name"] != nil)
        #expect(r["direct_address"] != "0" && r["direct_address"] != nil)
        #expect(r["requests_allowed"] == "200:1000000")
        #expect(r["requests_denied"] == "403:network.deny")
        #expect(r["garbage"]?.hasPrefix("HTTP/1.1_400") == true, "\(r["garbage"] ?? "")")

        // Every decision is in the log (enqueued: give the group commit a moment).
        try await Task.sleep(nanoseconds: 300_000_000)
        let events = try await sv.events(session: session).compactMap { $0.objectValue }
        let network = events.filter { ($0["type"]?.stringValue ?? "").hasPrefix("network.") }
        func has(_ type: String, _ rule: String, host: String? = nil) -> Bool {
            network.contains {
                $0["type"]?.stringValue == type && $0["payload"]?.objectValue?["levain.rule"]?.stringValue == rule
                    && (host == nil || $0["payload"]?.objectValue?["server.address"]?.stringValue == host)
            }
        }
        #expect(has("network.denied", "network.deny", host: "denied.test"))
        #expect(has("network.denied", "network.allow", host: "other.test"))
        #expect(has("network.denied", "network.address", host: "localhost"))
        #expect(has("network.denied", "network.address", host: "169.254.169.254"))
        #expect(has("network.denied", "network.ports", host: "allowed.test"))
        #expect(has("network.request", "dns", host: "nothing.invalid"))
        #expect(has("network.request", "protocol"))
        let big = network.first {
            $0["type"]?.stringValue == "network.request" && ($0["payload"]?.objectValue?["levain.bytes_down"]?.intValue ?? 0) >= 5_000_000
        }
        #expect(big != nil, "no tunnel of 5 MB logged")
        // The proxy URL names the run: its requests carry the run id.
        #expect(network.contains { $0["run"]?.stringValue == run })
    }
}

import Foundation
import LevainJSON
import LevainSupervisor
import LevainTestSupport
import Testing

/// The gateway's Responses API and embeddings, end to end: the official
/// openai SDK in a jail, the scripted provider upstream.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct GatewayAPIsTests {
    @Test("Responses API (streaming and not, a function tool) and embeddings through the gateway: keys added, caps and hosted tools checked, usage logged and counted")
    func responsesAndEmbeddings() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-apis", config: provider.config)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "gw", extra: """
            [models]
            allow = ["gpt-4o-mini", "text-embedding-*"]
            max_tokens = 4096
            """)
        let session = try await sv.openSession(["policy": .string(policy), "tenant": "acme",
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let (code, out, err, run) = try await runInSession(sv, session, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "responses"])
        #expect(code == 0, "stderr: \(err)")
        let o = try jsonObject(out)
        #expect(o["text"] as? String == "Hello from scripted provider")
        #expect(o["usage"] as? [Int] == [21, 7])
        #expect(o["stream_words"] as? Int == 12)
        #expect((o["stream_usage"] as? [Int])?.count == 2)
        let events = o["stream_events"] as? [Any]
        #expect(events?.first as? String == "response.created" && events?[1] as? String == "response.completed")
        let tool = o["tool"] as? [Any]
        #expect(tool?.first as? String == "write_file" && (tool?[1] as? [String: Any])?["path"] as? String == "a.txt")
        // Refused before anything left: a hosted tool (400) and a cap above the policy's (403).
        #expect(o["hosted"] as? [AnyHashable] == [400, "request.tools"])
        #expect(o["cap"] as? [AnyHashable] == [403, "models.max_tokens"])
        #expect(o["embeddings"] as? [Int] == [2, 8, 4])

        // The provider got the four forwarded requests (not the refused ones), with the real key.
        let received = try provider.requests().filter { $0["method"] as? String == "POST" && ($0["path"] as? String ?? "").hasPrefix("/v1/") }
        #expect(received.compactMap { $0["path"] as? String } == ["/v1/responses", "/v1/responses", "/v1/responses", "/v1/embeddings"])
        for r in received {
            let headers = r["headers"] as? [String: String] ?? [:]
            #expect(headers["authorization"] == "Bearer \(provider.key)")
        }
        // The non-streamed request was given the policy's cap; the stream was not asked for include_usage.
        let bodies = received.compactMap { $0["body"] as? [String: Any] }
        #expect(bodies.first?["max_output_tokens"] as? Int == 4096)
        #expect(bodies.count > 1 && bodies[1]["stream_options"] == nil && bodies[1]["instructions"] as? String == "be brief")

        // Logged with the API's name and the usage read from each answer (the stream's from response.completed).
        let logged = try await sv.events(run: run)
        let responses = logged.compactMap { $0.objectValue }.filter { $0["type"]?.stringValue == "model.response" }
            .compactMap { $0["payload"]?.objectValue }
        #expect(responses.count == 4)
        #expect(responses.filter { $0["levain.api"]?.stringValue == "responses" }.count == 3)
        #expect(responses.first?["gen_ai.usage.input_tokens"]?.intValue == 21 && responses.first?["gen_ai.usage.output_tokens"]?.intValue == 7)
        let embedding = responses.first { $0["levain.api"]?.stringValue == "embeddings" }
        #expect(embedding?["gen_ai.operation.name"]?.stringValue == "embeddings")
        #expect(embedding?["gen_ai.usage.input_tokens"]?.intValue == 4 && embedding?["gen_ai.usage.output_tokens"]?.intValue == 0)
        #expect(abs((embedding?["levain.cost"]?.doubleValue ?? -1) - 4 * 0.02 / 1e6) < 1e-12)
        let refused = logged.compactMap { $0.objectValue }.filter { $0["type"]?.stringValue == "model.request" }
            .compactMap { $0["payload"]?.objectValue }.filter { $0["levain.decision"]?.stringValue != "allowed" }
        #expect(refused.compactMap { $0["levain.rule"]?.stringValue }.sorted() == ["models.max_tokens", "request.tools"])
    }
}

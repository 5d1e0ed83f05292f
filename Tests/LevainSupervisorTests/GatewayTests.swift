import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The model gateway end to end: the official Python SDKs in a real jail,
/// the supervisor's gateway in the jail's network namespace, the scripted
/// provider on the host's loopback as the upstream.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct GatewayTests {
    static let modelsPolicy = """
        [models]
        allow = ["gpt-4o-mini", "claude-*"]
        max_tokens = 4096
        """

    @Test("the openai and anthropic SDKs in a jail, streaming and not, with tool calls; keys added on the way out; usage logged")
    func officialSDKs() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-sdk", config: provider.config)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "gw", extra: Self.modelsPolicy)
        let session = try await sv.openSession(["policy": .string(policy), "tenant": "acme",
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let (code, out, err, run) = try await runInSession(sv, session, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "sdk"])
        #expect(code == 0, "stderr: \(err)")
        let o = try jsonObject(out)
        #expect(o["openai_text"] as? String == "Hello from scripted provider")
        #expect(o["openai_usage"] as? [Int] == [21, 7])
        #expect((o["openai_stream_chunks"] as? Int ?? 0) > 3)
        #expect(o["openai_stream_words"] as? Int == 12)
        // The gateway asked for the stream's usage on the client's behalf.
        #expect((o["openai_stream_usage"] as? [Int])?.count == 2)
        let tool = o["openai_tool"] as? [Any]
        #expect(tool?[0] as? String == "write_file")
        #expect((tool?[1] as? [String: Any])?["path"] as? String == "/workspace/a.txt")
        #expect(tool?[2] as? String == "tool_calls")
        let streamTool = o["openai_stream_tool"] as? [Any]
        #expect(streamTool?[0] as? String == "exec")
        #expect((streamTool?[1] as? [String: Any])?["argv"] as? [String] == ["ls", "-l"])
        #expect(o["anthropic_text"] as? String == "Hello from scripted provider")
        #expect(o["anthropic_usage"] as? [Int] == [33, 11])
        #expect(o["anthropic_stream_words"] as? Int == 9)
        let atool = o["anthropic_tool"] as? [Any]
        #expect(atool?[0] as? String == "read_file")
        #expect(atool?[2] as? String == "tool_use")
        // /v1/models lists what the policy allows, not gpt-4o.
        #expect(o["models"] as? [String] == ["claude-3-5-haiku-latest", "gpt-4o-mini"])

        // The provider saw the real key, never the placeholder.
        let received = try provider.requests().filter { ($0["path"] as? String ?? "").contains("/v1/") && $0["method"] as? String == "POST" }
        #expect(received.count == 7)
        for r in received {
            let headers = r["headers"] as? [String: String] ?? [:]
            let path = r["path"] as? String ?? ""
            if path.hasSuffix("/chat/completions") {
                #expect(headers["authorization"] == "Bearer \(provider.key)")
            } else {
                #expect(headers["x-api-key"] == provider.key)
                #expect(headers["authorization"] == nil)
            }
            #expect(!headers.values.contains { $0.contains("levain-run-") })
        }

        // Every exchange is in the log with the GenAI attribute names.
        let events = try await sv.events(run: run)
        let requests = events.filter { $0.objectValue?["type"]?.stringValue == "model.request" }
        let responses = events.filter { $0.objectValue?["type"]?.stringValue == "model.response" }
        #expect(requests.count == 7)
        #expect(responses.count == 7)
        let first = responses.first?.objectValue?["payload"]?.objectValue ?? [:]
        #expect(first["gen_ai.provider.name"]?.stringValue == "openai")
        #expect(first["gen_ai.request.model"]?.stringValue == "gpt-4o-mini")
        #expect(first["gen_ai.usage.input_tokens"]?.intValue == 21)
        #expect(first["gen_ai.usage.output_tokens"]?.intValue == 7)
        #expect(abs((first["levain.cost"]?.doubleValue ?? 0) - (21 * 0.15 + 7 * 0.60) / 1e6) < 1e-12)
        #expect(first["levain.ttft_ms"]?.doubleValue != nil)
        let anthropic = responses.compactMap { $0.objectValue?["payload"]?.objectValue }.filter { $0["gen_ai.provider.name"]?.stringValue == "anthropic" }
        #expect(anthropic.count == 3)
        #expect(anthropic.contains { $0["gen_ai.usage.input_tokens"]?.intValue == 33 && $0["gen_ai.usage.output_tokens"]?.intValue == 11 })

        // `levain usage` sums them, from the log file and through the daemon.
        let byFile = try runProcess([levainBinary, "usage", "--state", sv.state, "--session", session, "--json"])
        #expect(byFile.status == 0, "\(byFile.stderr)")
        let total = (try jsonObject(byFile.stdout))["total"] as? [String: Any]
        #expect(total?["requests"] as? Int == 7)
        let sumIn = responses.compactMap { $0.objectValue?["payload"]?.objectValue?["gen_ai.usage.input_tokens"]?.intValue }.reduce(0, +)
        #expect(total?["input_tokens"] as? Int == Int(sumIn))
        let byDaemon = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "usage", "--tenant", "acme", "--by", "session"])
        #expect(byDaemon.status == 0, "\(byDaemon.stderr)")
        #expect(byDaemon.stdout.contains(session))

        // Secrets stay out: nothing the jail can read holds the real key; the
        // same search finds the placeholder key (the search works).
        let search = """
            import os, sys
            # The key arrives reversed: the search itself must not put it
            # anywhere (its own command line included).
            key, placeholder = sys.argv[1][::-1].encode(), b"levain-run-"
            found, seen_placeholder, scanned = [], False, 0
            def check(path):
                global seen_placeholder, scanned
                try:
                    with open(path, "rb") as f:
                        data = f.read(64 << 20)
                except OSError:
                    return
                scanned += 1
                if key in data: found.append(path)
                if placeholder in data: seen_placeholder = True
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    for leaf in ("environ", "cmdline", "maps", "status"):
                        check(f"/proc/{pid}/{leaf}")
            skip = ("/proc", "/sys", "/dev", "/usr", sys.argv[2])
            for root, dirs, files in os.walk("/"):
                dirs[:] = [d for d in dirs if not os.path.join(root, d).startswith(skip)]
                for name in files:
                    check(os.path.join(root, name))
            print(len(found), seen_placeholder, scanned, found[:5])
            """
        let (scode, sout, serr, _) = try await runInSession(sv, session, [testVenv + "/bin/python", "-c", search, String(provider.key.reversed()), testVenv])
        #expect(scode == 0, "\(serr)")
        let fields = sout.split(separator: " ")
        #expect(fields.first == "0", "the key was found: \(sout)")
        #expect(fields.count > 1 && fields[1] == "True", "the control did not find the placeholder: \(sout)")
        #expect(Int(fields.count > 2 ? fields[2] : "0") ?? 0 > 20, "too few files scanned: \(sout)")
    }

    @Test("budgets hold: 429 naming the budget once spent; the recorded spend passes it by at most one request")
    func budgets() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-budget", config: provider.config + """

            [tenants.small]
            tokens = 60
            """)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "budget", extra: Self.modelsPolicy + "\nrun_tokens = 100\n")
        let binds: JSONValue = ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]
        let session = try await sv.openSession(["policy": .string(policy), "binds": binds])
        let argv = [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "5"]
        let (code, out, err, run) = try await runInSession(sv, session, argv)
        #expect(code == 0, "\(err)")
        let results = (try jsonObject(out))["results"] as? [[String: Any]] ?? []
        // 40 tokens each: 0, 40 and 80 are under 100; then the budget is spent.
        #expect(results.map { $0["status"] as? Int } == [200, 200, 200, 429, 429])
        #expect(results[3]["budget"] as? String == "run_tokens")
        #expect((results[3]["message"] as? String ?? "").contains("run tokens budget is spent"))
        let usage = try sv.openLog().modelUsage(run: run).total
        #expect(usage.tokens == 120)
        #expect(usage.tokens <= 100 + 40)
        let refused = try await sv.events(run: run).filter {
            $0.objectValue?["type"]?.stringValue == "model.request"
                && $0.objectValue?["payload"]?.objectValue?["levain.decision"]?.stringValue == "budget"
        }
        #expect(refused.count == 2)
        // A new run has a budget of its own (the control: the run's, not the session's).
        let (_, out2, _, _) = try await runInSession(sv, session, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "1"])
        #expect(((try jsonObject(out2))["results"] as? [[String: Any]])?.first?["status"] as? Int == 200)

        // A tenant's budget spans its sessions: 60 tokens = two requests.
        let plain = try writePolicy(sv.directory, name: "plain", extra: Self.modelsPolicy)
        let t1 = try await sv.openSession(["policy": .string(plain), "tenant": "small", "binds": binds])
        let (_, o1, _, _) = try await runInSession(sv, t1, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "1"])
        #expect(((try jsonObject(o1))["results"] as? [[String: Any]])?.map { $0["status"] as? Int } == [200])
        let t2 = try await sv.openSession(["policy": .string(plain), "tenant": "small", "binds": binds])
        let (_, o2, _, _) = try await runInSession(sv, t2, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "3"])
        let r2 = (try jsonObject(o2))["results"] as? [[String: Any]] ?? []
        #expect(r2.map { $0["status"] as? Int } == [200, 429, 429])
        #expect(r2.last?["budget"] as? String == "tenant_tokens")
        #expect(try sv.openLog().modelUsage(tenant: "small").total.tokens == 80)

        // A spend budget: 30 in + 10 out of gpt-4o-mini cost 0.0000105 each;
        // 0.00002 allows two (the second passes it by less than one request).
        let spend = try writePolicy(sv.directory, name: "spend", extra: Self.modelsPolicy + "\nrun_spend = 0.00002\n")
        let s3 = try await sv.openSession(["policy": .string(spend), "binds": binds])
        let (_, o3, _, r3) = try await runInSession(sv, s3, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "3"])
        let res3 = (try jsonObject(o3))["results"] as? [[String: Any]] ?? []
        #expect(res3.map { $0["status"] as? Int } == [200, 200, 429])
        #expect(res3.last?["budget"] as? String == "run_spend")
        let spent = try sv.openLog().modelUsage(run: r3).total.cost
        #expect(spent > 0.00002 && spent <= 0.00002 + 0.0000105 + 1e-12)

        // The request rate of a session.
        let rate = try writePolicy(sv.directory, name: "rate", extra: Self.modelsPolicy + "\nrequests_per_minute = 2\n")
        let s4 = try await sv.openSession(["policy": .string(rate), "binds": binds])
        let (_, o4, _, _) = try await runInSession(sv, s4, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "budget", "3"])
        let res4 = (try jsonObject(o4))["results"] as? [[String: Any]] ?? []
        #expect(res4.map { $0["status"] as? Int } == [200, 200, 429])
        #expect(res4.last?["budget"] as? String == "requests_per_minute")
    }

    @Test("bad input gets a clear answer and a log entry, and the run carries on")
    func badInput() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-bad", config: provider.config)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "bad", extra: Self.modelsPolicy)
        let session = try await sv.openSession(["policy": .string(policy),
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let (code, out, err, run) = try await runInSession(sv, session, [testVenv + "/bin/python", "/fixtures/gateway_client.py", "bad"])
        #expect(code == 0, "\(err)")
        let o = try jsonObject(out)
        func case_(_ k: String) -> [String: Any] { o[k] as? [String: Any] ?? [:] }
        #expect(case_("malformed")["status"] as? Int == 400)
        #expect(case_("malformed")["error"] as? String == "request.json")
        #expect(case_("too_large")["status"] as? Int == 413)
        #expect(case_("unknown_model")["status"] as? Int == 404)
        #expect((case_("unknown_model")["message"] as? String ?? "").contains("gpt-9-ultra"))
        #expect(case_("denied_model")["status"] as? Int == 403)
        #expect(case_("denied_model")["denied"] as? String == "models.allow")
        #expect(case_("max_tokens")["status"] as? Int == 403)
        #expect(case_("max_tokens")["denied"] as? String == "models.max_tokens")
        #expect(case_("wrong_api")["status"] as? Int == 400)
        #expect(case_("bad_key")["status"] as? Int == 401)
        #expect(case_("upstream_error")["status"] as? Int == 500)
        #expect(case_("after")["status"] as? Int == 200)
        // Chunk by chunk: the events before the upstream broke off arrived.
        #expect((case_("broken_stream")["chunks"] as? Int ?? 0) >= 1, "\(case_("broken_stream"))")
        #expect(case_("broken_stream")["error"] as? String != nil)
        // The last request upstream: the jail's account selector dropped, its
        // other headers kept (the control).
        let last = try #require(try provider.requests().last { ($0["path"] as? String ?? "").hasSuffix("/chat/completions") })
        let headers = last["headers"] as? [String: String] ?? [:]
        #expect(headers["openai-organization"] == nil)
        #expect(headers["x-client-note"] == "kept")
        let payloads = try await sv.events(session: session).compactMap { e -> JSONObject? in
            guard e.objectValue?["type"]?.stringValue == "model.request" else { return nil }
            return e.objectValue?["payload"]?.objectValue
        }
        let rules = Set(payloads.compactMap { $0["levain.rule"]?.stringValue })
        for rule in ["request.json", "request.size", "models.catalog", "models.allow", "models.max_tokens", "request.api", "auth"] {
            #expect(rules.contains(rule), "no model.request with rule \(rule): \(rules)")
        }
        let responses = try await sv.events(run: run).filter { $0.objectValue?["type"]?.stringValue == "model.response" }
        #expect(responses.contains { $0.objectValue?["payload"]?.objectValue?["http.response.status_code"]?.intValue == 500 })
        // The broken stream is logged as an error, charged at its worst case.
        #expect(responses.contains {
            let p = $0.objectValue?["payload"]?.objectValue
            return p?["levain.decision"]?.stringValue == "error" && (p?["levain.message"]?.stringValue ?? "").contains("broke off")
        })
    }
}

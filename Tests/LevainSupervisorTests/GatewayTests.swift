import Foundation
import LevainJSON
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
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

    // MARK: what reaches the provider

    /// A request body as an attacker writes it: text, so duplicate keys and
    /// number forms (1e6, 3.5) reach the gateway as written. The message
    /// names the case, so the provider's record of it can be found.
    static func form(_ name: String, _ fields: String, api: String = "openai") -> [String: String] {
        let model = api == "openai" ? "gpt-4o-mini" : "claude-3-5-haiku-latest"
        let base = #"{"model":"\#(model)","messages":[{"role":"user","content":"case:\#(name) hi"}]"#
        return ["name": name, "api": api, "body": base + (fields.isEmpty ? "" : "," + fields) + "}"]
    }

    /// Runs the forms in a session; returns the gateway's answers by case and
    /// the bodies the provider received by case.
    static func send(_ forms: [[String: String]], _ sv: TestSupervisor, _ session: String, _ provider: ScriptedProvider)
        async throws -> (answers: [String: [String: Any]], upstream: [String: [String: Any]], run: String) {
        let casesJSON = String(decoding: try JSONSerialization.data(withJSONObject: forms), as: UTF8.self)
        let (code, out, err, run) = try await runInSession(sv, session, [testVenv + "/bin/python", "/fixtures/gateway_forms.py", casesJSON])
        #expect(code == 0, "stderr: \(err)")
        let answers = (try jsonObject(out)).compactMapValues { $0 as? [String: Any] }
        var upstream: [String: [String: Any]] = [:]
        for r in try provider.requests() where r["method"] as? String == "POST" {
            guard let body = r["body"] as? [String: Any], let messages = body["messages"] as? [[String: Any]],
                  let text = messages.first?["content"] as? String, text.hasPrefix("case:") else { continue }
            let name = String(text.dropFirst(5).prefix { $0 != " " })
            #expect(upstream[name] == nil, "case \(name) reached the provider twice")
            upstream[name] = body
        }
        return (answers, upstream, run)
    }

    @Test("what reaches the provider is what the policy checked: every form of max_tokens, n, stream and duplicate keys is capped or refused naming the field; a normal request is forwarded intact")
    func requestForms() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-forms", config: provider.config)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "forms", extra: Self.modelsPolicy)
        let session = try await sv.openSession(["policy": .string(policy),
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let tools = #"[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}}}]"#
        let forms = [
            // Controls: forwarded with their other fields intact.
            Self.form("plain", #""max_tokens":100,"temperature":0.25,"top_p":0.5,"seed":7,"tools":\#(tools),"tool_choice":"auto","user":"u1""#),
            Self.form("stream", #""stream":true,"stream_options":{"include_usage":false},"max_tokens":50"#),
            Self.form("absent", ""),
            Self.form("n1", #""n":1"#),
            // Capped: null means "not given", and the gateway gives the cap.
            Self.form("null", #""max_tokens":null"#),
            Self.form("null_mct", #""max_completion_tokens":null"#),
            // Refused, naming the field.
            Self.form("string", #""max_tokens":"100000""#),
            Self.form("true", #""max_tokens":true"#),
            Self.form("exp", #""max_tokens":1e6"#),
            Self.form("exp_small", #""max_tokens":1e3"#),
            Self.form("fraction", #""max_tokens":3.5"#),
            Self.form("zero", #""max_completion_tokens":0"#),
            Self.form("above_cap", #""max_tokens":4097"#),
            Self.form("beside", #""max_completion_tokens":100,"max_tokens":100000"#),
            Self.form("beside_small", #""max_tokens":100,"max_completion_tokens":100000"#),
            Self.form("dup", #""max_tokens":100,"max_tokens":100000"#),
            Self.form("dup_model", #""model":"gpt-4o""#),
            Self.form("dup_nested", #""stream":true,"stream_options":{"include_usage":true,"include_usage":false}"#),
            Self.form("n50", #""n":50"#),
            Self.form("n_string", #""n":"2""#),
            Self.form("best_of", #""best_of":5"#),
            Self.form("max_output_tokens", #""max_output_tokens":100000"#),
            Self.form("unknown", #""models":["gpt-4o"]"#),
            Self.form("stream_string", #""stream":"true""#),
            Self.form("priority", #""service_tier":"priority""#),
            Self.form("web_search", #""web_search_options":{}"#),
            // Anthropic.
            Self.form("a_plain", #""max_tokens":100,"system":"be brief","temperature":0.5,"tools":[{"name":"read_file","input_schema":{"type":"object"}}],"metadata":{"user_id":"u"}"#, api: "anthropic"),
            Self.form("a_absent", "", api: "anthropic"),
            Self.form("a_null", #""max_tokens":null"#, api: "anthropic"),
            Self.form("a_string", #""max_tokens":"100000""#, api: "anthropic"),
            Self.form("a_float", #""max_tokens":3.5"#, api: "anthropic"),
            Self.form("a_exp", #""max_tokens":1e6"#, api: "anthropic"),
            Self.form("a_huge", #""max_tokens":1000000"#, api: "anthropic"),
            Self.form("a_dup", #""max_tokens":100,"max_tokens":100000"#, api: "anthropic"),
            Self.form("a_server_tool", #""max_tokens":100,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":50}]"#, api: "anthropic"),
            Self.form("a_n", #""max_tokens":100,"n":5"#, api: "anthropic"),
        ]
        let (answers, upstream, _) = try await Self.send(forms, sv, session, provider)
        let cap = 4096

        // Whatever reached the provider carries a cap it can only read one
        // way: one integer token field within the cap, at most one choice,
        // nothing the gateway did not check.
        for (name, body) in upstream {
            let fields = ["max_tokens", "max_completion_tokens"].filter { body[$0] != nil }
            #expect(fields.count == 1, "\(name): token fields upstream: \(fields)")
            for f in fields {
                let v = body[f]
                #expect(v is Int && !(v is Bool) && (v as? Int ?? .max) <= cap && (v as? Int ?? 0) >= 1, "\(name): \(f) = \(String(describing: v)) upstream")
            }
            #expect((body["n"] as? Int ?? 1) == 1 && (body["n"] == nil || body["n"] is Int), "\(name): n upstream")
            for key in ["best_of", "max_output_tokens", "models", "web_search_options", "service_tier"] {
                #expect(body[key] == nil, "\(name): \(key) reached the provider")
            }
            #expect(body["stream"] == nil || body["stream"] is Bool, "\(name): stream upstream is \(String(describing: body["stream"]))")
        }
        func answer(_ name: String) -> [String: Any] { answers[name] ?? [:] }
        func expectForwarded(_ name: String, _ tokens: (String, Int), sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
            #expect(answer(name)["status"] as? Int == 200, "\(name): \(answer(name))", sourceLocation: sourceLocation)
            let body = upstream[name] ?? [:]
            #expect(body[tokens.0] as? Int == tokens.1, "\(name): \(tokens.0) upstream: \(String(describing: body[tokens.0]))", sourceLocation: sourceLocation)
            return body
        }
        func expectRefused(_ name: String, _ status: Int, _ rule: String, param: String?, sourceLocation: SourceLocation = #_sourceLocation) {
            let a = answer(name)
            #expect(a["status"] as? Int == status, "\(name): \(a)", sourceLocation: sourceLocation)
            #expect((status == 403 ? a["denied"] : a["error"]) as? String == rule, "\(name): \(a)", sourceLocation: sourceLocation)
            if let param {
                #expect(a["param"] as? String == param || (a["message"] as? String ?? "").contains(param), "\(name): \(a)", sourceLocation: sourceLocation)
            }
            #expect(upstream[name] == nil, "\(name) reached the provider: \(upstream[name] ?? [:])", sourceLocation: sourceLocation)
        }

        let plain = expectForwarded("plain", ("max_tokens", 100))
        #expect(plain["temperature"] as? Double == 0.25 && plain["top_p"] as? Double == 0.5 && plain["seed"] as? Int == 7)
        #expect(plain["tool_choice"] as? String == "auto" && plain["user"] as? String == "u1")
        let sentTools = try JSONSerialization.jsonObject(with: Data(tools.utf8)) as? NSArray
        #expect((plain["tools"] as? NSArray) == sentTools)
        #expect((plain["messages"] as? NSArray) == [["role": "user", "content": "case:plain hi"]] as NSArray)
        #expect(plain["stream"] == nil && plain["n"] == nil)
        let stream = expectForwarded("stream", ("max_tokens", 50))
        #expect(stream["stream"] as? Bool == true)
        #expect((stream["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
        #expect(answer("stream")["stream_usage"] as? Bool == true)
        _ = expectForwarded("absent", ("max_tokens", cap))
        #expect(expectForwarded("n1", ("max_tokens", cap))["n"] as? Int == 1)
        _ = expectForwarded("null", ("max_tokens", cap))
        _ = expectForwarded("null_mct", ("max_completion_tokens", cap))

        for name in ["string", "true", "exp", "exp_small", "fraction"] { expectRefused(name, 400, "request.max_tokens", param: "max_tokens") }
        expectRefused("zero", 400, "request.max_tokens", param: "max_completion_tokens")
        expectRefused("above_cap", 403, "models.max_tokens", param: "max_tokens")
        expectRefused("beside", 400, "request.max_tokens", param: "max_completion_tokens")
        expectRefused("beside_small", 400, "request.max_tokens", param: "max_completion_tokens")
        expectRefused("dup", 400, "request.duplicate_key", param: "max_tokens")
        expectRefused("dup_model", 400, "request.duplicate_key", param: "model")
        expectRefused("dup_nested", 400, "request.duplicate_key", param: "stream_options.include_usage")
        expectRefused("n50", 403, "models.max_choices", param: "n")
        expectRefused("n_string", 400, "request.n", param: "n")
        expectRefused("best_of", 400, "request.unsupported_field", param: "best_of")
        expectRefused("max_output_tokens", 400, "request.unsupported_field", param: "max_output_tokens")
        expectRefused("unknown", 400, "request.unknown_field", param: "models")
        expectRefused("stream_string", 400, "request.stream", param: "stream")
        expectRefused("priority", 400, "request.service_tier", param: "service_tier")
        expectRefused("web_search", 400, "request.unsupported_field", param: "web_search_options")

        let aplain = expectForwarded("a_plain", ("max_tokens", 100))
        #expect(aplain["system"] as? String == "be brief" && aplain["temperature"] as? Double == 0.5)
        #expect((aplain["tools"] as? NSArray) == [["name": "read_file", "input_schema": ["type": "object"]]] as NSArray)
        #expect((aplain["metadata"] as? [String: String]) == ["user_id": "u"])
        _ = expectForwarded("a_absent", ("max_tokens", cap))
        _ = expectForwarded("a_null", ("max_tokens", cap))
        for name in ["a_string", "a_float", "a_exp"] { expectRefused(name, 400, "request.max_tokens", param: "max_tokens") }
        expectRefused("a_huge", 403, "models.max_tokens", param: "max_tokens")
        expectRefused("a_dup", 400, "request.duplicate_key", param: "max_tokens")
        expectRefused("a_server_tool", 400, "request.tools", param: "tools[0].type")
        expectRefused("a_n", 400, "request.unknown_field", param: "n")

        // Each refusal is logged with its rule.
        let rules = try await sv.events(session: session).compactMap { e -> String? in
            guard e.objectValue?["type"]?.stringValue == "model.request" else { return nil }
            return e.objectValue?["payload"]?.objectValue?["levain.rule"]?.stringValue
        }
        for rule in ["request.max_tokens", "request.duplicate_key", "models.max_choices", "request.unknown_field", "request.unsupported_field"] {
            #expect(rules.contains(rule), "no model.request with rule \(rule): \(Set(rules))")
        }
    }

    @Test("n > 1 within the policy's max_choices: forwarded, its worst case is n × max_tokens; above it 403 models.max_choices")
    func choices() async throws {
        let provider = try ScriptedProvider()
        defer { provider.stop() }
        let sv = try TestSupervisor("gateway-choices", config: provider.config)
        defer { sv.cleanUp() }
        try await sv.start(environment: provider.environment)
        let policy = try writePolicy(sv.directory, name: "choices", extra: Self.modelsPolicy + "\nmax_choices = 4\n")
        let session = try await sv.openSession(["policy": .string(policy),
                                                "binds": ["ro": [.string(testVenv), .string(fixturesDirectory + ":/fixtures")]]])
        let forms = [
            Self.form("n2", #""n":2,"max_tokens":100"#),
            Self.form("n5", #""n":5,"max_tokens":100"#),
            // Cut off before its usage: charged at its worst case.
            ["name": "n2_cut", "api": "openai",
             "body": #"{"model":"gpt-4o-mini","n":2,"max_tokens":100,"stream":true,"messages":[{"role":"user","content":"case:n2_cut [[words:30]] [[delay:20]] [[abort:3]]"}]}"#],
            ["name": "n3_cut_capped", "api": "openai",
             "body": #"{"model":"gpt-4o-mini","n":3,"stream":true,"messages":[{"role":"user","content":"case:n3_cut_capped [[words:30]] [[delay:20]] [[abort:3]]"}]}"#],
        ]
        let (answers, upstream, run) = try await Self.send(forms, sv, session, provider)
        #expect(answers["n2"]?["status"] as? Int == 200)
        #expect(upstream["n2"]?["n"] as? Int == 2 && upstream["n2"]?["max_tokens"] as? Int == 100)
        #expect(answers["n5"]?["status"] as? Int == 403 && answers["n5"]?["denied"] as? String == "models.max_choices")
        #expect(upstream["n5"] == nil)
        #expect(answers["n2_cut"]?["broken"] as? Bool == true, "\(answers["n2_cut"] ?? [:])")
        #expect(upstream["n3_cut_capped"]?["n"] as? Int == 3 && upstream["n3_cut_capped"]?["max_tokens"] as? Int == 4096)
        let charged = try await sv.events(run: run).compactMap { e -> Int64? in
            guard e.objectValue?["type"]?.stringValue == "model.response",
                  let p = e.objectValue?["payload"]?.objectValue, (p["levain.message"]?.stringValue ?? "").contains("worst case")
            else { return nil }
            return p["gen_ai.usage.output_tokens"]?.intValue
        }
        #expect(charged.sorted() == [200, 3 * 4096], "worst-case output charges: \(charged)")
    }
}

import LevainAPI
import LevainJSON
import LevainPolicy
import LevainProtocol
import LevainSessionLog
import Testing

/// The API's contract as values: every request type reads what its writer
/// wrote, the stored forms read back exactly, and bad input is refused with
/// the field named. No server, no root.
@Suite struct RunSpecTests {
    static func decode(_ text: String) throws -> RunSpec { try RunSpec(request: JSONValue.parseObject(text)) }

    static func field(_ text: String) -> String? {
        do { _ = try decode(text); return nil } catch let e as APIError { return e.field } catch { return "not an APIError: \(error)" }
    }

    @Test func aFullRequestRoundTrips() throws {
        var spec = RunSpec(argv: ["/bin/sh", "-c", "echo hi"])
        spec.env = ["A": "1", "B_2": "two words"]
        spec.cwd = "/workspace/src"
        spec.stdin = Array("hello\n".utf8)
        spec.timeout = 2.5
        spec.cpuTime = 10
        spec.fileSize = 1 << 20
        spec.idempotencyKey = "key-1"
        let back = try RunSpec(request: spec.request)
        #expect(back == spec)
        // Binary stdin goes as base64, and comes back byte for byte.
        spec.stdin = [0, 255, 128, 10, 0xC3]
        #expect(spec.request["stdin_base64"] != nil && spec.request["stdin"] == nil)
        #expect(try RunSpec(request: spec.request) == spec)
        // A streamed stdin and a retried run.
        var streamed = RunSpec(argv: ["cat"])
        streamed.stdinStream = true
        #expect(try RunSpec(request: streamed.request) == streamed)
        var retried = RunSpec(argv: ["true"])
        retried.retry = .retry
        #expect(try RunSpec(request: retried.request) == retried)
        // RunRequest carries wait beside the spec.
        let request = RunRequest(spec: retried, wait: true)
        #expect(try RunRequest(json: request.json) == request)
        #expect(try RunRequest(json: retried.request).wait == false)
    }

    @Test("inline_output: 0 to 1 MiB bytes, only with wait: true; wait must be a boolean; both round-trip")
    func inlineOutput() throws {
        func request(_ text: String) throws -> RunRequest { try RunRequest(json: JSONValue.parseObject(text)) }
        func field(_ text: String) -> String? {
            do { _ = try request(text); return nil } catch let e as APIError { return e.field } catch { return "not an APIError: \(error)" }
        }
        #expect(try request(#"{"argv":["true"],"wait":true,"inline_output":65536}"#).inlineOutput == 65536)
        #expect(try request(#"{"argv":["true"],"wait":true,"inline_output":0}"#).inlineOutput == 0)
        #expect(try request(#"{"argv":["true"],"wait":true}"#).inlineOutput == nil)
        #expect(field(#"{"argv":["true"],"inline_output":10}"#) == "inline_output")
        #expect(field(#"{"argv":["true"],"wait":true,"inline_output":1048577}"#) == "inline_output")
        #expect(field(#"{"argv":["true"],"wait":true,"inline_output":-1}"#) == "inline_output")
        #expect(field(#"{"argv":["true"],"wait":true,"inline_output":"64K"}"#) == "inline_output")
        #expect(field(#"{"argv":["true"],"wait":"yes"}"#) == "wait")
        let r = RunRequest(spec: RunSpec(argv: ["echo", "hi"]), wait: true, inlineOutput: 4096)
        #expect(try RunRequest(json: r.json) == r)
    }

    @Test("pty: true is 24x80, an object names rows and cols (1 to 10,000); 0, a string or an unknown key is 400 naming it; it is stored and read back")
    func terminals() throws {
        #expect(try Self.decode(#"{"argv":["sh"],"pty":true}"#).pty == TerminalSize(rows: 24, cols: 80))
        #expect(try Self.decode(#"{"argv":["sh"],"pty":{"rows":50,"cols":132}}"#).pty == TerminalSize(rows: 50, cols: 132))
        #expect(try Self.decode(#"{"argv":["sh"],"pty":false}"#).pty == nil)
        #expect(try Self.decode(#"{"argv":["sh"]}"#).pty == nil)
        #expect(Self.field(#"{"argv":["sh"],"pty":{"rows":0,"cols":80}}"#) == "pty.rows")
        #expect(Self.field(#"{"argv":["sh"],"pty":{"rows":24,"cols":0}}"#) == "pty.cols")
        #expect(Self.field(#"{"argv":["sh"],"pty":{"rows":24}}"#) == "pty.cols")
        #expect(Self.field(#"{"argv":["sh"],"pty":{"rows":24,"cols":10001}}"#) == "pty.cols")
        #expect(Self.field(#"{"argv":["sh"],"pty":{"rows":24,"cols":80,"x":1}}"#) == "pty.x")
        #expect(Self.field(#"{"argv":["sh"],"pty":"24x80"}"#) == "pty")
        var spec = RunSpec(argv: ["bash"])
        spec.pty = TerminalSize(rows: 40, cols: 120)
        #expect(try RunSpec(request: spec.request) == spec)
        #expect(try RunSpec(stored: spec.stored) == spec)
        #expect(throws: APIError.self) { try RunSpec(stored: ["argv": ["sh"], "pty": ["rows": 0, "cols": 80]]) }
        // The resize body.
        #expect(try RunSpec.size(["rows": 30, "cols": 100]) == TerminalSize(rows: 30, cols: 100))
        #expect(throws: APIError.self) { try RunSpec.size(["rows": 30]) }
    }

    @Test func aCommandIsAShellLine() throws {
        #expect(try Self.decode(#"{"command": "echo hi"}"#).argv == ["/bin/sh", "-c", "echo hi"])
        #expect(try Self.decode(#"{"argv": ["true"], "timeout": "1m", "cpu_time": "1.5s", "file_size": "1K"}"#).timeout == 60)
        let s = try Self.decode(#"{"argv": ["true"], "cpu_time": 1.5, "file_size": "1K"}"#)
        #expect(s.cpuTime == 2 && s.fileSize == 1024)
    }

    @Test func badInputNamesTheField() {
        let cases: [(String, String)] = [
            (#"{}"#, "argv"),
            (#"{"argv": []}"#, "argv"),
            (#"{"argv": ["a", 1]}"#, "argv"),
            (#"{"argv": ["a"], "command": "b"}"#, "command"),
            (#"{"command": ""}"#, "command"),
            (#"{"command": 3}"#, "command"),
            (#"{"argv": ["a\u0000b"]}"#, "argv"),
            (#"{"argv": ["a"], "stdin": "x", "stdin_base64": "eA=="}"#, "stdin_base64"),
            (#"{"argv": ["a"], "stdin_base64": "*"}"#, "stdin_base64"),
            (#"{"argv": ["a"], "stdin": "x", "stdin_stream": true}"#, "stdin_stream"),
            (#"{"argv": ["a"], "stdin_stream": "yes"}"#, "stdin_stream"),
            (#"{"argv": ["a"], "env": []}"#, "env"),
            (#"{"argv": ["a"], "env": {"1A": "x"}}"#, "env.1A"),
            (#"{"argv": ["a"], "env": {"A": 1}}"#, "env.A"),
            (#"{"argv": ["a"], "cwd": "rel"}"#, "cwd"),
            (#"{"argv": ["a"], "timeout": 0}"#, "timeout"),
            (#"{"argv": ["a"], "timeout": "soon"}"#, "timeout"),
            (#"{"argv": ["a"], "cpu_time": 0.5}"#, "cpu_time"),
            (#"{"argv": ["a"], "file_size": -1}"#, "file_size"),
            // Above what the stored form's JSON integer holds (trapped before).
            (#"{"argv": ["a"], "file_size": "16000000T"}"#, "file_size"),
            (#"{"argv": ["a"], "idempotency_key": ""}"#, "idempotency_key"),
            (#"{"argv": ["a"], "retry": "always"}"#, "retry"),
            (#"{"argv": ["a"], "retry": "retry", "stdin": "x"}"#, "retry"),
            (#"{"argv": ["a"], "wait": 1}"#, "wait"),
            (#"{"argv": ["a"], "colour": "red"}"#, "colour"),
        ]
        for (body, field) in cases {
            #expect(Self.field(body) == field, "\(body)")
        }
        // Controls: the same fields, good.
        #expect(Self.field(#"{"argv": ["a"], "env": {"A": "x"}, "cwd": "/w", "timeout": 1, "wait": true, "retry": "fail"}"#) == nil)
        #expect(Self.field(#"{"argv": ["a"], "file_size": "8000000T"}"#) == nil)
    }

    @Test func theStoredFormReadsBackExactly() throws {
        var spec = RunSpec(argv: ["python3", "-c", "print(1)"])
        spec.env = ["K": "v"]
        spec.cwd = "/workspace"
        spec.timeout = 30
        spec.cpuTime = 5
        spec.fileSize = 0
        spec.idempotencyKey = "k"
        spec.retry = .retry
        let record = RunRecord(id: "r-1", sessionID: "s-1", request: spec.stored, idempotencyKey: spec.idempotencyKey, retryPolicy: spec.retry)
        #expect(try RunSpec(record: record) == spec)
        // Through the log's own JSON text, as recovery reads it.
        let text = JSONValue.object(spec.stored).encoded()
        #expect(try RunSpec(stored: JSONValue.parseObject(text), idempotencyKey: "k", retry: .retry) == spec)
        // Stdin's content is not kept: only its size.
        var withStdin = RunSpec(argv: ["cat"])
        withStdin.stdin = Array("abc".utf8)
        #expect(withStdin.stored["stdin_bytes"]?.intValue == 3)
        #expect(withStdin.stored["stdin"] == nil)
        #expect(try RunSpec(stored: withStdin.stored).stdin == nil)
    }

    @Test("a one-shot levain run's stored request (env_keys, --timeout as given) reads back")
    func aOneShotRequestReadsBack() throws {
        // What Sources/LevainCLI/OneShotLog.swift stores for `levain run --timeout 30s --cwd /w -e A=1 -- sh -c x`.
        let stored: JSONObject = ["argv": ["sh", "-c", "x"], "env_keys": ["A"], "cwd": "/w", "timeout": "30s"]
        let spec = try RunSpec(stored: stored)
        #expect(spec.argv == ["sh", "-c", "x"] && spec.cwd == "/w" && spec.timeout == 30 && spec.env.isEmpty)
        #expect(try RunSpec(stored: ["argv": ["a"], "timeout": "off"]).timeout == nil)
        do { _ = try RunSpec(stored: ["argv": ["a"], "env_keys": [1]]); Issue.record("accepted") } catch { #expect(error.field == "request.env_keys") }
        do { _ = try RunSpec(stored: ["argv": ["a"], "timeout": "soon"]); Issue.record("accepted") } catch { #expect(error.field == "request.timeout") }
    }

    @Test func aDamagedStoredRequestIsRefusedNotGuessed() {
        func field(_ o: JSONObject) -> String? {
            do { _ = try RunSpec(stored: o); return nil } catch { return error.field }
        }
        #expect(field([:]) == "request.argv")
        #expect(field(["argv": []]) == "request.argv")
        #expect(field(["argv": ["a", 1]]) == "request.argv")
        #expect(field(["argv": ["a"], "timeout": "never"]) == "request.timeout")
        #expect(field(["argv": ["a"], "env": ["A": 1]]) == "request.env")
        #expect(field(["argv": ["a"], "shell": true]) == "request.shell")
        // Control: an agent run's record carries its agent beside the spec.
        #expect(field(["argv": ["levain-agent", "a"], "agent": ["name": "a"]]) == nil)
    }
}

@Suite struct SessionSpecTests {
    @Test func requestAndStoredFormsRoundTrip() throws {
        var spec = SessionSpec(policy: "strict")
        spec.tenant = "acme"
        spec.labels = ["team": "x"]
        spec.memory = 256 << 20
        spec.cpus = 0.5
        spec.pids = 64
        spec.timeout = 30
        spec.binds = [Policy.Bind(host: "/srv/data", jail: "/data", writable: false),
                      Policy.Bind(host: "/srv/out", jail: "/out", writable: true)]
        #expect(try SessionSpec(request: spec.request, defaultPolicy: "default") == spec)
        let record = SessionRecord(id: "s-1", tenant: spec.tenant, policy: spec.policy, labels: spec.labels, limits: spec.storedLimits)
        #expect(try SessionSpec(record: record) == spec)
        // An empty policy is the supervisor's default.
        let plain = SessionSpec(policy: "")
        #expect(plain.request["policy"] == nil)
        #expect(try SessionSpec(request: plain.request, defaultPolicy: "default").policy == "default")
    }

    @Test func badInputNamesTheField() {
        func field(_ text: String) -> String? {
            do { _ = try SessionSpec(request: JSONValue.parseObject(text), defaultPolicy: "default"); return nil }
            catch let e as APIError { return e.field } catch { return "not an APIError" }
        }
        #expect(field(#"{"policy": 1}"#) == "policy")
        #expect(field(#"{"tenant": "\#(String(repeating: "t", count: 129))"}"#) == "tenant")
        #expect(field(#"{"labels": {"a": 1}}"#) == "labels.a")
        #expect(field(#"{"limits": {"memory": "1K"}}"#) == "limits.memory")
        #expect(field(#"{"limits": {"memory": "16000000T"}}"#) == "limits.memory")  // trapped before
        #expect(field(#"{"limits": {"memory": "8000000T"}}"#) == nil)
        #expect(field(#"{"limits": {"cpus": 0}}"#) == "limits.cpus")
        #expect(field(#"{"limits": {"pids": 0}}"#) == "limits.pids")
        #expect(field(#"{"limits": {"timeout": "never"}}"#) == "limits.timeout")
        #expect(field(#"{"limits": {"disk": 1}}"#) == "limits.disk")
        #expect(field(#"{"binds": {"ro": ["relative/path"]}}"#) == "binds.ro")
        #expect(field(#"{"binds": {"xx": []}}"#) == "binds.xx")
        #expect(field(#"{"nope": 1}"#) == "nope")
        #expect(field(#"{"policy": "strict", "limits": {"memory": "64M", "timeout": "5m"}, "binds": {"ro": ["/etc"]}}"#) == nil)
    }

    @Test func aBadBindKeepsThePolicyErrorAsItsCause() throws {
        do {
            _ = try SessionSpec(request: ["binds": ["ro": ["relative/path"]]], defaultPolicy: "default")
            Issue.record("a relative bind was accepted")
        } catch {
            #expect(error.field == "binds.ro")
            let cause = try #require(error.cause as? PolicyError)
            #expect(cause.message == error.message)
        }
    }

    @Test func aDamagedStoredSessionIsRefused() {
        let record = SessionRecord(id: "s-1", policy: "default", limits: ["memory": "lots"])
        #expect(throws: APIError.self) { try SessionSpec(record: record) }
        let bind = SessionRecord(id: "s-2", policy: "default", limits: ["binds": [["host": "/x"]]])
        #expect(throws: APIError.self) { try SessionSpec(record: bind) }
    }
}

@Suite struct RequestTypesTests {
    @Test func signalApprovalAndAgentRequestsRoundTrip() throws {
        #expect(try SignalRequest(json: ["signal": "SIGTERM"]).signal == 15)
        #expect(try SignalRequest(json: ["signal": "int"]).signal == 2)
        #expect(try SignalRequest(json: ["signal": "winch"]).signal == 28)
        #expect(try SignalRequest(json: SignalRequest(signal: 9).json) == SignalRequest(signal: 9))
        for bad: JSONObject in [["signal": 0], ["signal": 65], ["signal": "BOGUS"], ["signal": "SEGV"], ["signal": "SIG"], [:], ["signal": 1, "x": 1]] {
            #expect(throws: APIError.self) { try SignalRequest(json: bad) }
        }
        let d = ApprovalDecisionRequest(allow: false, reason: "no", by: "alice")
        #expect(try ApprovalDecisionRequest(json: d.json) == d)
        #expect(try ApprovalDecisionRequest(json: ["decision": "allow"]).by == "api")
        #expect(try ApprovalDecisionRequest(json: ["decision": "allow", "by": .string(String(repeating: "b", count: 300))]).by.count == 128)
        do { _ = try ApprovalDecisionRequest(json: ["decision": "maybe"]); Issue.record("accepted") } catch { #expect(error.field == "decision") }
        do { _ = try ApprovalDecisionRequest(json: ["decision": "deny", "reason": .string(String(repeating: "r", count: 5000))]); Issue.record("accepted") } catch { #expect(error.field == "reason") }
        let a = AgentRunRequest(agent: "name = \"a\"", agentFile: "a.toml", input: "hi", wait: true)
        #expect(try AgentRunRequest(json: a.json) == a)
        do { _ = try AgentRunRequest(json: ["input": "x"]); Issue.record("accepted") } catch { #expect(error.field == "agent") }
        do { _ = try AgentRunRequest(json: ["agent": "x"]); Issue.record("accepted") } catch { #expect(error.field == "input") }
    }

    @Test("mkdir and rename bodies: paths relative without '..', '.' or empty segments, named by field; mode 0...4095")
    func mkdirAndRenameRequests() throws {
        let m = MkdirRequest(path: "out/logs", parents: true, mode: 0o700)
        #expect(try MkdirRequest(json: m.json) == m)
        #expect(try MkdirRequest(json: ["path": "a"]) == MkdirRequest(path: "a", parents: false, mode: 0o755))
        let r = RenameRequest(path: "a b.txt", to: "done/ünï.txt")
        #expect(try RenameRequest(json: r.json) == r)
        let badMkdir: [(JSONObject, String)] = [
            ([:], "path"), (["path": 3], "path"), (["path": "../x"], "path"), (["path": "/etc"], "path"),
            (["path": "a//b"], "path"), (["path": "a/./b"], "path"), (["path": "."], "path"), (["path": ""], "path"),
            (["path": "a", "mode": 4096], "mode"), (["path": "a", "mode": -1], "mode"), (["path": "a", "mode": "755"], "mode"),
            (["path": "a", "parents": "yes"], "parents"), (["path": "a", "colour": 1], "colour"),
        ]
        for (body, field) in badMkdir {
            do { _ = try MkdirRequest(json: body); Issue.record("accepted \(body)") } catch { #expect(error.field == field, "\(body)") }
        }
        let badRename: [(JSONObject, String)] = [
            (["to": "b"], "path"), (["path": "a"], "to"), (["path": "a", "to": "../b"], "to"), (["path": "a", "to": "b/"], "to"),
            (["path": "a/..", "to": "b"], "path"),
        ]
        for (body, field) in badRename {
            do { _ = try RenameRequest(json: body); Issue.record("accepted \(body)") } catch { #expect(error.field == field, "\(body)") }
        }
    }

    @Test("a jail path for the query and body routes: relative, /workspace made relative, /tmp kept; nothing else absolute, no '..'")
    func jailPaths() throws {
        #expect(try WorkspacePath.jailPath("src/a.py") == "src/a.py")
        #expect(try WorkspacePath.jailPath("/workspace/src/a.py") == "src/a.py")
        #expect(try WorkspacePath.jailPath("/workspace", allowRoot: true) == ".")
        #expect(try WorkspacePath.jailPath("/tmp/x/y") == "/tmp/x/y")
        #expect(try WorkspacePath.jailPath("/tmp", allowRoot: true) == "/tmp")
        for bad in ["/etc/passwd", "/proc/self/environ", "/tmp/../etc/passwd", "/workspace/../etc", "/tmp//x", "/tmp/./x",
                    "/", "/workspace", "/tmpx/y", "../x", "a/../../x", "/tmp/a\u{0}b"] {
            do { _ = try WorkspacePath.jailPath(bad); Issue.record("accepted \(bad)") } catch { #expect(error.field == "path", "\(bad)") }
        }
        do { _ = try WorkspacePath.checkStrict("/etc/x", field: "to"); Issue.record("accepted") } catch { #expect(error.field == "to") }
        #expect(try WorkspacePath.checkStrict("/tmp/a/b", field: "to") == "/tmp/a/b")
    }

    @Test func errorsReadBackAsSent() throws {
        let e = APIError(.conflict, "session s-1 is closed", field: "session")
        let sent = try JSONValue.parseObject(e.json.encoded())
        let back = try #require(APIError(status: 409, json: sent))
        #expect(back.code == .conflict && back.message == e.message && back.field == "session")
        let fileError = APIError(.conflict, "x: Permission denied", field: "path", errno: "EACCES")
        #expect(APIError(status: 409, json: try JSONValue.parseObject(fileError.json.encoded()))?.errno == "EACCES")
        #expect(back.errno == nil)
        // A body without the error shape is not an error.
        #expect(APIError(status: 500, json: ["x": 1]) == nil)
        // An unknown code falls back to the status's.
        #expect(APIError(status: 404, json: ["error": ["code": "new_code", "message": "m"]])?.code == .notFound)
        for code in APIError.Code.allCases { #expect(APIError.code(forStatus: APIError(code, "").httpStatus) == code) }
    }

    @Test func base64AndExitStatus() {
        for bytes: [UInt8] in [[], [0], [1, 2], [1, 2, 3], Array(0...255)] {
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("hi!".utf8)) == "aGkh")
        #expect(Base64.decode("a*") == nil)
        #expect(APIJSON.exitStatus(status: .succeeded, code: 0, signal: nil) == 0)
        #expect(APIJSON.exitStatus(status: .failed, code: nil, signal: 15) == 143)
        #expect(APIJSON.exitStatus(status: .cancelled, code: nil, signal: nil) == 137)
        #expect(APIJSON.exitStatus(status: .error, code: nil, signal: nil) == 125)
    }
}

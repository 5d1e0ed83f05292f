import LevainAPI
import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Control API: files and bad input", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct APITests {
    @Test("files: write, read, list, stat and delete in a session's workspace, as the jail user")
    func files() async throws {
        let sv = try await TestSupervisor.start("files")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
        let put = try await sv.raw("PUT", "/v1/sessions/\(s)/files/dir/sub/data.bin?mode=416", body: data)
        #expect(put.status == 201, "\(put.text)")
        let get = try await sv.raw("GET", "/v1/sessions/\(s)/files/dir/sub/data.bin", body: nil)
        #expect(get.status == 200)
        #expect(get.body == data)
        let stat = try await sv.request("GET", "/v1/sessions/\(s)/stat/dir/sub/data.bin").json
        #expect(stat?["size"]?.intValue == 300_000)
        #expect(stat?["mode"]?.intValue == 0o640)
        #expect(stat?["type"]?.stringValue == "file")
        let list = try await sv.request("GET", "/v1/sessions/\(s)/files?path=dir/sub").json?["entries"]?.arrayValue ?? []
        #expect(list.compactMap { $0["name"]?.stringValue } == ["data.bin"])
        // The run sees it, owned by the jail user.
        let ls = try await sv.startRun(s, ["command": "stat -c '%U %s %a' dir/sub/data.bin", "wait": true])
        #expect(try await sv.output(ls["id"]!.stringValue!) == "jail 300000 640\n")
        #expect(try await sv.events(session: s).types.contains("file.written"))
        let del = try await sv.raw("DELETE", "/v1/sessions/\(s)/files/dir/sub/data.bin", body: nil)
        #expect(del.status == 204)
        #expect(try await sv.raw("GET", "/v1/sessions/\(s)/files/dir/sub/data.bin", body: nil).status == 404)
    }

    @Test("bad input gets a 4xx JSON error naming the field, and changes nothing")
    func badInput() async throws {
        let sv = try await TestSupervisor.start("badinput", config: "[limits]\nmax_file = \"1M\"\n")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        func expectError(_ r: APIClient.Reply, _ status: Int, field: String?, _ note: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == status, "\(note): \(r.status) \(r.text)", sourceLocation: sourceLocation)
            let e = r.json?["error"]?.objectValue
            #expect(e?["message"]?.stringValue?.isEmpty == false, "\(note): \(r.text)", sourceLocation: sourceLocation)
            if let field { #expect(e?["field"]?.stringValue == field, "\(note): \(r.text)", sourceLocation: sourceLocation) }
        }
        let eventsBefore = try await sv.events(session: s).count

        expectError(try await sv.raw("POST", "/v1/sessions/\(s)/runs", body: Array("{\"argv\": [\"true\"".utf8), contentType: "application/json"), 400, field: "body", "truncated JSON")
        expectError(try await sv.raw("POST", "/v1/sessions/\(s)/runs", body: Array("[1, 2]".utf8)), 400, field: "body", "not an object")
        expectError(try await sv.request("POST", "/v1/sessions/\(s)/runs", ["argv": "true"]), 400, field: "argv", "argv as a string")
        expectError(try await sv.request("POST", "/v1/sessions/\(s)/runs", ["argv": ["true"], "timeout": -1]), 400, field: "timeout", "negative timeout")
        expectError(try await sv.request("POST", "/v1/sessions/\(s)/runs", ["argv": ["true"], "colour": "blue"]), 400, field: "colour", "unknown field")
        expectError(try await sv.request("POST", "/v1/sessions/\(s)/runs", ["argv": ["true"], "env": ["1BAD": "x"]]), 400, field: "env.1BAD", "bad env name")
        expectError(try await sv.request("POST", "/v1/sessions", ["limits": ["memory": "lots"]]), 400, field: "limits.memory", "bad memory")
        expectError(try await sv.request("POST", "/v1/sessions", ["policy": "no-such-policy"]), 400, field: nil, "unknown policy")
        expectError(try await sv.request("POST", "/v1/sessions/s-000000000000/runs", ["argv": ["true"]]), 404, field: "session", "unknown session")
        expectError(try await sv.request("GET", "/v1/runs/r-000000000000"), 404, field: "run", "unknown run")

        // Numbers out of range are refused, not trapped on; unknown routes
        // get the same JSON error.
        let done = try await sv.startRun(s, ["command": "echo x", "wait": true])
        let doneID = try #require(done["id"]?.stringValue)
        expectError(try await sv.request("GET", "/v1/runs/\(doneID)/output/stdout?offset=99999999999999999999"), 400, field: "offset", "huge offset")
        expectError(try await sv.request("POST", "/v1/runs/\(doneID)/wait?timeout=1e30"), 400, field: "timeout", "huge timeout")
        expectError(try await sv.request("GET", "/v1/log/events?limit=18446744073709551616"), 400, field: "limit", "huge limit")
        expectError(try await sv.raw("PUT", "/v1/sessions/\(s)/files/m.txt?mode=70000", body: Array("x".utf8)), 400, field: "mode", "mode above 0o7777")
        expectError(try await sv.request("POST", "/v1/sessions", ["limits": ["timeout": 1e300]]), 400, field: "limits.timeout", "huge session timeout")
        expectError(try await sv.request("POST", "/v1/sessions/\(s)/runs", ["argv": ["true"], "stdin": "a", "stdin_base64": "YQ=="]), 400, field: "stdin_base64", "two stdins")
        expectError(try await sv.request("GET", "/v1/no-such-route"), 404, field: "path", "unknown route")
        #expect(try await sv.request("GET", "/v1/health").status == 200)
        // A file name that needs escaping in a URL.
        #expect(try await sv.raw("PUT", "/v1/sessions/\(s)/files/a%20b.txt", body: Array("spaced".utf8)).status == 201)
        let spaced = try await sv.startRun(s, ["command": "cat 'a b.txt'", "wait": true])
        #expect(try await sv.output(spaced["id"]!.stringValue!) == "spaced")
        #expect(try await sv.raw("DELETE", "/v1/sessions/\(s)/files/a%20b.txt", body: nil).status == 204)

        // Paths that leave the workspace: .., absolute, a symlink pointing out.
        let setup = try await sv.startRun(s, ["command": "ln -s /etc/passwd /workspace/passwd-link; ln -s / /workspace/root-link; echo safe > /workspace/keep.txt", "wait": true])
        #expect(setup["exit_status"]?.intValue == 0)
        expectError(try await sv.raw("GET", "/v1/sessions/\(s)/files/../../etc/passwd", body: nil), 400, field: "path", "..")
        expectError(try await sv.raw("GET", "/v1/sessions/\(s)/files/a/%2E%2E/%2E%2E/etc/passwd", body: nil), 400, field: "path", "encoded ..")
        expectError(try await sv.raw("GET", "/v1/sessions/\(s)/files//etc/passwd", body: nil), 400, field: "path", "absolute")
        expectError(try await sv.raw("GET", "/v1/sessions/\(s)/files/passwd-link", body: nil), 400, field: "path", "symlink to a file outside")
        expectError(try await sv.raw("GET", "/v1/sessions/\(s)/files/root-link/etc/passwd", body: nil), 400, field: "path", "through a symlinked directory")
        expectError(try await sv.raw("PUT", "/v1/sessions/\(s)/files/root-link/tmp/planted", body: Array("x".utf8)), 400, field: "path", "write through a symlink")
        expectError(try await sv.raw("PUT", "/v1/sessions/\(s)/files/passwd-link", body: Array("x".utf8)), 400, field: "path", "overwrite a symlink")
        // The control: a file in the workspace reads fine.
        #expect(try await sv.raw("GET", "/v1/sessions/\(s)/files/keep.txt", body: nil).text == "safe\n")
        #expect(FileManager.default.fileExists(atPath: "/tmp/planted") == false)

        // A file above the limit: refused, and the old content stays whole.
        let big = [UInt8](repeating: 65, count: 2 << 20)
        expectError(try await sv.raw("PUT", "/v1/sessions/\(s)/files/keep.txt", body: big), 413, field: "body", "file too large")
        #expect(try await sv.raw("GET", "/v1/sessions/\(s)/files/keep.txt", body: nil).text == "safe\n")

        // A client that stops mid-upload leaves nothing half-written.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in sv.socket.utf8.enumerated() { raw[i] = b } }
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(ok == 0)
        let head = "PUT /v1/sessions/\(s)/files/keep.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "B", count: 50_000)
        _ = head.withCString { write(fd, $0, strlen($0)) }
        usleep(300_000)
        close(fd)
        usleep(500_000)
        #expect(try await sv.raw("GET", "/v1/sessions/\(s)/files/keep.txt", body: nil).text == "safe\n")
        let leftovers = try await sv.request("GET", "/v1/sessions/\(s)/files").json?["entries"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(leftovers.sorted() == ["keep.txt", "passwd-link", "root-link"], "\(leftovers)")

        // None of it reached the log as something that happened.
        let after = try await sv.events(session: s)
        let written = after.dropFirst(eventsBefore).filter { $0["type"]?.stringValue == "file.written" }.compactMap { $0["payload"]?["path"]?.stringValue }
        #expect(written == ["a b.txt"], "\(written)")
        #expect(try await sv.request("GET", "/v1/log/verify").json?["ok"]?.boolValue == true)
    }

    @Test("the TCP listener wants a bearer token: missing, wrong and expired ones get 401")
    func bearerTokens() async throws {
        let port = Int.random(in: 20_000..<60_000)
        let dir = "/tmp/levain-sv-tests/tokens-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = "good-token-0123456789abcdef", old = "old-token-0123456789abcdef"
        try "\(good)\n\(old) not_after=2020-01-01T00:00:00Z\n".write(toFile: dir + "/tokens", atomically: true, encoding: .utf8)
        let sv = try await TestSupervisor.start("tcp", config: "\n[tcp]\naddress = \"127.0.0.1:\(port)\"\ntoken_file = \"\(dir)/tokens\"\n")
        defer { sv.cleanUp() }
        func get(_ token: String?) async throws -> APIClient.Reply {
            try await APIClient(address: .tcp(host: "127.0.0.1", port: port), token: token).request("GET", "/v1/sessions")
        }
        let missing = try await get(nil)
        #expect(missing.status == 401)
        #expect(missing.json?["error"]?["field"]?.stringValue == "Authorization")
        #expect(missing.header("WWW-Authenticate") == "Bearer")
        #expect(try await get("wrong-token-0123456789abcdef").status == 401)
        let expired = try await get(old)
        #expect(expired.status == 401)
        #expect(expired.json?["error"]?["message"]?.stringValue?.contains("expired") == true)
        // The control: the good token works; the Unix socket needs none.
        #expect(try await get(good).status == 200)
        #expect(try await sv.request("GET", "/v1/sessions").status == 200)
        // Rotation: the good token removed from the file stops working.
        sleep(1)
        try "another-token-0123456789abcdef\n".write(toFile: dir + "/tokens", atomically: true, encoding: .utf8)
        #expect(await eventually(within: 5) { (try? await get(good).status) == 401 })
    }
}

import Foundation
import LevainJSON
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("The CLI against a supervisor: JSON shapes, log export", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct CLITests {
    @Test("--json of runs, sessions and approvals prints the API's object ({\"runs\": [...]}, ...), from the daemon and from the file")
    func jsonShapes() async throws {
        let sv = try await TestSupervisor.start("clijson")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let run = try #require(try await sv.startRun(s, ["command": "echo hi", "wait": true])["id"]?.stringValue)
        let connect = [levainBinary, "--connect", "unix:" + sv.socket]
        func object(_ argv: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONObject {
            let r = try runProcess(argv)
            #expect(r.status == 0, "\(argv): \(r.stderr)", sourceLocation: sourceLocation)
            do { return try JSONValue.parseObject(r.stdout) } catch {
                Issue.record("\(argv) printed no JSON object: \(r.stdout)", sourceLocation: sourceLocation)
                return [:]
            }
        }
        let api = try await sv.request("GET", "/v1/runs").json?["runs"]?.arrayValue ?? []
        for argv in [connect + ["runs", "--json"], [levainBinary, "runs", "--state", sv.state, "--json"]] {
            let o = try object(argv)
            #expect(Array(o.keys) == ["runs"], "\(argv): \(o.keys)")
            let ids = o["runs"]?.arrayValue?.compactMap { $0["id"]?.stringValue }
            #expect(ids == [run], "\(argv)")
            #expect(ids == api.compactMap { $0["id"]?.stringValue })
        }
        for argv in [connect + ["sessions", "--json"], [levainBinary, "sessions", "--state", sv.state, "--json"]] {
            let o = try object(argv)
            #expect(Array(o.keys) == ["sessions"], "\(argv): \(o.keys)")
            #expect(o["sessions"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == [s], "\(argv)")
        }
        let approvals = try object(connect + ["approvals", "--json"])
        #expect(approvals == ["approvals": .array([])])
        // The tables are unchanged (the control): a header and the run.
        let table = try runProcess(connect + ["runs"])
        #expect(table.status == 0)
        #expect(table.stdout.hasPrefix("RUN") && table.stdout.contains(run), "\(table.stdout)")
    }

    @Test("levain serve prints one line on stderr when ready: its socket, its TCP address, its state directory and log")
    func serveSaysWhereItListens() async throws {
        let port = Int.random(in: 20_000..<60_000)
        let dir = "/tmp/levain-sv-tests/ready-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "ready-token-0123456789abcdef\n".write(toFile: dir + "/tokens", atomically: true, encoding: .utf8)
        let sv = try await TestSupervisor.start("ready", config: "\n[tcp]\naddress = \"127.0.0.1:\(port)\"\ntoken_file = \"\(dir)/tokens\"\n")
        defer { sv.cleanUp() }
        func readyLines() -> [String] { sv.serveLog.split(separator: "\n").map(String.init).filter { $0.contains("ready") } }
        #expect(await eventually(within: 30) { !readyLines().isEmpty }, "serve.log: \(sv.serveLog)")
        let lines = readyLines()
        #expect(lines.count == 1, "\(lines)")
        let line = lines.first ?? ""
        #expect(line.contains("unix:\(sv.socket) "), "\(line)")
        #expect(line.contains("tcp:127.0.0.1:\(port) "), "\(line)")
        #expect(line.contains("state \(sv.state);"), "\(line)")
        #expect(line.contains("log \(sv.state)/log.sqlite;"), "\(line)")
        // The control: it says so only once, also after requests.
        #expect(try await sv.request("GET", "/v1/health").status == 200)
        #expect(readyLines().count == 1)
    }

    @Test("log export: --json is refused with a clear error; an unknown session is 404 (API) and an error (CLI), as verify")
    func logExport() async throws {
        let sv = try await TestSupervisor.start("cliexport")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        _ = try await sv.startRun(s, ["command": "true", "wait": true])
        let unknown = "s-000000000000"
        let connect = [levainBinary, "--connect", "unix:" + sv.socket]

        // The API: export answers as verify does.
        let verify = try await sv.request("GET", "/v1/log/verify?session=\(unknown)")
        #expect(verify.status == 404)
        let export = try await sv.request("GET", "/v1/log/export?session=\(unknown)")
        #expect(export.status == 404, "\(export.status) \(export.text)")
        #expect(export.json?["error"]?["field"]?.stringValue == "session", "\(export.text)")
        let known = try await sv.request("GET", "/v1/log/export?session=\(s)")
        #expect(known.status == 200)
        let lines = known.text.split(separator: "\n")
        #expect(lines.count >= 4, "\(known.text)")

        // The CLI, both ways: an unknown session is an error, not nothing.
        for argv in [connect + ["log", "export", "--session", unknown], [levainBinary, "log", "export", "--state", sv.state, "--session", unknown]] {
            let r = try runProcess(argv)
            #expect(r.status != 0, "\(argv): \(r.stdout)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.contains(unknown), "\(argv): \(r.stderr)")
        }
        // --json: refused, saying what export writes.
        for argv in [[levainBinary, "log", "export", "--state", sv.state, "--json"], connect + ["log", "export", "--session", s, "--json"]] {
            let r = try runProcess(argv)
            #expect(r.status != 0, "\(argv): \(r.stdout)")
            #expect(r.stdout.isEmpty, "\(argv): \(r.stdout)")
            #expect(r.stderr.contains("JSON Lines") && r.stderr.contains("--json"), "\(argv): \(r.stderr)")
        }
        // The control: the export of the known session, both ways, is its lines.
        for argv in [connect + ["log", "export", "--session", s], [levainBinary, "log", "export", "--state", sv.state, "--session", s, "--jsonl"]] {
            let r = try runProcess(argv)
            #expect(r.status == 0, "\(argv): \(r.stderr)")
            #expect(r.stdout.split(separator: "\n") == lines, "\(argv)")
        }
    }
}

import Foundation
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Recovery, shutdown and the log's integrity", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct RecoveryTests {
    /// Children of `pid` (the jails' init processes are the supervisor's).
    static func children(of pid: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var out: [Int32] = []
        for e in entries where e.allSatisfy(\.isNumber) {
            guard let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == pid, let p = Int32(e) { out.append(p) }
        }
        return out
    }

    /// The jails of a supervisor: its children running levain-harness.
    static func harnesses(of pid: Int32) -> Set<Int32> {
        Set(children(of: pid).filter {
            (try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8))?.contains("levain-harness") ?? false
        })
    }

    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// A one-shot `levain run` writes its request in its own form (env_keys,
    /// --timeout as given) into the same log; the supervisor reads it back
    /// for the run's routes. Reading stored requests exactly made these 500.
    @Test("a one-shot levain run in the supervisor's log can be waited for and read through the API")
    func oneShotRunThroughTheAPI() async throws {
        let sv = try await TestSupervisor.start("oneshot-api")
        defer { sv.cleanUp() }
        let report = sv.directory + "/report.json"
        let local = try runProcess([levainBinary, "run", "--state", sv.state, "-q", "--timeout", "30s", "--env", "A=1", "--cwd", "/workspace",
                                    "--json-report", report, "--", "/bin/sh", "-c", "exit 3"])
        #expect(local.status == 3, "\(local)")
        let data = try #require(FileManager.default.contents(atPath: report))
        let id = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["id"] as? String)
        let waited = try await sv.request("POST", "/v1/runs/\(id)/wait")
        #expect(waited.status == 200, "\(waited.status) \(waited.text)")
        #expect(waited.json?["exit_status"]?.intValue == 3)
        let output = try await sv.request("GET", "/v1/runs/\(id)/output/stdout?follow=false")
        #expect(output.status == 200, "\(output.status) \(output.text)")
        // Control: a run of the supervisor itself reads back too.
        let session = try await sv.openSession()
        let run = try await sv.startRun(session, ["argv": ["/bin/true"], "timeout": "30s", "env": ["A": "1"], "wait": true])
        let runID = try #require(run["id"]?.stringValue)
        #expect(try await sv.request("POST", "/v1/runs/\(runID)/wait").status == 200)
    }

    @Test("kill -9 of the supervisor with 20 running jails leaves nothing behind; the restart records run.interrupted, retries or fails, and sessions reopen with their workspace")
    func killNineAndRecover() async throws {
        let sv = try await TestSupervisor.start("kill9", config: "concurrency = 32\n")
        defer { sv.cleanUp() }
        let marker = "kill9-\(UInt32.random(in: 0..<UInt32.max))"
        var sessions: [String] = []
        var runs: [(id: String, retry: Bool, session: String)] = []
        for i in 0..<20 {
            let s = try await sv.openSession(["labels": ["i": .string("\(i)")]])
            sessions.append(s)
            // Its workspace gets a file that must survive.
            let put = try await sv.raw("PUT", "/v1/sessions/\(s)/files/keep.txt", body: Array("session \(i)\n".utf8))
            #expect(put.status == 201, "\(put.text)")
            let retry = i % 2 == 0
            // On a retry the run sees the file its first attempt left and finishes.
            let command = "if [ -e /workspace/attempted ]; then echo second-attempt; else touch /workspace/attempted; exec python3 -c 'import time; time.sleep(1000)' \(marker); fi"
            let r = try await sv.startRun(s, ["command": .string(command), "retry": .string(retry ? "retry" : "fail")])
            runs.append((r["id"]!.stringValue!, retry, s))
        }
        #expect(await eventually(within: 60) { processes(containing: marker).count == 20 })
        let jailInits = Array(sv.harnessPIDs)
        #expect(jailInits.count == 20)
        let victims = processes(containing: marker) + jailInits

        sv.stop(signal: SIGKILL)
        // Every jail dies with its supervisor: no process is left behind.
        #expect(await eventually(within: 15) { victims.allSatisfy { !Self.alive($0) } }, "left: \(victims.filter(Self.alive))")
        #expect(processes(containing: marker).isEmpty)

        // The restart: the log verifies, each run in flight is interrupted,
        // then retried or failed by its policy.
        try await sv.start()
        // Verified beside the start: done within moments for this log.
        #expect(await eventually(within: 30) {
            (try? await sv.request("GET", "/v1/health").json)??["log"]?["verifying"]?.boolValue == false
        })
        let health = try await sv.request("GET", "/v1/health").json
        #expect(health?["log"]?["verified_at_start"]?.boolValue == true)
        for run in runs {
            let types = try await sv.events(run: run.id).types
            #expect(types.contains("run.interrupted"), "\(run.id): \(types)")
            if run.retry {
                let done = try await sv.wait(run.id)
                #expect(done["status"]?.stringValue == "succeeded", "\(done)")
                #expect(try await sv.output(run.id) == "second-attempt\n")
            } else {
                let record = try await sv.request("GET", "/v1/runs/\(run.id)").json
                #expect(record?["status"]?.stringValue == "interrupted")
            }
        }
        // Sessions whose runs did not retry are interrupted; they reopen
        // with their workspace.
        let failedRun = try #require(runs.first { !$0.retry })
        let status = try await sv.request("GET", "/v1/sessions/\(failedRun.session)").json?["status"]?.stringValue
        #expect(status == "interrupted")
        let reopened = try await sv.request("POST", "/v1/sessions/\(failedRun.session)/reopen")
        #expect(reopened.status == 200, "\(reopened.text)")
        let cat = try await sv.startRun(failedRun.session, ["command": "cat /workspace/keep.txt; ls /workspace", "wait": true])
        #expect(cat["exit_status"]?.intValue == 0)
        let index = sessions.firstIndex(of: failedRun.session)!
        #expect(try await sv.output(cat["id"]!.stringValue!) == "session \(index)\nattempted\nkeep.txt\n")
        let verify = try runProcess([levainBinary, "log", "verify", "--state", sv.state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test("a byte changed in the SQLite file makes levain log verify fail and name the event")
    func tamperedLog() async throws {
        let sv = try await TestSupervisor.start("tamper")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let marker = "tamper-me-\(UInt32.random(in: 100_000..<999_999))"
        for i in 0..<5 {
            _ = try await sv.startRun(s, ["command": .string(i == 2 ? "echo \(marker)" : "echo \(i)"), "wait": true])
        }
        let target = try await sv.events(session: s).first { ($0["payload"]?["argv"]?.encoded() ?? "").contains(marker) }
        let seq = try #require(target?["seq"]?.intValue)
        #expect(sv.stop() == 0)
        // The control: the untouched log verifies.
        let clean = try runProcess([levainBinary, "log", "verify", "--state", sv.state])
        #expect(clean.status == 0, "\(clean.stdout) \(clean.stderr)")

        let path = sv.state + "/log.sqlite"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let needle = Array(marker.utf8)
        var hits: [Int] = []
        if bytes.count >= needle.count {
            for i in 0...(bytes.count - needle.count) where bytes[i] == needle[0] && Array(bytes[i..<i + needle.count]) == needle { hits.append(i) }
        }
        #expect(!hits.isEmpty, "the marker is not in the database file (still in the WAL?)")
        // Change one digit of the marker in the event's stored payload (the
        // run record's copy is not chained; change every copy).
        for h in hits { bytes[h + needle.count - 1] = bytes[h + needle.count - 1] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0") }
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let tampered = try runProcess([levainBinary, "log", "verify", "--state", sv.state])
        #expect(tampered.status == 1, "\(tampered.stdout) \(tampered.stderr)")
        #expect(tampered.stderr.contains("seq \(seq) of session \(s)"), "\(tampered.stderr)")
        let json = try runProcess([levainBinary, "log", "verify", "--state", sv.state, "--json", s])
        #expect(json.status == 1)
        #expect(json.stdout.contains("\"seq\": \(seq)"))
    }

    @Test("SIGTERM: new work is refused, running runs finish within the grace, the rest are killed and recorded")
    func gracefulShutdown() async throws {
        let sv = try await TestSupervisor.start("sigterm", config: "shutdown_grace = \"3s\"\n")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let quick = try await sv.startRun(s, ["command": "sleep 1; echo finished"])
        let slow = try await sv.startRun(s, ["command": "sleep 1000"])
        let quickID = try #require(quick["id"]?.stringValue), slowID = try #require(slow["id"]?.stringValue)
        #expect(await eventually(within: 30) { (try? await sv.request("GET", "/v1/runs/\(slowID)").json?["status"]?.stringValue) == "running" })
        kill(sv.pid, SIGTERM)
        // Refused while it drains.
        #expect(await eventually(within: 5) { (try? await sv.request("POST", "/v1/sessions", [:]).status) == 503 })
        let status = sv.stop(timeout: 60)
        #expect(status == 0, "\(sv.serveLog)")
        let log = try sv.openLog()
        #expect(try log.run(id: quickID)?.status == .succeeded)
        let slowRecord = try log.run(id: slowID)
        #expect(slowRecord?.status == .cancelled || slowRecord?.status == .interrupted, "\(String(describing: slowRecord))")
        #expect(try log.events(run: slowID).map(\.type).contains("run.finished"))
        #expect(try log.verify().ok)
        #expect(!FileManager.default.fileExists(atPath: sv.socket))
    }
}

import Foundation
import LevainJSON
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Runs through the supervisor", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct RunTests {
    @Test("100 runs across 20 concurrent sessions: every output and exit code right")
    func hundredRunsTwentySessions() async throws {
        let sv = try await TestSupervisor.start("hundred", config: "concurrency = 8\n")
        defer { sv.cleanUp() }
        let client = sv.client
        // 20 sessions opened concurrently.
        let sessions = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let r = try await client.request("POST", "/v1/sessions", json: ["labels": ["n": .string("\(i)")]])
                    guard r.status == 201, let id = r.json?["id"]?.stringValue else { throw TestFailure("session \(i): \(r.text)") }
                    return id
                }
            }
            var ids: [String] = []
            for try await id in group { ids.append(id) }
            return ids
        }
        #expect(Set(sessions).count == 20)
        // 100 runs, 5 per session, all submitted at once.
        struct Outcome: Sendable { var i: Int; var stdout: String; var stderr: String; var exit: Int64? }
        let outcomes = try await withThrowingTaskGroup(of: Outcome.self) { group in
            for i in 0..<100 {
                let session = sessions[i % 20]
                group.addTask {
                    let body: JSONObject = ["command": .string("echo out-\(i); echo err-\(i) >&2; exit \(i % 7)"), "wait": true]
                    let r = try await client.request("POST", "/v1/sessions/\(session)/runs", json: .object(body))
                    guard r.status == 201, let run = r.json?["id"]?.stringValue else { throw TestFailure("run \(i): \(r.text)") }
                    let out = try await client.request("GET", "/v1/runs/\(run)/output/stdout").text
                    let err = try await client.request("GET", "/v1/runs/\(run)/output/stderr").text
                    return Outcome(i: i, stdout: out, stderr: err, exit: r.json?["exit_status"]?.intValue)
                }
            }
            var all: [Outcome] = []
            for try await o in group { all.append(o) }
            return all
        }
        #expect(outcomes.count == 100)
        for o in outcomes {
            #expect(o.stdout == "out-\(o.i)\n", "run \(o.i)")
            #expect(o.stderr == "err-\(o.i)\n", "run \(o.i)")
            #expect(o.exit == Int64(o.i % 7), "run \(o.i)")
        }
        // Each run's events are in the log, in order, and the log verifies.
        let runs = try await sv.request("GET", "/v1/runs").json?["runs"]?.arrayValue ?? []
        #expect(runs.count == 100)
        let first = try #require(runs.first?["id"]?.stringValue)
        #expect(try await sv.events(run: first).types == ["run.queued", "run.started", "process.exited", "run.finished"])
        let verify = try await sv.request("GET", "/v1/log/verify").json
        #expect(verify?["ok"]?.boolValue == true, "\(verify?["report"]?.stringValue ?? "")")
    }

    @Test("levain --connect run gives what levain run gives: output, stdin, exit codes")
    func remoteRunMatchesLocal() async throws {
        let sv = try await TestSupervisor.start("remote")
        defer { sv.cleanUp() }
        let localState = sv.directory + "/local"
        let cases: [(argv: [String], options: [String], stdin: String?)] = [
            (["sh", "-c", "echo hello; echo oops >&2; exit 3"], [], nil),
            (["sh", "-c", "kill -TERM $$"], [], nil),
            (["no-such-command"], [], nil),
            (["sh", "-c", "tr a-z A-Z"], [], "piped through stdin\n"),
            (["sleep", "30"], ["--timeout", "1"], nil),
            (["sh", "-c", "echo $GREETING; pwd"], ["--env", "GREETING=hi", "--cwd", "/tmp"], nil),
            (["python3", "-c", "x = bytearray(200 << 20)"], ["--memory", "64M"], nil),
        ]
        for c in cases {
            let local = try runProcess([levainBinary, "run", "--state", localState, "-q"] + c.options + ["--"] + c.argv, stdin: c.stdin)
            let remote = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "-q"] + c.options + ["--"] + c.argv, stdin: c.stdin)
            #expect(remote.status == local.status, "\(c.argv): remote \(remote) local \(local)")
            #expect(remote.stdout == local.stdout, "\(c.argv)")
        }
        // The control: the exit statuses above are the expected ones, not
        // just equal (a broken client and a broken run could agree).
        let three = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "--", "sh", "-c", "exit 3"])
        #expect(three.status == 3)
        let term = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "--", "sh", "-c", "kill -TERM $$"])
        #expect(term.status == 128 + SIGTERM)
        let missing = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "--", "no-such-command"])
        #expect(missing.status == 127)
        // The one-shot runs went to the log of their state directory.
        let log = try SessionLog(path: localState + "/log.sqlite", readOnly: true)
        let oneShots = try log.sessions().filter { $0.kind == .oneShot }
        #expect(oneShots.count == cases.count)
        #expect(try log.verify().ok)
    }

    @Test("an idempotent retry returns the first run, not a second one")
    func idempotency() async throws {
        let sv = try await TestSupervisor.start("idem")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let body: JSONObject = ["command": "echo ran >> /workspace/count; cat /workspace/count | wc -l", "idempotency_key": "job-42"]
        let first = try await sv.request("POST", "/v1/sessions/\(s)/runs", .object(body))
        #expect(first.status == 201)
        let id = try #require(first.json?["id"]?.stringValue)
        _ = try await sv.wait(id)
        let again = try await sv.request("POST", "/v1/sessions/\(s)/runs", .object(body))
        #expect(again.status == 200)
        #expect(again.json?["id"]?.stringValue == id)
        // The control: another key is another run, and it sees one earlier run.
        var other = body
        other["idempotency_key"] = "job-43"
        let second = try await sv.startRun(s, other)
        let secondID = try #require(second["id"]?.stringValue)
        #expect(secondID != id)
        _ = try await sv.wait(secondID)
        #expect(try await sv.output(secondID) == "2\n")
        let queued = try await sv.events(session: s).filter { $0["type"]?.stringValue == "run.queued" }
        #expect(queued.count == 2)
    }

    @Test("cancel kills a run that ignores SIGTERM, with its whole process tree; the session carries on")
    func cancelIgnoringSIGTERM() async throws {
        let sv = try await TestSupervisor.start("cancel")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let marker = "cancel-marker-\(UInt32.random(in: 0..<UInt32.max))"
        // Both the run's process and its child ignore SIGTERM and SIGINT.
        let stubborn = "python3 -c 'import signal, time; signal.signal(15, signal.SIG_IGN); signal.signal(2, signal.SIG_IGN); time.sleep(1000)' \(marker)"
        let run = try await sv.startRun(s, ["command": .string("trap '' TERM INT; \(stubborn) & exec \(stubborn)")])
        let id = try #require(run["id"]?.stringValue)
        #expect(await eventually(within: 30) { processes(containing: marker).count == 2 })
        let cancelled = try await sv.request("POST", "/v1/runs/\(id)/cancel")
        #expect(cancelled.status == 200)
        #expect(cancelled.json?["status"]?.stringValue == "cancelled")
        #expect(cancelled.json?["exit_status"]?.intValue == 137)
        #expect(await eventually(within: 5) { processes(containing: marker).isEmpty })
        #expect(try await sv.events(run: id).types.contains("run.cancel_requested"))
        // The control: the same session runs the next command normally.
        let next = try await sv.startRun(s, ["command": "echo still here", "wait": true])
        #expect(next["exit_status"]?.intValue == 0)
        #expect(try await sv.output(next["id"]!.stringValue!) == "still here\n")
    }

    @Test("a run's timeout kills it and says so; signals reach the run's process group")
    func timeoutAndSignal() async throws {
        let sv = try await TestSupervisor.start("timeout")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let slow = try await sv.startRun(s, ["argv": ["sleep", "60"], "timeout": 0.5, "wait": true])
        #expect(slow["status"]?.stringValue == "timed_out")
        #expect(slow["exit_status"]?.intValue == 137)
        // A signal through the API: the run's trap sees it.
        let trapped = try await sv.startRun(s, ["command": "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
        let id = try #require(trapped["id"]?.stringValue)
        #expect(await eventually(within: 30) { (try? await sv.output(id)) == "ready\n" })
        let sig = try await sv.request("POST", "/v1/runs/\(id)/signal", ["signal": "USR1"])
        #expect(sig.status == 200, "\(sig.text)")
        let done = try await sv.wait(id)
        #expect(done["exit_status"]?.intValue == 7)
        #expect(try await sv.output(id) == "ready\ngot-usr1\n")
        // Control: a signal to a finished run is refused, not sent somewhere else.
        let late = try await sv.request("POST", "/v1/runs/\(id)/signal", ["signal": "USR1"])
        #expect(late.status == 409)
    }

    @Test("events stream as server-sent events and resume from Last-Event-ID")
    func eventStream() async throws {
        let sv = try await TestSupervisor.start("sse")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let run = try await sv.startRun(s, ["command": "echo hi", "wait": true])
        let id = try #require(run["id"]?.stringValue)
        let all = try await sv.request("GET", "/v1/runs/\(id)/events?follow=false").text
        let ids = all.split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { Int($0.dropFirst(4))! }
        let types = all.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(types == ["run.queued", "run.started", "process.exited", "run.finished"])
        // Resume after the second event: only the last two come.
        let client = sv.client
        let resumed = try await {
            var text: [UInt8] = []
            try await client.stream("GET", "/v1/sessions/\(s)/events?follow=false&after=\(ids[1])", onHead: { _, _ in }, onChunk: { text += $0; return true })
            return String(decoding: text, as: UTF8.self)
        }()
        let resumedTypes = resumed.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(resumedTypes == ["process.exited", "run.finished"])
    }
}

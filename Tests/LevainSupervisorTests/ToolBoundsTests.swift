import Foundation
import LevainJSON
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a session's tool calls may cost the supervisor and other sessions,
/// and what outlives a run: attacks from inside a jail through the in-jail
/// MCP endpoint (plain JSON-RPC over HTTP, Tests/Fixtures/mcp_calls.py),
/// each with a benign control.
@Suite(.serialized, .enabled(if: runningAsRoot, "needs root: real jails"))
struct ToolBoundsTests {
    static let client = ["/usr/bin/python3", "/fixtures/mcp_calls.py"]
    static let fixtures: JSONObject = ["binds": ["ro": [.string(fixturesDirectory + ":/fixtures")]]]

    /// Runs `true` in `session` up to `count` times (or until `seconds`
    /// passed), one after the other; the median time from submission to
    /// the end, in seconds.
    static func p50(_ sv: TestSupervisor, _ session: String, count: Int = 100, seconds: Double = 90) async throws -> (Double, Int) {
        var times: [Double] = []
        let deadline = Date().addingTimeInterval(seconds)
        while times.count < count && Date() < deadline {
            let t0 = Date()
            let run = try await sv.startRun(session, ["argv": ["true"]])
            let done = try await sv.wait(try #require(run["id"]?.stringValue))
            #expect(done["exit_status"]?.intValue == 0)
            times.append(Date().timeIntervalSince(t0))
        }
        times.sort()
        return (times[times.count / 2], times.count)
    }

    /// The tools' answers of one `mcp_calls.py call` in `session`.
    static func call(_ sv: TestSupervisor, _ session: String, _ tool: String, _ args: JSONValue, parallel: Int = 1) async throws -> [[String: Any]] {
        let (code, out, err, _) = try await runInSession(sv, session, client + ["call", tool, args.encoded(), String(parallel)])
        guard code == 0, let list = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [[String: Any]] else {
            throw TestFailure("mcp_calls.py call \(tool): exit \(code), \(out) \(err)")
        }
        return list
    }

    /// Every path of the tree `mcp_calls.py tree deep 12 2` makes, and the
    /// small files the test adds.
    static func workspacePaths(depth: Int) -> [String] {
        var paths = ["deep", "big.txt", "notes", "notes/a.txt", "notes/b.txt", "notes/.secret.txt", ".hidden", ".hidden/x.txt", "x.txt", "stop"]
        var level = ["deep"]
        for _ in 0..<depth {
            var next: [String] = []
            for d in level {
                for i in 0..<2 {
                    let sub = d + "/d\(i)"
                    paths += [sub, sub + "/leaf.txt"]
                    next.append(sub)
                }
            }
            level = next
        }
        return paths
    }

    @Test("glob with many ** over a deep tree and 16 parallel read_file of a 64 MiB file, from a jail: another session's runs keep their pace, the supervisor's memory stays put; a normal glob and read_file still answer right")
    func expensiveCallsStayInTheirJail() async throws {
        let sv = try await TestSupervisor.start("tool-bounds")
        defer { sv.cleanUp() }
        let attacker = try await sv.openSession(Self.fixtures)
        let victim = try await sv.openSession()
        let depth = 12
        let setUp = "\(Self.client.joined(separator: " ")) tree deep \(depth) 2 && yes abcdefghijklmno | head -c 67108864 > big.txt"
            + " && mkdir notes .hidden && echo one > notes/a.txt && echo two > notes/b.txt && echo s > notes/.secret.txt"
            + " && echo h > .hidden/x.txt && echo x > x.txt"
        let made = try await runInSession(sv, attacker, ["/bin/sh", "-c", setUp])
        #expect(made.0 == 0, "\(made.2)")

        // The other session's pace, the first one idle.
        let (baseline, _) = try await Self.p50(sv, victim)
        let rssBefore = residentKiB(sv.pid)

        // The attack: rounds of 4 globs with six ** and 16 read_file of
        // the 64 MiB file, all at once, until told to stop.
        let glob: JSONValue = ["glob", ["pattern": "**/**/**/**/**/**/nomatch"]]
        let read: JSONValue = ["read_file", ["path": "big.txt"]]
        let round = JSONValue.array(Array(repeating: glob, count: 4) + Array(repeating: read, count: 16))
        let attack = try await sv.startRun(attacker, ["argv": .array((Self.client + ["attack", "/workspace/stop", round.encoded()]).map { .string($0) }),
                                                     "timeout": 600])
        let attackID = try #require(attack["id"]?.stringValue)
        let pid = sv.pid
        let peak = ResultBox<Int>()
        peak.set(.success(rssBefore))
        let sampling = Task.detached {
            while !Task.isCancelled {
                peak.set(.success(max(try peak.get(), residentKiB(pid))))
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        // Give the attack a moment to be under way.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let (underAttack, measured) = try await Self.p50(sv, victim)
        sampling.cancel()
        _ = try? await sampling.value
        let growthMiB = Double(try peak.get() - rssBefore) / 1024
        let stop = try await sv.raw("PUT", "/v1/sessions/\(attacker)/files/stop", body: [])
        #expect(stop.status == 201, "\(stop.text)")
        let ended = try await sv.wait(attackID, timeout: 180)
        let summary = try await sv.output(attackID)
        print("tool-bounds: victim p50 \(String(format: "%.1f", baseline * 1000)) ms idle, \(String(format: "%.1f", underAttack * 1000)) ms under attack (\(measured) runs), ratio \(String(format: "%.2f", underAttack / baseline)); supervisor RSS \(rssBefore / 1024) MiB before, +\(String(format: "%.1f", growthMiB)) MiB at peak; attack: \(summary.trimmingCharacters(in: .whitespacesAndNewlines)) \(ended["status"]?.stringValue ?? "?")")
        #expect(underAttack <= 2 * baseline, "victim p50 \(underAttack) s under attack vs \(baseline) s idle")
        #expect(growthMiB < 64, "the supervisor's RSS grew by \(growthMiB) MiB")
        #expect(ended["status"]?.stringValue == "succeeded", "\(ended)")
        let rounds = (try? jsonObject(summary))?["rounds"] as? Int ?? 0
        #expect(rounds >= 1, "\(summary)")

        // Benign control: the same tools answer right.
        let notes = try await Self.call(sv, attacker, "glob", ["pattern": "notes/*.txt"])
        #expect(notes.first?["error"] as? Bool == false)
        #expect(notes.first?["text"] as? String == "notes/a.txt\nnotes/b.txt", "\(notes)")
        let a = try await Self.call(sv, attacker, "read_file", ["path": "notes/a.txt"])
        #expect(a.first?["text"] as? String == "one\n", "\(a)")
        let big = try await Self.call(sv, attacker, "read_file", ["path": "big.txt"])
        let bigText = big.first?["text"] as? String ?? ""
        #expect(bigText.hasPrefix("abcdefghijklmno\nabcdefghijklmno\n"))
        #expect(bigText.contains("[truncated: 67108864 bytes, the first 65536 shown]"), "\(bigText.suffix(200))")
        #expect(bigText.utf8.count < 65536 + 200)
        let listing = try await Self.call(sv, attacker, "list_files", ["path": "notes"])
        #expect((listing.first?["text"] as? String ?? "").hasPrefix(".secret.txt\tfile\t2\na.txt\tfile\t4\nb.txt\tfile\t4"), "\(listing)")
        // Patterns over the deep tree, against a reference matcher.
        let all = Self.workspacePaths(depth: depth)
        for pattern in ["deep/d0/d?/*0/**/d1/[d]1/leaf.t?t", "**/x.txt", "notes/*", "*", "deep/d1/**/d0/d0/d0/d0/d0/d0/d0/d0/d0", "deep/d[!0]/d1/d1/d1/d1/**", ".*/*"] {
            let r = try await Self.call(sv, attacker, "glob", ["pattern": .string(pattern)])
            let got = (r.first?["text"] as? String ?? "").split(separator: "\n").map(String.init)
            let want = all.filter { ReferenceGlob.matches(pattern, $0) }.sorted()
            let same = got.sorted() == (want.isEmpty ? ["(no match)"] : want)
            #expect(same, "\(pattern): \(got.count) paths, \(want.count) expected; \(got.prefix(3)), expected \(want.prefix(3))")
        }
    }

    @Test("cancelling a run ends the exec it started through the MCP endpoint (its sleep is gone within seconds); a run not cancelled keeps its own; on the session's path, a client that hangs up ends its call")
    func cancelEndsTheRunsToolCalls() async throws {
        let sv = try await TestSupervisor.start("tool-cancel")
        defer { sv.cleanUp() }
        let s = try await sv.openSession(Self.fixtures)
        // The sleep's own argument is the marker; the client's arguments
        // (and the shell's) hold it only as a sum, so only the sleep has it.
        let n1 = UInt32.random(in: 100_000_000..<999_999_999), n2 = UInt32.random(in: 100_000_000..<999_999_999)
        let marker = "0.000\(n1)", control = "0.000\(n2)"
        func execRun(_ m: String, url: [String] = []) async throws -> String {
            let n = m.dropFirst(5)
            let args = JSONValue.object(["command": .string("sleep 300 0.000$((\(Int(n)! - 1)+1))"), "timeout": 280])
            let argv = [Self.client[0], Self.client[1]] + url + ["call", "exec", args.encoded()]
            let r = try await sv.startRun(s, ["argv": .array(argv.map { .string($0) }), "timeout": 290])
            return try #require(r["id"]?.stringValue)
        }
        let cancelled = try await execRun(marker)
        let kept = try await execRun(control)
        #expect(await eventually(within: 30) { !processes(containing: marker).isEmpty && !processes(containing: control).isEmpty })
        let c = try await sv.request("POST", "/v1/runs/\(cancelled)/cancel")
        #expect(c.status == 200, "\(c.text)")
        #expect(await eventually(within: 5) { processes(containing: marker).isEmpty }, "the exec's sleep outlived the cancelled run")
        // The control: the run still going keeps its call and its sleep.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        #expect(!processes(containing: control).isEmpty)
        let events = try await sv.events(run: cancelled)
        let finished = events.first { $0["type"]?.stringValue == "tool.finished" }?["payload"]
        #expect(finished?["levain.status"]?.stringValue == "cancelled", "\(events.types)")
        // Ending the control run ends its sleep as well.
        _ = try await sv.request("POST", "/v1/runs/\(kept)/cancel")
        #expect(await eventually(within: 5) { processes(containing: control).isEmpty })

        // On the session's path the call belongs to no run: it ends when
        // its client hangs up.
        let n3 = UInt32.random(in: 100_000_000..<999_999_999)
        let hungUp = "0.000\(n3)"
        let viaSession = try await execRun(hungUp, url: ["--url", "http://127.0.0.1:8792/mcp"])
        #expect(await eventually(within: 30) { !processes(containing: hungUp).isEmpty })
        // The client (not the exec's shell, whose command holds the sum too).
        let clients = processes(containing: "$((\(n3 - 1)+1))").filter { pid in
            (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { String(decoding: $0, as: UTF8.self) } ?? "").contains("mcp_calls.py")
        }
        #expect(clients.count == 1)
        for pid in clients { kill(pid, SIGKILL) }
        #expect(await eventually(within: 5) { processes(containing: hungUp).isEmpty }, "the exec's sleep outlived its MCP client")
        let done = try await sv.wait(viaSession, timeout: 30)
        #expect(done["status"]?.stringValue != "running")
    }

    @Test("an approval asked for by a run that then finishes is withdrawn (denied: run ended; allowing it later is 409; the tool never runs); a live run's approval can still be allowed")
    func approvalsEndWithTheirRun() async throws {
        let sv = try await TestSupervisor.start("tool-approvals")
        defer { sv.cleanUp() }
        let policy = try writePolicy(sv.directory, name: "approve", extra: """
            [tools]
            approve = ["write_file"]
            approval_timeout = "120s"
            """)
        var body = Self.fixtures
        body["policy"] = .string(policy)
        let s = try await sv.openSession(body)
        // Each run asks in the background and waits for a file before it ends.
        func asking(_ path: String, until flag: String) async throws -> String {
            let args = JSONValue.object(["path": .string(path), "content": "written\n"]).encoded()
            let script = "\(Self.client.joined(separator: " ")) call write_file '\(args)' > /workspace/\(path).answer & "
                + "while [ ! -e /workspace/\(flag) ]; do sleep 0.05; done"
            let r = try await sv.startRun(s, ["argv": ["/bin/sh", "-c", .string(script)], "timeout": 200])
            return try #require(r["id"]?.stringValue)
        }
        func pending() async throws -> [JSONValue] {
            try await sv.request("GET", "/v1/approvals?session=\(s)").json?["approvals"]?.arrayValue ?? []
        }
        func waitingCall(of run: String) async throws -> String? {
            for _ in 0..<600 {
                if let a = try await pending().first(where: { $0["run"]?.stringValue == run }) { return a["call_id"]?.stringValue }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            return nil
        }
        let ending = try await asking("withdrawn.txt", until: "end-first")
        let live = try await asking("allowed.txt", until: "end-second")
        let endingCall = try #require(try await waitingCall(of: ending))
        let liveCall = try #require(try await waitingCall(of: live))

        // The first run ends while its call waits.
        let flag = try await sv.raw("PUT", "/v1/sessions/\(s)/files/end-first", body: [])
        #expect(flag.status == 201)
        let done = try await sv.wait(ending, timeout: 30)
        #expect(done["status"]?.stringValue != "running")
        #expect(await eventually(within: 5) { ((try? await pending()) ?? []).allSatisfy { $0["call_id"]?.stringValue != endingCall } },
                "the finished run's approval is still pending")
        let late = try await sv.request("POST", "/v1/approvals/\(endingCall)", ["decision": "allow", "reason": "too late", "by": "carol"])
        #expect(late.status == 409, "\(late.status) \(late.text)")
        let events = try await sv.events(run: ending)
        let decided = events.first { $0["type"]?.stringValue == "approval.decided" }?["payload"]
        #expect(decided?["levain.decision"]?.stringValue == "deny", "\(events.types)")
        #expect(decided?["levain.reason"]?.stringValue == "run ended")
        #expect(!events.types.contains("tool.started"))
        try await Task.sleep(nanoseconds: 500_000_000)
        let never = try await sv.request("GET", "/v1/sessions/\(s)/files/withdrawn.txt")
        #expect(never.status == 404, "the withdrawn call ran: \(never.status)")

        // The control: the live run's approval is still there, and allowing it runs the tool.
        #expect(try await pending().contains { $0["call_id"]?.stringValue == liveCall })
        let allow = try await sv.request("POST", "/v1/approvals/\(liveCall)", ["decision": "allow", "reason": "fine", "by": "carol"])
        #expect(allow.status == 200, "\(allow.text)")
        #expect(await eventually(within: 10) { (try? await sv.request("GET", "/v1/sessions/\(s)/files/allowed.txt"))?.text == "written\n" })
        _ = try await sv.raw("PUT", "/v1/sessions/\(s)/files/end-second", body: [])
        let second = try await sv.wait(live, timeout: 30)
        #expect(second["status"]?.stringValue == "succeeded", "\(second)")
    }
}

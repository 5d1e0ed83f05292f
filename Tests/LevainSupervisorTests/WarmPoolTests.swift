import Foundation
import LevainJSON
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Warm pools: jails started before the session requests that take them.
@Suite("Warm pools", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct WarmPoolTests {
    static func pool(_ sv: TestSupervisor, _ policy: String = "default") async -> JSONValue? {
        (try? await sv.request("GET", "/v1/health").json)??["warm_pools"]?[policy]
    }

    /// The pid of the harness of `session` (from inside: its PID 1 is the
    /// harness; from outside: the one child whose cgroup names the session).
    static func harness(of session: String, in sv: TestSupervisor) -> Int32? {
        sv.harnessPIDs.first { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? "").contains(session)
        }
    }

    static func sessionOpened(_ sv: TestSupervisor, _ session: String) async throws -> JSONValue? {
        try await sv.events(session: session).first { $0["type"]?.stringValue == "session.opened" }
    }

    @Test("a warm jail goes to one session only; the pool refills; a request that does not fit gets a cold jail")
    func handedOnceAndRefilled() async throws {
        let sv = try await TestSupervisor.start("warm-once", config: "[warm_pool]\ndefault = 1\n")
        defer { sv.cleanUp() }
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 1 })
        let warmFirst = sv.harnessPIDs
        #expect(warmFirst.count == 1)

        let a = try await sv.openSession()
        #expect(try await Self.sessionOpened(sv, a)?["payload"]?["warm"]?.boolValue == true)
        // A's jail is the one that was warm.
        #expect(Self.harness(of: a, in: sv) == warmFirst.first)
        // The pool starts another, a different jail.
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 1 })
        let warmSecond = sv.harnessPIDs.subtracting(warmFirst)
        #expect(warmSecond.count == 1)

        let b = try await sv.openSession()
        #expect(try await Self.sessionOpened(sv, b)?["payload"]?["warm"]?.boolValue == true)
        let jailA = Self.harness(of: a, in: sv), jailB = Self.harness(of: b, in: sv)
        #expect(jailA != nil && jailB != nil && jailA != jailB)
        #expect(jailB == warmSecond.first)

        // Nothing of A is in B: a file A writes, B does not see; A reads it.
        let put = try await sv.raw("PUT", "/v1/sessions/\(a)/files/mine.txt", body: Array("a's\n".utf8))
        #expect(put.status == 201, "\(put.text)")
        let inB = try await sv.startRun(b, ["command": "ls -A /workspace; echo end", "wait": true, "inline_output": 4096])
        #expect(inB["exit_status"]?.intValue == 0, "\(inB)")
        #expect(try await sv.output(inB["id"]!.stringValue!) == "end\n")
        let inA = try await sv.startRun(a, ["command": "cat /workspace/mine.txt", "wait": true])
        #expect(try await sv.output(inA["id"]!.stringValue!) == "a's\n")

        // Binds, limits of its own or a tenant: not what the pool holds.
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 1 })
        let warmThird = try #require(sv.harnessPIDs.subtracting([jailA, jailB].compactMap { $0 }).first)
        let limited = try await sv.openSession(["limits": ["memory": "300M"]])
        #expect(try await Self.sessionOpened(sv, limited)?["payload"]?["warm"] == nil)
        let tenant = try await sv.openSession(["tenant": "acme"])
        #expect(try await Self.sessionOpened(sv, tenant)?["payload"]?["warm"] == nil)
        // They did not touch the pool: its jail is the same one, nothing
        // was discarded or counted as a miss.
        #expect(await Self.pool(sv)?["ready"]?.intValue == 1)
        #expect(await Self.pool(sv)?["taken"]?.intValue == 2)
        #expect(await Self.pool(sv)?["missed"]?.intValue == 0)
        #expect(sv.harnessPIDs.contains(warmThird))

        // The workspace moved beside the other sessions' (where the record
        // says), so the session reopened after a restart finds its files.
        let record = try await sv.request("GET", "/v1/sessions/\(a)").json
        let workspace = try #require(record?["workspace"]?.stringValue)
        #expect(workspace.hasPrefix(sv.state + "/workspaces/"), "\(workspace)")
        #expect(FileManager.default.fileExists(atPath: workspace))
        #expect(sv.stop() == 0)
        try await sv.start()
        #expect(try await sv.request("POST", "/v1/sessions/\(a)/reopen").status == 200)
        let again = try await sv.startRun(a, ["command": "cat /workspace/mine.txt", "wait": true])
        #expect(try await sv.output(again["id"]!.stringValue!) == "a's\n")
    }

    @Test("levain run with LEVAIN_CONNECT takes a warm jail, runs in it and closes the session")
    func remoteRunUsesThePool() async throws {
        let sv = try await TestSupervisor.start("warm-remote", config: "[warm_pool]\ndefault = 1\n")
        defer { sv.cleanUp() }
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 1 })
        var env = ProcessInfo.processInfo.environment
        env["LEVAIN_CONNECT"] = "unix:" + sv.socket
        let run = try runProcess([levainBinary, "run", "--", "/bin/sh", "-c", "echo from-the-pool; exit 3"], environment: env)
        #expect(run.status == 3, "\(run.stderr)")
        #expect(run.stdout == "from-the-pool\n")
        #expect(await Self.pool(sv)?["taken"]?.intValue == 1)
        let list = try await sv.request("GET", "/v1/sessions").json?["sessions"]?.arrayValue ?? []
        let session = try #require(list.first { $0["labels"]?["levain.cli"]?.stringValue == "run" })
        #expect(session["status"]?.stringValue == "closed")
        let id = try #require(session["id"]?.stringValue)
        #expect(try await Self.sessionOpened(sv, id)?["payload"]?["warm"]?.boolValue == true)
    }

    @Test("kill -9 of the supervisor with a full pool leaves no warm jail, cgroup or workspace behind")
    func killNineWithAFullPool() async throws {
        let sv = try await TestSupervisor.start("warm-kill9", config: "[warm_pool]\ndefault = 2\n")
        defer { sv.cleanUp() }
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 2 })
        let jails = sv.harnessPIDs
        #expect(jails.count == 2)
        let pooled = (try? FileManager.default.contentsOfDirectory(atPath: sv.state + "/workspaces/.pool")) ?? []
        #expect(pooled.count == 2, "\(pooled)")
        let ids = pooled.map { $0.hasSuffix(".img") ? String($0.dropLast(4)) : $0 }
        let cgroups = ids.flatMap { Self.cgroupDirectories(named: $0) }
        #expect(!cgroups.isEmpty || !Self.hasCgroups)

        sv.stop(signal: SIGKILL)
        #expect(await eventually(within: 15) { jails.allSatisfy { !RecoveryTests.alive($0) } })
        try await sv.start()
        // The old warm jails' workspaces and cgroups are gone; new ones fill
        // the pool.
        #expect(await eventually(within: 30) { await Self.pool(sv)?["ready"]?.intValue == 2 })
        let now = Set((try? FileManager.default.contentsOfDirectory(atPath: sv.state + "/workspaces/.pool")) ?? [])
        #expect(now.isDisjoint(with: pooled), "\(now) \(pooled)")
        #expect(now.count == 2)
        // The pool fills right as serve starts, while serve narrows its umask
        // to bind the socket: the jails made then start all the same.
        #expect(!sv.serveLog.contains("did not start"), "\(sv.serveLog)")
        for dir in cgroups { #expect(!FileManager.default.fileExists(atPath: dir), "\(dir)") }
        // And the sessions made from the new pool work.
        let s = try await sv.openSession()
        let run = try await sv.startRun(s, ["command": "echo warm", "wait": true])
        #expect(try await sv.output(run["id"]!.stringValue!) == "warm\n")
        // A graceful stop ends the pool too: nothing left in its directory.
        let left = sv.harnessPIDs
        #expect(sv.stop() == 0)
        #expect(await eventually(within: 15) { left.allSatisfy { !RecoveryTests.alive($0) } })
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: sv.state + "/workspaces/.pool")) ?? []).isEmpty)
    }

    static var hasCgroups: Bool { FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory") || FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") }

    /// Directories named `name` in the cgroup tree (a few levels deep).
    static func cgroupDirectories(named name: String) -> [String] {
        var found: [String] = []
        func walk(_ dir: String, _ depth: Int) {
            guard depth < 5, let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for e in entries {
                let path = dir + "/" + e
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { continue }
                if e == name { found.append(path) } else if e.hasPrefix("s-") || e.hasPrefix("r-") { continue } else { walk(path, depth + 1) }
            }
        }
        walk("/sys/fs/cgroup", 0)
        return found
    }
}

import Foundation
import LevainJSON
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An exec that waits (`wait: true`) is told nothing before its end, so its
/// `run.queued` is committed without an fsync of its own and the fsync of
/// `run.finished` makes both durable: one fsync per exec instead of two.
/// A run answered at once (201, then waited for) still costs two.
@Suite("Exec durability: one fsync per waited exec", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct ExecDurabilityTests {
    static func syncedTransactions(_ sv: TestSupervisor) async throws -> Int {
        let health = try await sv.request("GET", "/v1/health").json
        return Int(try #require(health?["log"]?["synced_transactions"]?.intValue))
    }

    @Test("wait:true costs one fsync per exec, wait:false two; both are recorded in full")
    func fsyncsPerExec() async throws {
        let sv = try await TestSupervisor.start("exec-fsyncs")
        defer { sv.cleanUp() }
        let session = try await sv.openSession()
        // Settle: the session's own first writes are behind us.
        _ = try await sv.startRun(session, ["argv": ["/bin/true"], "wait": true])
        let runs = 8

        let beforeWaited = try await Self.syncedTransactions(sv)
        var waitedIDs: [String] = []
        for _ in 0..<runs {
            let run = try await sv.startRun(session, ["argv": ["/bin/true"], "wait": true])
            #expect(run["status"]?.stringValue == "succeeded", "\(run)")
            waitedIDs.append(try #require(run["id"]?.stringValue))
        }
        let waited = try await Self.syncedTransactions(sv) - beforeWaited

        let beforeAnswered = try await Self.syncedTransactions(sv)
        for _ in 0..<runs {
            let run = try await sv.startRun(session, ["argv": ["/bin/true"]])
            let done = try await sv.wait(try #require(run["id"]?.stringValue))
            #expect(done["status"]?.stringValue == "succeeded", "\(done)")
        }
        let answered = try await Self.syncedTransactions(sv) - beforeAnswered

        #expect(waited == runs, "\(waited) fsyncs for \(runs) waited execs")
        #expect(answered == 2 * runs, "\(answered) fsyncs for \(runs) answered execs")
        // Nothing is missing from the record of the waited runs.
        for id in waitedIDs {
            let types = try await sv.events(run: id).types
            #expect(types == ["run.queued", "run.started", "process.exited", "run.finished"], "\(id): \(types)")
        }
    }

    @Test("kill -9 of the supervisor during a wait:true run: the restart finds the run and records run.interrupted")
    func killNineDuringWaitedRun() async throws {
        let sv = try await TestSupervisor.start("exec-kill9")
        defer { sv.cleanUp() }
        let session = try await sv.openSession()
        let marker = "waited-\(UInt32.random(in: 0..<UInt32.max))"
        let pending = Task {
            try? await sv.startRun(session, ["command": .string("exec python3 -c 'import time; time.sleep(1000)' \(marker)"),
                                             "wait": true, "retry": "fail"])
        }
        #expect(await eventually(within: 60) { processes(containing: marker).count == 1 })
        sv.stop(signal: SIGKILL)
        _ = await pending.value
        #expect(await eventually(within: 15) { processes(containing: marker).isEmpty })

        try await sv.start()
        let list = try await sv.request("GET", "/v1/runs?session=\(session)").json
        let runs = list?["runs"]?.arrayValue ?? []
        #expect(runs.count == 1, "\(String(describing: list))")
        let run = try #require(runs.first)
        #expect(run["status"]?.stringValue == "interrupted", "\(run)")
        let types = try await sv.events(run: try #require(run["id"]?.stringValue)).types
        #expect(types.first == "run.queued" && types.contains("run.interrupted"), "\(types)")
        let verify = try runProcess([levainBinary, "log", "verify", "--state", sv.state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }
}

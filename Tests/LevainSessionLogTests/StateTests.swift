import Foundation
import LevainJSON
import Testing
@testable import LevainSessionLog

@Suite("Sessions and runs")
struct StateTests {
    @Test func sessionsRoundTripAndFilter() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let created = try #require(LogTimestamp(rfc3339: "2020-01-01T00:00:00.000001Z"))
            let full = SessionRecord(
                id: "s1", tenant: "acme", kind: .oneShot, policy: "policies/default.toml",
                labels: ["team": "infra", "ticket": "LV-12"], status: .open, workspace: "/var/lib/levain/ws/s1",
                limits: ["memory": "512M", "pids": 64, "cpu": 1.5], createdAt: created, supervisor: "sup-A")
            try await log.insertSession(full)
            try await log.insertSession(SessionRecord(id: "s2", tenant: "other", policy: "default"))
            try await log.insertSession(SessionRecord(id: "s3", tenant: "acme", policy: "default"))
            #expect(try log.session(id: "s1") == full)
            #expect(try log.session(id: "nope") == nil)
            #expect(try log.sessions().map(\.id) == ["s1", "s2", "s3"])
            #expect(try log.sessions(tenant: "acme").map(\.id) == ["s1", "s3"])

            let closed = LogTimestamp.now()
            try await log.updateSession(id: "s3", status: .closed, closedAt: closed)
            #expect(try log.sessions(tenant: "acme", status: .open).map(\.id) == ["s1"])
            let s3 = try #require(try log.session(id: "s3"))
            #expect(s3.status == .closed && s3.closedAt == closed)
            // nil leaves a column alone.
            try await log.updateSession(id: "s1", supervisor: "sup-B")
            #expect(try log.session(id: "s1")?.status == .open)
            #expect(try log.session(id: "s1")?.supervisor == "sup-B")

            await expectLogError(.duplicateID) { try await log.insertSession(SessionRecord(id: "s1", policy: "x")) }
            await expectLogError(.unknownSession) { try await log.updateSession(id: "ghost", status: .failed) }
            try log.close()
        }
    }

    @Test func runsRoundTripUpdateAndFilter() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            let run = RunRecord(id: "r1", sessionID: "s", tenant: "acme",
                                request: ["argv": ["/bin/sh", "-c", "exit 3"], "env": ["A": "1"], "timeout": 30],
                                idempotencyKey: "k1", retryPolicy: .retry)
            try await log.insertRun(run)
            #expect(try log.run(id: "r1") == run)

            let started = LogTimestamp.now()
            try await log.updateRun(id: "r1", status: .running, startedAt: started)
            let finished = LogTimestamp.now()
            try await log.updateRun(id: "r1", status: .failed, exitCode: 3, finishedAt: finished)
            var expected = run
            expected.status = .failed
            expected.exitCode = 3
            expected.startedAt = started
            expected.finishedAt = finished
            #expect(try log.run(id: "r1") == expected)
            try await log.updateRun(id: "r1", status: .queued, attempt: 2)
            #expect(try log.run(id: "r1")?.attempt == 2)
            #expect(try log.run(id: "r1")?.exitCode == 3)

            try await log.insertRun(RunRecord(id: "r2", sessionID: "s", status: .succeeded, request: [:]))
            #expect(try log.runs(session: "s").map(\.id) == ["r1", "r2"])
            #expect(try log.runs(status: .succeeded).map(\.id) == ["r2"])

            await expectLogError(.unknownRun) { try await log.updateRun(id: "ghost", status: .failed) }
            await expectLogError(.unknownSession) {
                try await log.insertRun(RunRecord(id: "r3", sessionID: "ghost", request: [:]))
            }
            await expectLogError(.duplicateID) { try await log.insertRun(RunRecord(id: "r2", sessionID: "s", request: [:])) }
            await expectLogError(.invalidArgument) {
                try await log.insertRun(RunRecord(id: "r4", sessionID: "s", request: [:], attempt: 0))
            }
            try log.close()
        }
    }

    @Test func idempotencyKeysAreUniquePerSession() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            try await log.makeSession("t")
            try await log.insertRun(RunRecord(id: "r1", sessionID: "s", request: ["n": 1], idempotencyKey: "key"))
            let error = await expectLogError(.duplicateIdempotencyKey) {
                try await log.insertRun(RunRecord(id: "r2", sessionID: "s", request: ["n": 2], idempotencyKey: "key"))
            }
            #expect(error?.existingRunID == "r1")
            #expect(try log.run(session: "s", idempotencyKey: "key")?.id == "r1")
            #expect(try log.run(id: "r2") == nil)
            // Same key elsewhere, and any number of runs without a key.
            try await log.insertRun(RunRecord(id: "r3", sessionID: "t", request: [:], idempotencyKey: "key"))
            try await log.insertRun(RunRecord(id: "r4", sessionID: "s", request: [:]))
            try await log.insertRun(RunRecord(id: "r5", sessionID: "s", request: [:]))
            #expect(try log.runs(session: "s").map(\.id).sorted() == ["r1", "r4", "r5"])

            // Racing requests with one key: exactly one wins.
            let outcomes = try await withThrowingTaskGroup(of: String?.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        do {
                            try await log.insertRun(RunRecord(id: "race-\(i)", sessionID: "s", request: [:],
                                                              idempotencyKey: "race"))
                            return "race-\(i)"
                        } catch let error as SessionLogError where error.code == .duplicateIdempotencyKey {
                            return nil
                        }
                    }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(outcomes.count == 1)
            #expect(try log.run(session: "s", idempotencyKey: "race")?.id == outcomes.first)
            try log.close()
        }
    }

    @Test func inFlightRunsAreQueuedStartingOrRunning() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            for status in RunStatus.allCases {
                try await log.insertRun(RunRecord(id: "run-\(status.rawValue)", sessionID: "s", status: status,
                                                  request: [:]))
            }
            let inFlight = try log.inFlightRuns().map(\.status)
            #expect(Set(inFlight) == [.queued, .starting, .running])
            #expect(inFlight.count == 3)
            try await log.updateRun(id: "run-running", status: .interrupted)
            #expect(Set(try log.inFlightRuns().map(\.id)) == ["run-queued", "run-starting"])
            #expect(RunStatus.timedOut.rawValue == "timed_out")
            try log.close()
        }
    }

    /// A state change and its event commit together or not at all.
    @Test func recordIsAtomic() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            let queued = try await log.record(
                [NewEvent(sessionID: "s", runID: "r1", type: "run.queued", payload: ["argv": ["true"]])],
                and: [.insertRun(RunRecord(id: "r1", sessionID: "s", request: ["argv": ["true"]]))])
            #expect(queued.map(\.seq) == [1])
            #expect(try log.run(id: "r1")?.status == .queued)

            // The change fails: the event is not written either.
            await expectLogError(.unknownRun) {
                try await log.record(
                    [NewEvent(sessionID: "s", runID: "nope", type: "run.finished", payload: ["exit_code": 0])],
                    and: [.updateRun(RunUpdate(id: "nope", status: .succeeded, exitCode: 0))])
            }
            // The event fails (unknown session): the change is not applied.
            await expectLogError(.unknownSession) {
                try await log.record(
                    [NewEvent(sessionID: "ghost", runID: "r1", type: "run.finished")],
                    and: [.updateRun(RunUpdate(id: "r1", status: .succeeded, exitCode: 0))])
            }
            #expect(try log.run(id: "r1")?.status == .queued)
            #expect(try log.events(session: "s").count == 1)

            let finished = try await log.record(
                [NewEvent(sessionID: "s", runID: "r1", type: "run.finished", payload: ["exit_code": 0])],
                and: [.updateRun(RunUpdate(id: "r1", status: .succeeded, exitCode: 0, finishedAt: .now())),
                      .updateSession(SessionUpdate(id: "s", status: .closed, closedAt: .now()))])
            #expect(finished.map(\.seq) == [2])
            #expect(try log.run(id: "r1")?.status == .succeeded)
            #expect(try log.session(id: "s")?.status == .closed)
            #expect(try log.verify().ok)
            try log.close()
        }
    }

    @Test func malformedStateRowsAreReportedNotCrashed() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            try log.executeRawSQL("UPDATE sessions SET status = 'weird' WHERE id = 's'")
            await expectLogError(.malformedRow) { _ = try log.session(id: "s") }
            try log.close()
        }
    }
}

@Suite("Export")
struct ExportTests {
    @Test func jsonLinesCarryEveryColumnAndReverify() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("a", tenant: "acme")
            try await log.makeSession("b")
            var appended: [LoggedEvent] = []
            for i in 0..<6 {
                appended.append(try await log.append(NewEvent(
                    sessionID: i % 2 == 0 ? "a" : "b", runID: i == 3 ? nil : "run-\(i % 2)",
                    tenant: i % 2 == 0 ? "acme" : "", type: "step",
                    payload: ["i": JSONValue(i), "text": "line\nbreak \"quoted\" é"])))
            }
            var lines: [String] = []
            try log.exportJSONL { lines.append($0) }
            #expect(lines.count == 6)
            for (line, event) in zip(lines, appended) {
                #expect(!line.contains("\n"))
                let object = try JSONValue.parseObject(line)
                #expect(Set(object.keys) == ["id", "session_id", "seq", "run_id", "tenant", "time", "type",
                                             "payload", "prev_hash", "hash"])
                #expect(object["id"]?.intValue == event.id)
                #expect(object["run_id"] == (event.runID.map { .string($0) } ?? .null))
                #expect(object["payload"]?.stringValue == event.payloadJSON)
                // The line alone is enough to recompute the hash.
                let recomputed = EventHash.compute(
                    sessionID: try #require(object["session_id"]?.stringValue), seq: try #require(object["seq"]?.intValue),
                    runID: object["run_id"]?.stringValue, tenant: try #require(object["tenant"]?.stringValue),
                    time: try #require(object["time"]?.stringValue), type: try #require(object["type"]?.stringValue),
                    payload: try #require(object["payload"]?.stringValue),
                    prevHash: try #require(object["prev_hash"]?.stringValue))
                #expect(recomputed == object["hash"]?.stringValue)
            }
            // Foundation agrees the lines are JSON.
            for line in lines {
                #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) is [String: Any])
            }
            var onlyB: [String] = []
            try log.exportJSONL(session: "b") { onlyB.append($0) }
            #expect(onlyB.count == 3)
            #expect(try onlyB.map { try JSONValue.parseObject($0)["seq"]?.intValue } == [1, 2, 3])
            try log.close()
        }
    }
}

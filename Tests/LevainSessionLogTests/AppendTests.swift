import Foundation
import LevainJSON
import Testing
@testable import LevainSessionLog

@Suite("Appending and the hash chain")
struct AppendTests {
    @Test func firstEventsOfASession() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s1", tenant: "acme")
            let a = try await log.append(NewEvent(sessionID: "s1", runID: "r1", tenant: "acme", type: "run.queued",
                                                  payload: ["argv": ["/bin/true"]]))
            let b = try await log.append(NewEvent(sessionID: "s1", runID: "r1", tenant: "acme", type: "run.started"))
            #expect(a.seq == 1 && b.seq == 2)
            #expect(a.prevHash == EventHash.genesis)
            #expect(b.prevHash == a.hash)
            #expect(b.id > a.id)
            #expect(a.payloadJSON == #"{"argv":["/bin/true"]}"#)
            #expect(try a.payload == ["argv": ["/bin/true"]])
            #expect(b.payloadJSON == "{}")
            #expect(try log.lastEventID() == b.id)
            #expect(try log.lastEvent(session: "s1") == b)
            #expect(try log.events(run: "r1") == [a, b])
            #expect(try log.events(session: "s1", afterSeq: 1) == [b])
            #expect(try log.events(session: "s1", limit: 1) == [a])
            #expect(try log.events(afterID: a.id) == [b])
            #expect(try log.events(afterID: 0, limit: 1) == [a])
            #expect(try log.verify().ok)
            try log.close()
        }
    }

    @Test func writerConnectionIsDurable() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            #expect(try log.writerValue("PRAGMA synchronous") == "2")  // FULL
            #expect(try log.writerValue("PRAGMA journal_mode") == "wal")
            #expect(try log.writerValue("PRAGMA foreign_keys") == "1")
            #expect(try log.writerValue("PRAGMA busy_timeout") == "5000")
            #expect(try log.writerValue("PRAGMA wal_autocheckpoint") == "4000")
            try log.close()
        }
    }

    /// A `.written` commit is in the WAL for every reader without an fsync
    /// of its own; the next `.durable` commit fsyncs (and so covers it).
    @Test func writtenCommitsAreReadAtOnceAndSyncedByTheNextDurableOne() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            let before = log.statistics
            let first = try await log.record([NewEvent(sessionID: "s", type: "step", payload: ["i": 1])], and: [],
                                             durability: .written)
            #expect(log.statistics.transactions == before.transactions + 1)
            #expect(log.statistics.syncedTransactions == before.syncedTransactions)
            // The writer went back to FULL when its queue emptied: anything
            // else written through the connection is fsynced.
            #expect(try log.writerValue("PRAGMA synchronous") == "2")
            // Another connection (another process would too) reads it.
            let reader = try SessionLog(path: path, readOnly: true)
            #expect(try reader.events(session: "s").map(\.id) == [first[0].id])
            try await log.append(NewEvent(sessionID: "s", type: "step", payload: ["i": 2]))
            #expect(try log.writerValue("PRAGMA synchronous") == "2")
            #expect(log.statistics.syncedTransactions == before.syncedTransactions + 1)
            #expect(try log.verify().ok)
            try reader.close()
            try log.close()
        }
    }

    /// A batch holding one `.durable` request is fsynced as a whole: the
    /// durable request queued last is in the last batch, which must have
    /// run with synchronous = FULL.
    @Test func aBatchWithOneDurableRequestIsSynced() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            let before = log.statistics
            let pending = (0..<63).map { i in
                log.enqueue([NewEvent(sessionID: "s", type: "step", payload: ["i": JSONValue(i)])], and: [], durability: .written)
            }
            try await log.append(NewEvent(sessionID: "s", type: "step", payload: ["i": 63]))
            for p in pending { _ = try await p.value() }
            #expect(try log.writerValue("PRAGMA synchronous") == "2")
            let after = log.statistics
            #expect(after.events == before.events + 64)
            #expect(after.syncedTransactions >= before.syncedTransactions + 1)
            #expect(try log.events(session: "s").count == 64)
            try log.close()
        }
    }

    @Test func batchAppendKeepsOrderAcrossSessions() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("a")
            try await log.makeSession("b")
            let events = try await log.append((0..<10).map { i in
                NewEvent(sessionID: i % 2 == 0 ? "a" : "b", type: "step", payload: ["i": JSONValue(i)])
            })
            #expect(events.map(\.seq) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
            #expect(try log.events(session: "a").map { try $0.payload["i"] } == [0, 2, 4, 6, 8])
            #expect(log.statistics.transactions == 3)  // two sessions, one batch of events
            #expect(try log.verify().ok)
            try log.close()
        }
    }

    /// 50 tasks × 100 events on 10 sessions: every chain valid, seq 1...500
    /// with no gap, and each task's events in the order it appended them.
    @Test func concurrentAppendersKeepEveryChainValid() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let sessions = 10, tasks = 50, perTask = 100
            for s in 0..<sessions { try await log.makeSession("s\(s)") }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        for i in 0..<perTask {
                            try await log.append(NewEvent(sessionID: "s\(t % sessions)", type: "tick",
                                                          payload: ["task": JSONValue(t), "i": JSONValue(i)]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let report = try log.verify()
            #expect(report.ok, "\(report)")
            #expect(report.eventsChecked == tasks * perTask)
            #expect(report.sessionsChecked == sessions)
            for s in 0..<sessions {
                let events = try log.events(session: "s\(s)")
                #expect(events.map(\.seq) == Array(1...Int64(tasks / sessions * perTask)))
                var lastIndex: [Int64: Int64] = [:]
                for event in events {
                    let payload = try event.payload
                    let task = try #require(payload["task"]?.intValue)
                    let i = try #require(payload["i"]?.intValue)
                    #expect(i == (lastIndex[task] ?? -1) + 1, "task \(task) out of order in s\(s)")
                    lastIndex[task] = i
                }
            }
            let stats = log.statistics
            #expect(stats.events == tasks * perTask)
            #expect(stats.transactions < stats.events)
            try log.close()
        }
    }

    @Test func groupCommitBatchesConcurrentAppends() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            for s in 0..<64 { try await log.makeSession("s\(s)") }
            let before = log.statistics
            try await withThrowingTaskGroup(of: Void.self) { group in
                for s in 0..<64 {
                    group.addTask {
                        for i in 0..<20 {
                            try await log.append(NewEvent(sessionID: "s\(s)", type: "tick", payload: ["i": JSONValue(i)]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let after = log.statistics
            let transactions = after.transactions - before.transactions
            #expect(after.events - before.events == 64 * 20)
            // Each transaction is one fsync; batching must show clearly.
            #expect(transactions * 4 < 64 * 20, "\(transactions) transactions for \(64 * 20) events")
            #expect(after.largestTransaction > 1)
            try log.close()
        }
    }

    /// Returning from append means another connection (another process)
    /// sees the event.
    @Test func appendIsVisibleToAnotherOpenerWhenItReturns() async throws {
        try await withTemporaryLogPath { path in
            let writer = try SessionLog(path: path)
            try await writer.makeSession("s")
            let reader = try SessionLog(path: path, readOnly: true)
            for i in 0..<20 {
                let event = try await writer.append(NewEvent(sessionID: "s", type: "tick", payload: ["i": JSONValue(i)]))
                #expect(try reader.lastEvent(session: "s") == event)
                let fresh = try SessionLog(path: path, readOnly: true)
                #expect(try fresh.events(afterID: event.id - 1) == [event])
                try fresh.close()
            }
            try reader.close()
            try writer.close()
            // And after the writer is gone.
            let again = try SessionLog(path: path, readOnly: true)
            #expect(try again.events(session: "s").count == 20)
            #expect(try again.verify().ok)
            try again.close()
        }
    }

    /// Two SessionLog instances are two SQLite connections with their own
    /// writer loops: what `levain serve` and `levain run` are to each other.
    @Test func twoWritersOnOneFileKeepBothChainsValid() async throws {
        try await withTemporaryLogPath { path in
            let first = try SessionLog(path: path)
            let second = try SessionLog(path: path)
            for s in 0..<4 {
                try await first.makeSession("first-\(s)")
                try await second.makeSession("second-\(s)", kind: .oneShot)
            }
            try await first.makeSession("shared")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (name, log) in [("first", first), ("second", second)] {
                    for s in 0..<4 {
                        group.addTask {
                            for i in 0..<50 {
                                try await log.append(NewEvent(sessionID: "\(name)-\(s)", type: "tick",
                                                              payload: ["i": JSONValue(i)]))
                            }
                        }
                    }
                    // Both also extend one session: heads are read inside
                    // each IMMEDIATE transaction, so this is safe too.
                    group.addTask {
                        for i in 0..<50 {
                            try await log.append(NewEvent(sessionID: "shared", type: name, payload: ["i": JSONValue(i)]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            for log in [first, second] {
                let report = try log.verify()
                #expect(report.ok, "\(report)")
                #expect(report.eventsChecked == 8 * 50 + 100)
            }
            #expect(try first.events(session: "shared").map(\.seq) == Array(1...100))
            #expect(try second.events(session: "second-3").map(\.seq) == Array(1...50))
            try first.close()
            try second.close()
        }
    }

    /// The writer caches chain heads between its transactions; a write by
    /// another connection must make it read them again.
    @Test func cachedHeadsYieldToAnotherWriter() async throws {
        try await withTemporaryLogPath { path in
            let first = try SessionLog(path: path)
            let second = try SessionLog(path: path)
            try await first.makeSession("s")
            var expected: [Int64] = []
            for round in 0..<5 {
                let a = try await first.append(NewEvent(sessionID: "s", type: "first", payload: ["round": JSONValue(round)]))
                let b = try await second.append(NewEvent(sessionID: "s", type: "second", payload: ["round": JSONValue(round)]))
                #expect(b.prevHash == a.hash)
                expected += [a.seq, b.seq]
            }
            #expect(expected == Array(1...10))
            #expect(try first.verify().ok)
            try first.close()
            try second.close()
        }
    }

    @Test func unknownSessionFailsOnlyThatRequest() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("real")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        if i % 5 == 0 {
                            await expectLogError(.unknownSession) {
                                try await log.append(NewEvent(sessionID: "ghost-\(i)", type: "tick"))
                            }
                        } else {
                            try await log.append(NewEvent(sessionID: "real", type: "tick"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try log.events(session: "real").map(\.seq) == Array(1...16))
            #expect(try log.verify().ok)
            try log.close()
        }
    }

    @Test func invalidArgumentsAreRejectedBeforeWriting() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            await expectLogError(.invalidArgument) { try await log.append(NewEvent(sessionID: "", type: "x")) }
            await expectLogError(.invalidArgument) { try await log.append(NewEvent(sessionID: "s", type: "")) }
            await expectLogError(.invalidArgument) {
                try await log.append(NewEvent(sessionID: "s", runID: "a\u{0}b", type: "x"))
            }
            #expect(try log.events(session: "s").isEmpty)
            try log.close()
        }
    }

    @Test func closedAndReadOnlyLogsRefuseWrites() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("s")
            let reader = try SessionLog(path: path, readOnly: true)
            await expectLogError(.readOnly) { try await reader.append(NewEvent(sessionID: "s", type: "x")) }
            await expectLogError(.readOnly) { try reader.checkpoint() }
            try log.close()
            await expectLogError(.closed) { try await log.append(NewEvent(sessionID: "s", type: "x")) }
            #expect(try reader.session(id: "s") != nil)
            try reader.close()
        }
    }

    @Test func readOnlyOpenOfAMissingFileFailsClearlyAndCreatesNothing() async throws {
        try await withTemporaryLogPath { path in
            let error = await expectLogError(.logNotFound) { _ = try SessionLog(path: path, readOnly: true) }
            #expect(error?.description.contains(path) == true)
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        }
    }

    @Test func readOnlyOpenOfSomethingElseFails() async throws {
        try await withTemporaryLogPath { path in
            // An empty file is an empty SQLite database: no schema.
            _ = FileManager.default.createFile(atPath: path, contents: Data())
            await expectLogError(.notASessionLog) { _ = try SessionLog(path: path, readOnly: true) }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)).isEmpty)  // not migrated
            // A text file is not a database at all.
            try Data(String(repeating: "not a database\n", count: 300).utf8).write(to: URL(fileURLWithPath: path))
            await expectLogError(.corrupt) { _ = try SessionLog(path: path, readOnly: true) }
        }
    }

    @Test func writerCreatesMissingDirectoriesAndReopens() async throws {
        try await withTemporaryLogPath { path in
            let nested = path.replacingOccurrences(of: "log.sqlite", with: "a/b/log.sqlite")
            let log = try SessionLog(path: nested)
            try await log.makeSession("s")
            try await log.append(NewEvent(sessionID: "s", type: "x"))
            for file in [nested, nested + "-wal", nested + "-shm"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: file)
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(file)")
            }
            let directory = try FileManager.default.attributesOfItem(
                atPath: nested.replacingOccurrences(of: "/log.sqlite", with: ""))
            #expect((directory[.posixPermissions] as? NSNumber)?.intValue == 0o700)
            try log.close()
            // Reopening as a writer migrates nothing and continues the chain.
            let again = try SessionLog(path: nested)
            #expect(try await again.append(NewEvent(sessionID: "s", type: "y")).seq == 2)
            #expect(try again.verify().ok)
            try again.close()
        }
    }
}

import Foundation
import LevainJSON
import Testing
@testable import LevainSessionLog

/// The attacker's moves, and what verify() says about each.
@Suite("Tamper evidence")
struct TamperTests {
    /// Three sessions of five events; the marker is in session "b", seq 3.
    static let marker = "TAMPER-MARKER-7f3a9c51"

    func populate(_ log: SessionLog) async throws -> [String: [LoggedEvent]] {
        var all: [String: [LoggedEvent]] = [:]
        for session in ["a", "b", "c"] {
            try await log.makeSession(session)
            for i in 1...5 {
                let note = session == "b" && i == 3 ? Self.marker : "ordinary note \(i)"
                let event = try await log.append(NewEvent(sessionID: session, runID: "\(session)-run", type: "tool.finished",
                                                          payload: ["i": JSONValue(i), "note": .string(note)]))
                all[session, default: []].append(event)
            }
        }
        #expect(try log.verify().ok)
        return all
    }

    func onlyProblem(_ report: VerifyReport, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> VerifyReport.Problem
    {
        #expect(!report.ok, sourceLocation: sourceLocation)
        #expect(report.problems.count == 1, "\(report)", sourceLocation: sourceLocation)
        return try #require(report.problems.first, sourceLocation: sourceLocation)
    }

    @Test func payloadChangedThroughSQL() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            let target = events["b"]![2]
            try log.executeRawSQL("""
                UPDATE events SET payload = '{"i":3,"note":"nothing to see"}' WHERE id = \(target.id)
                """)
            let problem = try onlyProblem(try log.verify())
            #expect(problem.sessionID == "b" && problem.seq == 3 && problem.eventID == target.id)
            guard case .hashMismatch(let stored, _) = problem.kind else {
                Issue.record("expected a hash mismatch, got \(problem)")
                return
            }
            #expect(stored == target.hash)
            #expect(try log.verify(session: "a").ok)
            #expect(!(try log.verify(session: "b").ok))
            try log.close()
        }
    }

    @Test func rehashingOneEventBreaksTheNextLink() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            let target = events["c"]![1]
            // A smarter attacker recomputes the event's own hash...
            let forged = EventHash.compute(sessionID: "c", seq: 2, runID: target.runID, tenant: "",
                                           time: target.time, type: target.type, payload: "{}", prevHash: target.prevHash)
            try log.executeRawSQL("UPDATE events SET payload = '{}', hash = '\(forged)' WHERE id = \(target.id)")
            // ...and the next event's prev_hash no longer matches.
            let problem = try onlyProblem(try log.verify())
            #expect(problem.sessionID == "c" && problem.seq == 3)
            #expect(problem.kind == .prevHashMismatch(expected: forged, found: target.hash))
            try log.close()
        }
    }

    @Test func deletedEventIsAGap() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            try log.executeRawSQL("DELETE FROM events WHERE id = \(events["a"]![1].id)")
            let problem = try onlyProblem(try log.verify())
            #expect(problem.sessionID == "a" && problem.seq == 3 && problem.eventID == events["a"]![2].id)
            #expect(problem.kind == .seqGap(expected: 2, found: 3))
            // Deleting the first event: seq 1 is missing.
            try log.executeRawSQL("DELETE FROM events WHERE id = \(events["c"]![0].id)")
            let report = try log.verify()
            #expect(report.problems.map(\.sessionID) == ["a", "c"])
            #expect(report.problems.last?.kind == .seqGap(expected: 1, found: 2))
            try log.close()
        }
    }

    @Test func reorderedEventsAreDetected() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            // Swap seq 2 and 3 of session "b".
            let (two, three) = (events["b"]![1].id, events["b"]![2].id)
            try log.executeRawSQL("""
                UPDATE events SET seq = -1 WHERE id = \(two);
                UPDATE events SET seq = 2 WHERE id = \(three);
                UPDATE events SET seq = 3 WHERE id = \(two);
                """)
            var problem = try onlyProblem(try log.verify())
            #expect(problem.sessionID == "b" && problem.seq == 2 && problem.eventID == three)
            if case .hashMismatch = problem.kind {} else { Issue.record("expected a hash mismatch, got \(problem)") }

            // Swap them back but exchange the two rows' ids (global order).
            try log.executeRawSQL("""
                UPDATE events SET seq = -1 WHERE id = \(two);
                UPDATE events SET seq = 3 WHERE id = \(three);
                UPDATE events SET seq = 2 WHERE id = \(two);
                """)
            #expect(try log.verify().ok)
            try log.executeRawSQL("""
                UPDATE events SET id = -1 WHERE id = \(two);
                UPDATE events SET id = \(two) WHERE id = \(three);
                UPDATE events SET id = \(three) WHERE id = -1;
                """)
            problem = try onlyProblem(try log.verify())
            #expect(problem.sessionID == "b" && problem.seq == 3 && problem.kind == .outOfOrder(previousID: three))
            try log.close()
        }
    }

    @Test func malformedHashIsReported() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            try log.executeRawSQL("UPDATE events SET hash = upper(hash) WHERE id = \(events["a"]![4].id)")
            let problem = try onlyProblem(try log.verify())
            #expect(problem.kind == .malformed("hash is not 64 lowercase hex digits"))
            // The writer refuses to extend a chain whose head it cannot read.
            await expectLogError(.corrupt) { try await log.append(NewEvent(sessionID: "a", type: "x")) }
            #expect(try await log.append(NewEvent(sessionID: "b", type: "x")).seq == 6)
            try log.close()
        }
    }

    /// The attacker edits the file itself, not through SQLite: one byte of
    /// a payload, found by its text in the closed database file.
    @Test func byteFlippedInTheDatabaseFile() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            let events = try await populate(log)
            let target = events["b"]![2]
            try log.close()
            let walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            #expect(walSize == 0, "the WAL should have been checkpointed on close")

            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            let needle = Data(Self.marker.utf8)
            var found: [Int] = []
            var from = bytes.startIndex
            while let range = bytes.range(of: needle, in: from..<bytes.endIndex) {
                found.append(range.lowerBound)
                from = range.upperBound
            }
            #expect(found.count == 1, "marker found \(found.count) times")
            let offset = try #require(found.first) + 7  // the "M" of "MARKER"
            #expect(bytes[offset] == UInt8(ascii: "M"))
            bytes[offset] = UInt8(ascii: "N")
            try bytes.write(to: URL(fileURLWithPath: path))

            let reader = try SessionLog(path: path, readOnly: true)
            let report = try reader.verify()
            let problem = try onlyProblem(report)
            #expect(problem.sessionID == "b" && problem.seq == 3 && problem.eventID == target.id)
            if case .hashMismatch = problem.kind {} else { Issue.record("expected a hash mismatch, got \(problem)") }
            #expect(report.description.contains("session b seq 3 (event id \(target.id))"))
            #expect(try reader.events(session: "b")[2].payloadJSON.contains("TAMPER-NARKER"))
            try reader.close()
        }
    }

    /// When the damage is where SQLite itself notices (a b-tree page
    /// header), verify() throws `.corrupt` instead of reporting events.
    @Test func corruptionSQLiteNoticesIsAThrownError() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            _ = try await populate(log)
            let root = try #require(Int(try log.writerValue("SELECT rootpage FROM sqlite_master WHERE name = 'events'") ?? ""))
            let pageSize = try #require(Int(try log.writerValue("PRAGMA page_size") ?? ""))
            try log.close()

            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            let header = (root - 1) * pageSize  // page 1 has a 100-byte file header; root > 1 here
            #expect(root > 1 && [0x05, 0x0D].contains(bytes[header]))  // a b-tree page of a table
            bytes[header] = 0x42  // not a page type
            try bytes.write(to: URL(fileURLWithPath: path))

            let reader = try SessionLog(path: path, readOnly: true)
            let error = await expectLogError(.corrupt) { _ = try reader.verify() }
            #expect(error?.description.contains("corrupt") == true)
            try? reader.close()
        }
    }
}

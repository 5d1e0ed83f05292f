import Foundation
import Testing
@testable import LevainSessionLog

@Suite("Direct writer (one-shot runs)")
struct DirectWriterTests {
    @Test("writes the same chain as the group committer: the log verifies, and either can extend the other's session")
    func sameChain() async throws {
        try await withTemporaryLogPath { path in
            // The schema first (the direct writer refuses a file without it).
            await expectLogError(.logNotFound) { _ = try DirectWriter(path: path) }
            try SessionLog(path: path, singleConnection: true).close()

            let writer = try DirectWriter(path: path)
            let session = SessionRecord(id: "s-0a0a0a0a0a0a", kind: .oneShot, policy: "default")
            let run = RunRecord(id: "r-0b0b0b0b0b0b", sessionID: session.id, status: .running, request: ["argv": ["true"]])
            try writer.record([
                NewEvent(sessionID: session.id, type: "session.opened", payload: ["kind": "one-shot"]),
                NewEvent(sessionID: session.id, runID: run.id, type: "run.queued", payload: ["argv": ["true"]]),
            ], and: [.insertSession(session), .insertRun(run)])
            try writer.record([NewEvent(sessionID: session.id, runID: run.id, type: "run.finished", payload: ["exit_status": 0])],
                              and: [.updateRun(RunUpdate(id: run.id, status: .succeeded, exitCode: 0))])
            writer.close()

            // GRDB's path continues the same chain.
            let log = try SessionLog(path: path)
            try await log.append(NewEvent(sessionID: session.id, type: "session.closed"))
            let events = try log.events(session: session.id)
            #expect(events.map(\.seq) == [1, 2, 3, 4])
            #expect(events.map(\.type) == ["session.opened", "run.queued", "run.finished", "session.closed"])
            #expect(events[0].prevHash == EventHash.genesis)
            for i in 1..<events.count { #expect(events[i].prevHash == events[i - 1].hash) }
            #expect(try log.run(id: run.id)?.status == .succeeded)
            #expect(try log.verify().ok)
            try log.close()

            // And the direct writer continues GRDB's.
            let again = try DirectWriter(path: path)
            try again.record([NewEvent(sessionID: session.id, type: "note", payload: [:])], and: [])
            again.close()
            let reread = try SessionLog(path: path, readOnly: true)
            #expect(try reread.events(session: session.id).last?.seq == 5)
            #expect(try reread.verify().ok)
        }
    }

    @Test("a failed change rolls the whole record back")
    func rollback() async throws {
        try await withTemporaryLogPath { path in
            try SessionLog(path: path, singleConnection: true).close()
            let writer = try DirectWriter(path: path)
            // An update of a run that does not exist touches no row: nothing is written.
            #expect(throws: SessionLogError.self) {
                try writer.record([NewEvent(sessionID: "s-0c0c0c0c0c0c", type: "x")],
                                  and: [.insertSession(SessionRecord(id: "s-0c0c0c0c0c0c", policy: "default")),
                                        .updateRun(RunUpdate(id: "r-0d0d0d0d0d0d", status: .failed))])
            }
            writer.close()
            let log = try SessionLog(path: path, readOnly: true)
            #expect(try log.session(id: "s-0c0c0c0c0c0c") == nil)
            #expect(try log.events(afterID: 0).isEmpty)
        }
    }
}

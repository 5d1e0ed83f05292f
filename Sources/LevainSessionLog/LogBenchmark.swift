#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import LevainClock
import LevainJSON

/// `levain log bench`: durable appends per second through group commit.
public enum LogBenchmark {
    /// Opens (creating if needed) the log at `path`, creates one session per
    /// writer, then runs `writers` concurrent tasks that each append
    /// `eventsPerWriter` events one at a time, each `await`ed (each append is
    /// durable before the writer's next one). Returns the events appended,
    /// the wall time of the appends, and the write transactions they took.
    /// Events go to new sessions (`bench-<time>-<n>`); nothing else in the
    /// file is touched.
    ///
    /// `warmUpEventsPerWriter` events per writer are appended first, untimed,
    /// the same way: on a fresh file they grow the WAL to its working size
    /// (a long-running log overwrites its WAL; a fresh one extends it, and
    /// each fdatasync then also commits file-size metadata).
    public static func durableAppends(path: String, writers: Int, eventsPerWriter: Int,
                                      warmUpEventsPerWriter: Int = 0) async throws
        -> (events: Int, seconds: Double, transactions: Int)
    {
        precondition(writers > 0 && eventsPerWriter > 0 && warmUpEventsPerWriter >= 0)
        let log = try SessionLog(path: path)
        defer { try? log.close() }
        let prefix = "bench-\(LogTimestamp.now().microsecondsSinceEpoch)"
        for w in 0..<writers {
            try await log.insertSession(SessionRecord(
                id: "\(prefix)-\(w)", kind: .session, policy: "bench", labels: ["bench": "durable-appends"]))
        }
        if warmUpEventsPerWriter > 0 {
            try await appendConcurrently(log, prefix: prefix, writers: writers, eventsPerWriter: warmUpEventsPerWriter)
        }
        let before = log.statistics.transactions
        let start = Monotonic.seconds()
        try await appendConcurrently(log, prefix: prefix, writers: writers, eventsPerWriter: eventsPerWriter)
        let seconds = Monotonic.seconds() - start
        return (writers * eventsPerWriter, seconds, log.statistics.transactions - before)
    }

    private static func appendConcurrently(_ log: SessionLog, prefix: String, writers: Int,
                                           eventsPerWriter: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    let session = "\(prefix)-\(w)"
                    for i in 0..<eventsPerWriter {
                        // About the size of a typical process/tool event.
                        try await log.append(NewEvent(
                            sessionID: session, runID: "\(session)-run", type: EventType.processExited,
                            payload: [
                                "writer": JSONValue(w), "i": JSONValue(i), "pid": 4242,
                                "argv": ["/usr/bin/python3", "-c", "print('hello')"],
                                "exit_code": 0, "duration_ms": 12.5, Attribute.genAIToolName: "exec",
                            ]))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// CLOCK_MONOTONIC in seconds.
}

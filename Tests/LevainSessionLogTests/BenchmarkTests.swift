import Foundation
import Testing
@testable import LevainSessionLog

/// Speed is measured, never asserted (shared, noisy machines). Run with
/// `LEVAIN_LOG_BENCH=1 swift test --filter LogBenchmarkTests`; the figures
/// are in benchmarks/log_appends.md (measured with the release build of
/// benchmarks/LogAppends; a debug build is several times slower).
@Suite("Log benchmark", .serialized, .enabled(if: ProcessInfo.processInfo.environment["LEVAIN_LOG_BENCH"] != nil))
struct LogBenchmarkTests {
    @Test(arguments: [1, 16, 64, 256])
    func durableAppends(writers: Int) async throws {
        let total = Int(ProcessInfo.processInfo.environment["LEVAIN_LOG_BENCH_EVENTS"] ?? "") ?? 20_000
        try await withTemporaryLogPath { path in
            let perWriter = max(1, writers == 1 ? min(total, 3000) : total / writers)
            let result = try await LogBenchmark.durableAppends(path: path, writers: writers, eventsPerWriter: perWriter)
            let rate = Double(result.events) / result.seconds
            print(String(format: "log bench: %4d writers  %7d events  %6.2f s  %8.0f events/s  %6d transactions  %6.1f events/tx",
                         writers, result.events, result.seconds, rate, result.transactions,
                         Double(result.events) / Double(max(1, result.transactions))))
            #expect(result.events == writers * perWriter)
        }
    }
}

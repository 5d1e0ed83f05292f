import Foundation
import Testing
@testable import LevainSessionLog

@Suite("Timestamps")
struct LogTimestampTests {
    @Test func formatsRFC3339WithMicroseconds() {
        #expect(LogTimestamp(microsecondsSinceEpoch: 0).rfc3339 == "1970-01-01T00:00:00.000000Z")
        #expect(LogTimestamp(microsecondsSinceEpoch: 1_795_581_402_123_456).rfc3339 == "2026-11-25T04:36:42.123456Z")
        #expect(LogTimestamp(microsecondsSinceEpoch: 1_709_251_199_999_999).rfc3339 == "2024-02-29T23:59:59.999999Z")
        #expect(LogTimestamp(microsecondsSinceEpoch: -500_000).rfc3339 == "1969-12-31T23:59:59.500000Z")
    }

    @Test func parses() {
        #expect(LogTimestamp(rfc3339: "2026-11-25T04:36:42.123456Z")?.microsecondsSinceEpoch == 1_795_581_402_123_456)
        #expect(LogTimestamp(rfc3339: "2026-11-25T04:36:42Z")?.microsecondsSinceEpoch == 1_795_581_402_000_000)
        #expect(LogTimestamp(rfc3339: "2026-11-25T04:36:42.1234567+00:00")?.microsecondsSinceEpoch
                == 1_795_581_402_123_456)
        #expect(LogTimestamp(rfc3339: "1969-12-31T23:59:59.5Z")?.microsecondsSinceEpoch == -500_000)
        for bad in ["", "2026-11-25", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z",
                    "2026-11-25T04:36:42.Z", "2026-11-25T04:36:42+01:00", "2026-11-25T04:36:42"] {
            #expect(LogTimestamp(rfc3339: bad) == nil, "\(bad)")
        }
    }

    @Test func roundTripsAndTracksTheClock() {
        let now = LogTimestamp.now()
        #expect(LogTimestamp(rfc3339: now.rfc3339) == now)
        #expect(abs(now.date.timeIntervalSinceNow) < 5)
        #expect(LogTimestamp(now.date) == now)
        // Every day boundary for a few years, both ways.
        var t: Int64 = 1_700_000_000_000_000
        for _ in 0..<1500 {
            let ts = LogTimestamp(microsecondsSinceEpoch: t)
            #expect(LogTimestamp(rfc3339: ts.rfc3339) == ts)
            t += 86_400_000_000 + 1
        }
    }
}

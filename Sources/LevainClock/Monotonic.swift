#if canImport(Glibc)
import Glibc
#endif

/// The project's one monotonic clock (CLOCK_MONOTONIC: it does not jump
/// with the wall clock, and it stops while the machine sleeps). Deadlines,
/// rates, timeouts and durations all read it here; wall-clock times for the
/// log are `LogTimestamp`. No dependencies, so every target may use it (the
/// harness included).
public enum Monotonic {
    /// Nanoseconds since an arbitrary point (boot).
    @inline(__always)
    public static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Milliseconds since the same point.
    @inline(__always)
    public static func millis() -> Int64 { Int64(nanos() / 1_000_000) }

    /// Seconds since the same point, for durations in Double.
    @inline(__always)
    public static func seconds() -> Double { Double(nanos()) / 1e9 }
}

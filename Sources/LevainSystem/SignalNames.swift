#if canImport(Glibc)
import Glibc
#endif

/// Linux signal names, one table for the run report ("SIGTERM" for 15) and
/// the API ("TERM", "SIGTERM" or "term" for 15).
public enum SignalNames {
    static let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
        8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
        14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
        20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
        26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
    ]

    /// What a client may send to a run (POST /v1/runs/{id}/signal).
    public static let sendable: Set<Int32> = [
        SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGCONT, SIGSTOP, SIGTSTP,
        SIGWINCH,
    ]

    static let numbers: [String: Int32] = Dictionary(uniqueKeysWithValues: names.map { ($0.value, $0.key) })

    /// "SIGTERM" for 15; "SIG40" for one without a name (real-time signals).
    public static func name(_ sig: Int32) -> String {
        names[sig] ?? "SIG\(sig)"
    }

    /// The number of a sendable signal named with or without "SIG", in any
    /// case; nil for any other name.
    public static func number(_ name: String) -> Int32? {
        var n = name.uppercased()
        if !n.hasPrefix("SIG") { n = "SIG" + n }
        guard let sig = numbers[n], sendable.contains(sig) else { return nil }
        return sig
    }
}

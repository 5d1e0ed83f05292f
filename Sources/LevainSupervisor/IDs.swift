#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainSandbox

/// Session ids are "s-" and 12 hex digits; runs use LevainSandbox.RunID ("r-...").
public enum SessionID {
    public static func make() -> String { LevainSandbox.RunID.randomID(prefix: "s-") }

    public static func isValid(_ s: String) -> Bool { isValidID(s, prefix: "s-") }
}

func isValidID(_ s: String, prefix: String) -> Bool {
    guard s.hasPrefix(prefix), s.utf8.count == prefix.utf8.count + 12 else { return false }
    return s.utf8.dropFirst(prefix.utf8.count).allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
}

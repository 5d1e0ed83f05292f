/// Sizes ("256M") and durations ("30s") as policy files and the command line
/// write them.
public enum Quantity {
    /// Parses a byte size: a whole or decimal number with an optional binary
    /// suffix K, M, G or T (also KB/KiB and the like, any case). "0" is 0.
    public static func parseSize(_ text: String) -> UInt64? {
        let s = text.trimmingWhitespace()
        guard !s.isEmpty else { return nil }
        var number = ""
        var suffix = ""
        for ch in s {
            if suffix.isEmpty, ch.isASCII, ch.isNumber || ch == "." || ch == "_" {
                if ch != "_" { number.append(ch) }
            } else {
                suffix.append(ch)
            }
        }
        guard !number.isEmpty, number.first != ".", number.filter({ $0 == "." }).count <= 1 else { return nil }
        let multiplier: UInt64
        switch suffix.trimmingWhitespace().lowercased() {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        case "t", "tb", "tib": multiplier = 1 << 40
        default: return nil
        }
        if let whole = UInt64(number) {
            let (v, overflow) = whole.multipliedReportingOverflow(by: multiplier)
            return overflow ? nil : v
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let bytes = value * Double(multiplier)
        guard bytes < 1.8e19 else { return nil }
        return UInt64(bytes.rounded())
    }

    /// Parses a duration in seconds: a plain number of seconds, or a number
    /// with a unit ms, s, m, h (one unit; "90s", "1.5m", "500ms").
    public static func parseDuration(_ text: String) -> Double? {
        let s = text.trimmingWhitespace().lowercased()
        guard !s.isEmpty else { return nil }
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (unit, factor) in units where s.hasSuffix(unit) {
            let numberPart = String(s.dropLast(unit.count)).trimmingWhitespace()
            guard let v = Double(numberPart), v.isFinite, v >= 0, numberPart.first != "." else { return nil }
            return v * factor
        }
        guard let v = Double(s), v.isFinite, v >= 0 else { return nil }
        return v
    }

    /// 268435456 -> "256M", for messages and reports.
    public static func formatSize(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
        for (size, name) in units where bytes >= size && bytes % size == 0 {
            return "\(bytes / size)\(name)"
        }
        return "\(bytes)"
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace (no Foundation needed).
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}

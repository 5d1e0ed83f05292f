/// A run id: `r-` followed by 12 lowercase hex digits.
public struct RunID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// nil unless `string` has the run id format.
    public init?(_ string: String) {
        guard Self.isValid(string) else { return nil }
        rawValue = string
    }

    /// A fresh random run id.
    public static func random() -> RunID {
        var generator = SystemRandomNumberGenerator()
        let value = UInt64.random(in: 0..<(1 << 48), using: &generator)
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: 12)
        for index in 0..<12 {
            digits[11 - index] = hexDigit(UInt8(truncatingIfNeeded: value >> (4 * UInt64(index))) & 0xF)
        }
        return RunID("r-" + String(decoding: digits, as: UTF8.self))!
    }

    public var description: String { rawValue }

    public static func < (lhs: RunID, rhs: RunID) -> Bool { lhs.rawValue < rhs.rawValue }

    static func isValid(_ string: String) -> Bool {
        let utf8 = string.utf8
        guard utf8.count == 14, utf8.starts(with: "r-".utf8) else { return false }
        return utf8.dropFirst(2).allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        }
    }

    static func parse(_ string: String, key: String) throws(ProtocolViolation) -> RunID {
        guard let id = RunID(string) else {
            throw ProtocolViolation(
                .invalidValue, "key '\(key)' must be a run id (r- and 12 lowercase hex digits), not \(quoted(string))",
                key: key)
        }
        return id
    }
}

/// Checks shared by decoding (what the peer sent) and `validate()` (what
/// this side is about to send).
enum Check {
    static func invalid(_ key: String, _ why: String) -> ProtocolViolation {
        ProtocolViolation(.invalidValue, "key '\(key)' \(why)", key: key)
    }

    /// No NUL byte, at most `maxBytes` bytes, non-empty unless allowed.
    static func text(_ value: String, key: String, maxBytes: Int, allowEmpty: Bool = true) throws(ProtocolViolation) {
        let utf8 = value.utf8
        if utf8.count > maxBytes { throw invalid(key, "is longer than \(maxBytes) bytes") }
        if !allowEmpty && utf8.isEmpty { throw invalid(key, "must not be empty") }
        if utf8.contains(0) { throw invalid(key, "contains a NUL byte") }
    }

    /// A path relative to /workspace: not empty, not absolute, no `..` component.
    static func relativePath(_ value: String, key: String) throws(ProtocolViolation) {
        try text(value, key: key, maxBytes: ProtocolLimits.maxPathBytes, allowEmpty: false)
        let utf8 = value.utf8
        if utf8.first == UInt8(ascii: "/") { throw invalid(key, "must be a relative path, not \(quoted(value))") }
        if hasDotDotComponent(utf8) { throw invalid(key, "must not contain a '..' component: \(quoted(value))") }
    }

    /// A file operation's path: relative to /workspace, or (version 2) the
    /// jail's /tmp or a path beneath it; no `..` component either way.
    static func filePath(_ value: String, key: String) throws(ProtocolViolation) {
        if value.utf8.first == UInt8(ascii: "/") {
            try text(value, key: key, maxBytes: ProtocolLimits.maxPathBytes, allowEmpty: false)
            guard FilePaths.isTmp(value) else {
                throw invalid(key, "must be relative to /workspace, or /tmp or beneath it, not \(quoted(value))")
            }
            if hasDotDotComponent(value.utf8) { throw invalid(key, "must not contain a '..' component: \(quoted(value))") }
            return
        }
        try relativePath(value, key: key)
    }

    /// An absolute path.
    static func absolutePath(_ value: String, key: String) throws(ProtocolViolation) {
        try text(value, key: key, maxBytes: ProtocolLimits.maxPathBytes, allowEmpty: false)
        if value.utf8.first != UInt8(ascii: "/") { throw invalid(key, "must be an absolute path, not \(quoted(value))") }
    }

    static func hasDotDotComponent(_ utf8: String.UTF8View) -> Bool {
        var componentLength = 0
        var dots = 0
        for byte in utf8 {
            if byte == UInt8(ascii: "/") {
                if componentLength == 2 && dots == 2 { return true }
                componentLength = 0
                dots = 0
            } else {
                componentLength += 1
                if byte == UInt8(ascii: ".") { dots += 1 }
            }
        }
        return componentLength == 2 && dots == 2
    }

    /// An environment entry `KEY=VALUE`: KEY is 1...256 ASCII letters, digits
    /// and `_`, not starting with a digit.
    static func environmentEntry(_ value: String, key: String) throws(ProtocolViolation) {
        try text(value, key: key, maxBytes: ProtocolLimits.maxArgumentBytes)
        guard let equals = value.utf8.firstIndex(of: UInt8(ascii: "=")) else {
            throw invalid(key, "must be KEY=VALUE, not \(quoted(value))")
        }
        let name = value.utf8[..<equals]
        guard !name.isEmpty, name.count <= ProtocolLimits.maxEnvKeyBytes,
              name.allSatisfy({ isNameByte($0) }), !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(name.first!)
        else { throw invalid(key, "has an invalid variable name: \(quoted(value))") }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"): true
        default: false
        }
    }

    static func range<T: Comparable>(_ value: T, _ range: ClosedRange<T>, key: String) throws(ProtocolViolation) {
        if !range.contains(value) {
            throw invalid(key, "must be in \(range.lowerBound)...\(range.upperBound), not \(value)")
        }
    }

    /// Ids, streams and sizes are at most 2^53 (exact in a double).
    static func jsonInteger(_ value: UInt64, key: String) throws(ProtocolViolation) {
        try range(value, 0...UInt64(ProtocolLimits.maxJSONInteger), key: key)
    }
}

// A strict RFC 8259 reader for the JSON bodies of the protocol.
//
// Why not JSONDecoder: it accepts trailing commas and a byte order mark,
// silently keeps the first of two equal keys, validates numbers only when a
// key is read, and reports errors in its own types. Here a body is checked
// completely once (syntax, UTF-8, escapes, number grammar, nesting depth),
// values of unknown keys are skipped without being built, equal keys that
// matter are a violation, and every error names its key. It also keeps
// Foundation out of the statically linked harness.

/// A JSON number as the protocol sees it: integers only.
enum JSONNumber: Equatable {
    /// An integer literal (no fraction, no exponent) that fits an Int64.
    case integer(Int64)
    /// A literal with a fraction or an exponent.
    case nonInteger
    /// An integer literal outside Int64.
    case outOfRange
}

/// A cursor over a JSON text. Values are read in place; `skipValue` checks a
/// value without building it.
struct JSONReader {
    let bytes: [UInt8]
    var position: Int

    init(_ bytes: [UInt8], at position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    // MARK: Structure

    /// Checks that the text is exactly one object (surrounding whitespace
    /// allowed) and indexes its members: `keep` decides which keys are
    /// remembered (it may throw to reject a key); the others are skipped.
    static func topLevelObject(
        _ bytes: [UInt8], keep: (String) throws(ProtocolViolation) -> Bool
    ) throws(ProtocolViolation) -> JSONObject {
        var reader = JSONReader(bytes)
        reader.skipWhitespace()
        guard reader.peek() == UInt8(ascii: "{") else {
            if reader.position == bytes.count {
                throw ProtocolViolation(.invalidJSON, "the body is empty, not a JSON object")
            }
            throw ProtocolViolation(.invalidJSON, "the body must be a JSON object, not \(reader.kindName())")
        }
        let object = try reader.readObject(path: "", depth: 1, keep: keep)
        reader.skipWhitespace()
        guard reader.position == bytes.count else {
            throw reader.syntaxError("trailing characters after the object")
        }
        return object
    }

    /// Reads the object at the cursor (which is at `{`), indexing the kept
    /// keys; with `skipAll`, nothing is kept and keys are not even built.
    mutating func readObject(
        path: String, depth: Int, skipAll: Bool = false, keep: (String) throws(ProtocolViolation) -> Bool
    ) throws(ProtocolViolation) -> JSONObject {
        guard depth <= ProtocolLimits.maxJSONDepth else {
            throw syntaxError("nesting deeper than \(ProtocolLimits.maxJSONDepth) levels")
        }
        var object = JSONObject(bytes: bytes, path: path)
        position += 1  // {
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            return object
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw syntaxError("expected a key") }
            let key = try scanString(materialize: !skipAll)
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw syntaxError("expected ':' after a key") }
            position += 1
            skipWhitespace()
            if let key, try keep(key) {
                if object.offset(of: key) != nil {
                    let full = object.path(key)
                    throw ProtocolViolation(.invalidJSON, "duplicate key '\(full)'", key: full)
                }
                object.members.append((key, position))
            }
            try skipValue(depth: depth + 1)
            if try closedAfterItem(UInt8(ascii: "}"), in: "an object") { return object }
        }
    }

    /// After a member or an element: moves past a ',' (false: another
    /// follows) or the container's closing byte (true: it ended).
    private mutating func closedAfterItem(_ close: UInt8, in container: String) throws(ProtocolViolation) -> Bool {
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: ","):
            position += 1
            return false
        case close:
            position += 1
            return true
        default:
            throw syntaxError("expected ',' or '\(Character(Unicode.Scalar(close)))' in \(container)")
        }
    }

    /// Checks the value at the cursor and moves past it.
    mutating func skipValue(depth: Int) throws(ProtocolViolation) {
        skipWhitespace()
        guard let byte = peek() else { throw syntaxError("unexpected end of the body") }
        switch byte {
        case UInt8(ascii: "{"):
            _ = try readObject(path: "", depth: depth, skipAll: true) { _ throws(ProtocolViolation) in false }
        case UInt8(ascii: "["):
            try skipArray(depth: depth)
        case UInt8(ascii: "\""):
            _ = try scanString(materialize: false)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = try scanNumber()
        case UInt8(ascii: "t"):
            try literal("true")
        case UInt8(ascii: "f"):
            try literal("false")
        case UInt8(ascii: "n"):
            try literal("null")
        default:
            throw syntaxError("unexpected character")
        }
    }

    private mutating func skipArray(depth: Int) throws(ProtocolViolation) {
        guard depth <= ProtocolLimits.maxJSONDepth else {
            throw syntaxError("nesting deeper than \(ProtocolLimits.maxJSONDepth) levels")
        }
        position += 1  // [
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            try skipValue(depth: depth + 1)
            if try closedAfterItem(UInt8(ascii: "]"), in: "an array") { return }
        }
    }

    // MARK: Typed reads (the cursor is at a value already checked by skipValue)

    mutating func readString(_ path: @autoclosure () -> String) throws(ProtocolViolation) -> String {
        skipWhitespace()
        guard peek() == UInt8(ascii: "\"") else { throw typeError(path(), expected: "a string") }
        return try scanString(materialize: true)!
    }

    mutating func readInteger(_ path: @autoclosure () -> String) throws(ProtocolViolation) -> Int64 {
        skipWhitespace()
        guard let byte = peek(), byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        else { throw typeError(path(), expected: "an integer") }
        switch try scanNumber() {
        case .integer(let value):
            return value
        case .nonInteger:
            let key = path()
            throw ProtocolViolation(.wrongType, "key '\(key)' must be an integer (no fraction or exponent)", key: key)
        case .outOfRange:
            let key = path()
            throw ProtocolViolation(.invalidValue, "key '\(key)' is an integer out of range", key: key)
        }
    }

    mutating func readBool(_ path: @autoclosure () -> String) throws(ProtocolViolation) -> Bool {
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: "t"):
            try literal("true")
            return true
        case UInt8(ascii: "f"):
            try literal("false")
            return false
        default:
            throw typeError(path(), expected: "a boolean")
        }
    }

    /// Consumes a `null` at the cursor and returns true, or returns false.
    mutating func readNull() throws(ProtocolViolation) -> Bool {
        skipWhitespace()
        guard peek() == UInt8(ascii: "n") else { return false }
        try literal("null")
        return true
    }

    /// Calls `element` with the cursor at each element of the array at the
    /// cursor; `element` must consume the element. More than `maxCount`
    /// elements is an `invalidValue` violation.
    mutating func readArray(
        _ path: @autoclosure () -> String, maxCount: Int,
        element: (inout JSONReader, Int) throws(ProtocolViolation) -> Void
    ) throws(ProtocolViolation) -> Int {
        skipWhitespace()
        guard peek() == UInt8(ascii: "[") else { throw typeError(path(), expected: "an array") }
        position += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
            return 0
        }
        var count = 0
        while true {
            if count == maxCount {
                let key = path()
                throw ProtocolViolation(.invalidValue, "key '\(key)' has more than \(maxCount) elements", key: key)
            }
            try element(&self, count)
            count += 1
            if try closedAfterItem(UInt8(ascii: "]"), in: "an array") { return count }
        }
    }

    /// The object at the cursor, indexed (see `readObject`).
    mutating func readNestedObject(
        _ path: String, keep: (String) throws(ProtocolViolation) -> Bool
    ) throws(ProtocolViolation) -> JSONObject {
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else { throw typeError(path, expected: "an object") }
        // Depth was checked when the whole body was validated.
        return try readObject(path: path, depth: 1, keep: keep)
    }

    // MARK: Scanning

    @inline(__always)
    func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func literal(_ word: StaticString) throws(ProtocolViolation) {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw syntaxError("unexpected end of the body") }
        let matches = word.withUTF8Buffer { expected in
            for index in 0..<count where bytes[position + index] != expected[index] { return false }
            return true
        }
        guard matches else { throw syntaxError("invalid literal") }
        position += count
    }

    /// Scans the number at the cursor per RFC 8259's grammar.
    mutating func scanNumber() throws(ProtocolViolation) -> JSONNumber {
        var negative = false
        if peek() == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        guard let first = peek(), isDigit(first) else { throw syntaxError("invalid number") }
        var magnitude: UInt64 = 0
        var overflow = false
        if first == UInt8(ascii: "0") {
            position += 1
            if let next = peek(), isDigit(next) { throw syntaxError("number with a leading zero") }
        } else {
            while let digit = peek(), isDigit(digit) {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(digit &- 0x30))
                overflow = overflow || o1 || o2
                magnitude = sum
                position += 1
            }
        }
        var isInteger = true
        if peek() == UInt8(ascii: ".") {
            position += 1
            guard let digit = peek(), isDigit(digit) else { throw syntaxError("invalid number") }
            while let digit = peek(), isDigit(digit) { position += 1 }
            isInteger = false
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            position += 1
            if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { position += 1 }
            guard let digit = peek(), isDigit(digit) else { throw syntaxError("invalid number") }
            while let digit = peek(), isDigit(digit) { position += 1 }
            isInteger = false
        }
        guard isInteger else { return .nonInteger }
        if overflow { return .outOfRange }
        if negative {
            if magnitude <= UInt64(Int64.max) { return .integer(-Int64(magnitude)) }
            if magnitude == UInt64(Int64.max) + 1 { return .integer(Int64.min) }
            return .outOfRange
        }
        return magnitude <= UInt64(Int64.max) ? .integer(Int64(magnitude)) : .outOfRange
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// Scans the string at the cursor (at its opening quote): escapes,
    /// surrogate pairs and UTF-8 are checked. Returns the value if
    /// `materialize`.
    mutating func scanString(materialize: Bool) throws(ProtocolViolation) -> String? {
        position += 1  // opening quote
        let start = position
        var runStart = position
        var decoded: [UInt8]? = nil
        while true {
            guard position < bytes.count else { throw syntaxError("unterminated string") }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let end = position
                position += 1
                guard materialize else { return nil }
                if var decoded {
                    decoded.append(contentsOf: bytes[runStart..<end])
                    return String(decoding: decoded, as: UTF8.self)
                }
                return String(decoding: bytes[start..<end], as: UTF8.self)
            } else if byte == UInt8(ascii: "\\") {
                if materialize {
                    if decoded == nil { decoded = [] }
                    decoded!.append(contentsOf: bytes[runStart..<position])
                }
                position += 1
                guard position < bytes.count else { throw syntaxError("unterminated string") }
                let escape = bytes[position]
                position += 1
                var unescaped: UInt8? = nil
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): unescaped = escape
                case UInt8(ascii: "b"): unescaped = 0x08
                case UInt8(ascii: "f"): unescaped = 0x0C
                case UInt8(ascii: "n"): unescaped = 0x0A
                case UInt8(ascii: "r"): unescaped = 0x0D
                case UInt8(ascii: "t"): unescaped = 0x09
                case UInt8(ascii: "u"):
                    let scalar = try scanUnicodeEscape()
                    if materialize { appendUTF8(scalar, to: &decoded!) }
                default:
                    throw syntaxError("invalid escape in a string")
                }
                if let unescaped, materialize { decoded!.append(unescaped) }
                runStart = position
            } else if byte < 0x20 {
                throw syntaxError("unescaped control character in a string")
            } else if byte < 0x80 {
                position += 1
            } else {
                try scanUTF8Sequence()
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
    private mutating func scanUnicodeEscape() throws(ProtocolViolation) -> UInt32 {
        let first = try hex4()
        switch first {
        case 0xD800...0xDBFF:
            guard position + 2 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                  bytes[position + 1] == UInt8(ascii: "u")
            else { throw syntaxError("unpaired surrogate escape") }
            position += 2
            let second = try hex4()
            guard (0xDC00...0xDFFF).contains(second) else { throw syntaxError("unpaired surrogate escape") }
            return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        case 0xDC00...0xDFFF:
            throw syntaxError("unpaired surrogate escape")
        default:
            return first
        }
    }

    private mutating func hex4() throws(ProtocolViolation) -> UInt32 {
        guard position + 4 <= bytes.count else { throw syntaxError("unterminated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw syntaxError("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// One well-formed multi-byte UTF-8 sequence (Unicode Table 3-7).
    private mutating func scanUTF8Sequence() throws(ProtocolViolation) {
        let lead = bytes[position]
        var count: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: count = 1
        case 0xE0: count = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: count = 2
        case 0xED: count = 2; high = 0x9F
        case 0xF0: count = 3; low = 0x90
        case 0xF1...0xF3: count = 3
        case 0xF4: count = 3; high = 0x8F
        default: throw syntaxError("invalid UTF-8")
        }
        guard position + count < bytes.count else { throw syntaxError("invalid UTF-8") }
        let second = bytes[position + 1]
        guard second >= low && second <= high else { throw syntaxError("invalid UTF-8") }
        var index = 2
        while index <= count {
            guard bytes[position + index] & 0xC0 == 0x80 else { throw syntaxError("invalid UTF-8") }
            index += 1
        }
        position += count + 1
    }

    private func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    // MARK: Errors

    func syntaxError(_ what: String) -> ProtocolViolation {
        ProtocolViolation(.invalidJSON, "invalid JSON: \(what) at byte \(position)")
    }

    func typeError(_ key: String, expected: String) -> ProtocolViolation {
        ProtocolViolation(.wrongType, "key '\(key)' must be \(expected), not \(kindName())", key: key)
    }

    /// What the value at the cursor is, for messages.
    func kindName() -> String {
        switch peek() {
        case UInt8(ascii: "{"): "an object"
        case UInt8(ascii: "["): "an array"
        case UInt8(ascii: "\""): "a string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): "a boolean"
        case UInt8(ascii: "n"): "null"
        case nil: "nothing"
        case .some(let byte) where byte == UInt8(ascii: "-") || isDigit(byte): "a number"
        default: "not JSON"
        }
    }
}

/// The members of an object that a decoder asked to keep, by offset: values
/// are read on demand, so nothing is built for keys that are not needed.
struct JSONObject {
    let bytes: [UInt8]
    /// The object's own path (`""` for the body, `error`, `entries[3]`).
    let path: String
    var members: [(key: String, offset: Int)] = []

    init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    func offset(of key: String) -> Int? {
        for member in members where member.key == key { return member.offset }
        return nil
    }

    /// The full path of a member, for messages.
    func path(_ key: String) -> String {
        path.isEmpty ? key : path + "." + key
    }

    /// A reader at the member's value, nil if the key is absent.
    func reader(_ key: String) -> JSONReader? {
        offset(of: key).map { JSONReader(bytes, at: $0) }
    }

    /// A reader at the member's value; absent is a `missingKey` violation.
    func required(_ key: String) throws(ProtocolViolation) -> JSONReader {
        guard let reader = reader(key) else {
            let full = path(key)
            throw ProtocolViolation(.missingKey, "missing key '\(full)'", key: full)
        }
        return reader
    }

    /// A reader at the member's value, nil if the key is absent or null.
    func optional(_ key: String) throws(ProtocolViolation) -> JSONReader? {
        guard var reader = reader(key) else { return nil }
        if try reader.readNull() { return nil }
        return reader
    }

    func string(_ key: String) throws(ProtocolViolation) -> String {
        var reader = try required(key)
        return try reader.readString(path(key))
    }

    func bool(_ key: String) throws(ProtocolViolation) -> Bool {
        var reader = try required(key)
        return try reader.readBool(path(key))
    }

    /// An integer of type `T`; a value outside `T` is `invalidValue`.
    func integer<T: FixedWidthInteger>(_ key: String, as type: T.Type = T.self) throws(ProtocolViolation) -> T {
        var reader = try required(key)
        return try Self.convert(reader.readInteger(path(key)), key: path(key))
    }

    /// An integer of type `T`, or nil when the key is absent or null.
    func optionalInteger<T: FixedWidthInteger>(_ key: String, as type: T.Type = T.self) throws(ProtocolViolation) -> T? {
        guard var reader = try optional(key) else { return nil }
        return try Self.convert(reader.readInteger(path(key)), key: path(key))
    }

    static func convert<T: FixedWidthInteger>(_ value: Int64, key: String) throws(ProtocolViolation) -> T {
        guard let converted = T(exactly: value) else {
            throw ProtocolViolation(.invalidValue, "key '\(key)' is out of range: \(value)", key: key)
        }
        return converted
    }
}

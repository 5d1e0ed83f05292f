// A strict RFC 8259 reader for the JSON bodies of the protocol.
//
// Why not JSONDecoder: it accepts trailing commas and a byte order mark,
// silently keeps the first of two equal keys, validates numbers only when a
// key is read, and reports errors in its own types. Here a body is checked
// completely once (syntax, UTF-8, escapes, number grammar, nesting depth),
// values of unknown keys are skipped without being built, equal keys that
// matter are a violation, and every error names its key. It also keeps
// Foundation out of the statically linked harness.

import LevainJSON

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
    /// The lexical layer (strings, numbers, literals, UTF-8) is LevainJSON's
    /// JSONScanner, the one every JSON reader of the project uses; this
    /// reader adds the protocol's structure, bounds and typed reads.
    private var scanner: JSONScanner

    var bytes: [UInt8] { scanner.bytes }
    var position: Int {
        get { scanner.index }
        set { scanner.index = newValue }
    }

    init(_ bytes: [UInt8], at position: Int = 0) {
        scanner = JSONScanner(bytes)
        scanner.index = position
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
        do { try scanner.literal(word) } catch { throw Self.violation(error) }
    }

    /// Scans the number at the cursor per RFC 8259's grammar.
    mutating func scanNumber() throws(ProtocolViolation) -> JSONNumber {
        let number: (literal: String, isInteger: Bool)
        do { number = try scanner.number() } catch { throw Self.violation(error) }
        guard number.isInteger else { return .nonInteger }
        return Int64(number.literal).map { .integer($0) } ?? .outOfRange
    }

    /// Scans the string at the cursor (at its opening quote): escapes,
    /// surrogate pairs and UTF-8 are checked. Returns the value if
    /// `materialize`.
    mutating func scanString(materialize: Bool) throws(ProtocolViolation) -> String? {
        do {
            if materialize { return try scanner.string() }
            try scanner.skipString()
            return nil
        } catch {
            throw Self.violation(error)
        }
    }

    static func violation(_ f: JSONScanner.Fault) -> ProtocolViolation {
        ProtocolViolation(.invalidJSON, "invalid JSON: \(f.what) at byte \(f.offset)")
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
        case .some(let byte) where byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte): "a number"
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

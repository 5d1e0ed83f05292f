// Canonical JSON text for JSONValue, and a strict parser for reading it back.
//
// Encoding: compact (no whitespace), object keys sorted by their UTF-8 bytes,
// strings escaped minimally (`"`, `\`, and control characters below U+0020;
// everything else is written as UTF-8), integers in decimal, doubles in
// Swift's shortest round-trip form, non-finite doubles as `null`. The log
// hashes the stored text, not this rule, so a verifier never needs it; it
// only makes equal payloads produce equal bytes.

extension JSONValue {
    /// The canonical compact encoding.
    public func encoded() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        JSONText.write(self, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses JSON text (any value at the top level). A key that appears
    /// twice in one object is an error (`duplicateKeyPath` says where).
    public static func parse(_ text: String) throws(JSONError) -> JSONValue {
        try parse(utf8: Array(text.utf8))
    }

    /// Parses JSON from raw bytes, which must be UTF-8: what a request body
    /// is before anything decoded it (decoding first would turn invalid
    /// UTF-8 into U+FFFD silently).
    public static func parse(utf8 bytes: [UInt8]) throws(JSONError) -> JSONValue {
        var parser = JSONText.Parser(bytes)
        return try parser.parseDocument()
    }

    /// Parses JSON text that must be an object.
    public static func parseObject(_ text: String) throws(JSONError) -> JSONObject {
        try parseObject(utf8: Array(text.utf8))
    }

    /// Parses raw UTF-8 bytes that must be a JSON object.
    public static func parseObject(utf8 bytes: [UInt8]) throws(JSONError) -> JSONObject {
        guard case .object(let object) = try parse(utf8: bytes) else {
            throw JSONError("expected a JSON object", offset: 0)
        }
        return object
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    /// The canonical compact encoding of this object.
    public func encodedJSON() -> String { JSONValue.object(self).encoded() }
}

/// The canonical writer (and, inside, the parser) of JSON text.
public enum JSONText {
    /// Appends `value`'s canonical encoding.
    public static func write(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let b):
            out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i):
            out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite {
                out.append(contentsOf: String(d).utf8)
            } else {
                out.append(contentsOf: "null".utf8)
            }
        case .string(let s):
            writeString(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, element) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            let keys = o.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(o[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `s` as a JSON string (escaped minimally).
    public static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x00..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A strict RFC 8259 parser (no comments, no trailing commas, no NaN),
    /// which also refuses a key that appears twice in one object (RFC 8259
    /// leaves its meaning open; I-JSON, RFC 7493, forbids it): two readers
    /// of the same text must never see two different values. Strings must
    /// be valid UTF-8 (text outside strings is ASCII by the grammar).
    struct Parser {
        private let bytes: [UInt8]
        private var index = 0
        private static let maximumDepth = 256

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func parseDocument() throws(JSONError) -> JSONValue {
            skipWhitespace()
            let value = try parseValue(depth: 0)
            skipWhitespace()
            guard index == bytes.count else { throw fail("unexpected text after the JSON value") }
            return value
        }

        /// A duplicate key's path, one level up: "b" in "a" is "a.b", an
        /// element's "[2]" in "a" is "a[2]".
        private static func within(_ step: String, _ error: JSONError) -> JSONError {
            guard let inner = error.duplicateKeyPath else { return error }
            var e = error
            e.duplicateKeyPath = step + (inner.hasPrefix("[") ? inner : "." + inner)
            return e
        }

        private func fail(_ what: String) -> JSONError {
            JSONError("invalid JSON at byte \(index): \(what)", offset: index)
        }

        private mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
            guard depth < Self.maximumDepth else { throw fail("nested too deeply") }
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth)
            case UInt8(ascii: "["): return try parseArray(depth: depth)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectLiteral("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
            default: throw fail("unexpected character")
            }
        }

        private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw fail("unexpected end") }
            let expected = UnsafeBufferPointer(start: literal.utf8Start, count: count)
            for i in 0..<count where bytes[index + i] != expected[i] {
                throw fail("invalid literal")
            }
            index += count
        }

        private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
            index += 1
            var object = JSONObject()
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(object)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let keyStart = index
                let key = try parseString()
                guard object[key] == nil else {
                    index = keyStart
                    var e = fail("the key \(JSONValue.string(key).encoded()) appears twice in one object")
                    e.duplicateKeyPath = key
                    throw e
                }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipWhitespace()
                do {
                    object[key] = try parseValue(depth: depth + 1)
                } catch {
                    throw Self.within(key, error)
                }
                skipWhitespace()
                guard index < bytes.count else { throw fail("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        }

        private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
            index += 1
            var array: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(array)
            }
            while true {
                skipWhitespace()
                do {
                    array.append(try parseValue(depth: depth + 1))
                } catch {
                    throw Self.within("[\(array.count)]", error)
                }
                skipWhitespace()
                guard index < bytes.count else { throw fail("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(array) }
                throw fail("expected ',' or ']'")
            }
        }

        private mutating func parseHex4() throws(JSONError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw fail("short \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let digit: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw fail("bad \\u escape")
                }
                value = value << 4 | digit
                index += 1
            }
            return value
        }

        private mutating func parseString() throws(JSONError) -> String {
            index += 1  // opening quote
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw fail("unterminated string") }
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    index += 1
                    break
                }
                if c < 0x20 { throw fail("control character in string") }
                if c != UInt8(ascii: "\\") {
                    out.append(c)
                    index += 1
                    continue
                }
                index += 1
                guard index < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                              bytes[index + 1] == UInt8(ascii: "u") else { throw fail("lone surrogate") }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("bad surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("lone surrogate")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw fail("bad scalar") }
                    out.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    throw fail("bad escape")
                }
            }
            guard let string = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8") }
            return string
        }

        private mutating func parseNumber() throws(JSONError) -> JSONValue {
            let start = index
            var isInteger = true
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count else { throw fail("bad number") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[index]) {
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            } else {
                throw fail("bad number")
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                isInteger = false
                index += 1
                let digits = index
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
                guard index > digits else { throw fail("bad fraction") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                isInteger = false
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                let digits = index
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
                guard index > digits else { throw fail("bad exponent") }
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            if isInteger, let i = Int64(text) { return .int(i) }
            guard let d = Double(text) else { throw fail("bad number") }
            return .double(d)
        }
    }
}

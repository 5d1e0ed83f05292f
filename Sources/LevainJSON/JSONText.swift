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
        private var scanner: JSONScanner
        private static let maximumDepth = 256

        init(_ bytes: [UInt8]) { scanner = JSONScanner(bytes) }

        mutating func parseDocument() throws(JSONError) -> JSONValue {
            scanner.skipWhitespace()
            let value = try parseValue(depth: 0)
            scanner.skipWhitespace()
            guard scanner.atEnd else { throw fail("unexpected text after the JSON value") }
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

        private func fail(_ what: String) -> JSONError { Self.error(scanner.fault(what)) }

        private static func error(_ f: JSONScanner.Fault) -> JSONError {
            JSONError("invalid JSON at byte \(f.offset): \(f.what)", offset: f.offset)
        }

        // The scanner's steps, their faults worded as this parser's errors.
        private mutating func string() throws(JSONError) -> String {
            do { return try scanner.string() } catch { throw Self.error(error) }
        }

        private mutating func literal(_ word: StaticString) throws(JSONError) {
            do { try scanner.literal(word) } catch { throw Self.error(error) }
        }

        private mutating func number() throws(JSONError) -> (literal: String, isInteger: Bool) {
            do { return try scanner.number() } catch { throw Self.error(error) }
        }

        private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
            guard depth < Self.maximumDepth else { throw fail("nested too deeply") }
            guard let c = scanner.peek else { throw fail("unexpected end") }
            switch c {
            case UInt8(ascii: "{"): return try parseObject(depth: depth)
            case UInt8(ascii: "["): return try parseArray(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = scanner.index
                let (text, isInteger) = try number()
                if isInteger, let i = Int64(text) { return .int(i) }
                guard let d = Double(text) else { throw Self.error(JSONScanner.Fault(what: "invalid number", offset: start)) }
                return .double(d)
            default: throw fail("unexpected character")
            }
        }

        private mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
            scanner.index += 1  // {
            var object = JSONObject()
            scanner.skipWhitespace()
            if scanner.consume(UInt8(ascii: "}")) { return .object(object) }
            while true {
                scanner.skipWhitespace()
                guard scanner.peek == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let keyStart = scanner.index
                let key = try string()
                guard object[key] == nil else {
                    scanner.index = keyStart
                    var e = fail("the key \(JSONValue.string(key).encoded()) appears twice in one object")
                    e.duplicateKeyPath = key
                    throw e
                }
                scanner.skipWhitespace()
                guard scanner.consume(UInt8(ascii: ":")) else { throw fail("expected ':'") }
                scanner.skipWhitespace()
                do {
                    object[key] = try parseValue(depth: depth + 1)
                } catch {
                    throw Self.within(key, error)
                }
                scanner.skipWhitespace()
                guard !scanner.atEnd else { throw fail("unexpected end") }
                if scanner.consume(UInt8(ascii: ",")) { continue }
                if scanner.consume(UInt8(ascii: "}")) { return .object(object) }
                throw fail("expected ',' or '}'")
            }
        }

        private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
            scanner.index += 1  // [
            var array: [JSONValue] = []
            scanner.skipWhitespace()
            if scanner.consume(UInt8(ascii: "]")) { return .array(array) }
            while true {
                scanner.skipWhitespace()
                do {
                    array.append(try parseValue(depth: depth + 1))
                } catch {
                    throw Self.within("[\(array.count)]", error)
                }
                scanner.skipWhitespace()
                guard !scanner.atEnd else { throw fail("unexpected end") }
                if scanner.consume(UInt8(ascii: ",")) { continue }
                if scanner.consume(UInt8(ascii: "]")) { return .array(array) }
                throw fail("expected ',' or ']'")
            }
        }
    }
}

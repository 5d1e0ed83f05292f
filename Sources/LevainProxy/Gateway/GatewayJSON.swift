// The JSON of a model request as the gateway reads and forwards it.
//
// Why not JSONSerialization: it keeps one of two equal keys without saying
// so (and the provider's parser may keep the other: a gateway that checked
// `"max_tokens":100` and forwarded `"max_tokens":100000` is how the cap was
// bypassed), bridges `true` to the number 1 and `3.5` to 3 on request, and
// re-encodes objects in its own order. Why not the session log's JSONValue:
// it sorts keys (the order of a JSON Schema's properties is the order a
// model writes them in) and keeps the last duplicate. Here a body is parsed
// once, strictly (RFC 8259, UTF-8, escapes, depth); a duplicate key anywhere
// is an error naming its path; objects keep their members' order; numbers
// keep the literal the client wrote (checked against the grammar), so a
// 64-bit seed is not rounded through a Double. What the gateway forwards is
// written from this tree, never from the client's bytes.

/// A parsed JSON value.
enum GatewayJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number literal as written, checked against RFC 8259's grammar.
    case number(String)
    case string(String)
    case array([GatewayJSON])
    /// Members in the order they were written; keys are unique.
    case object([Member])

    struct Member: Equatable, Sendable {
        var key: String
        var value: GatewayJSON
        init(_ key: String, _ value: GatewayJSON) {
            self.key = key
            self.value = value
        }
    }

    /// What a value is, for messages ("a string", "null").
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number(let literal): literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) ? "a number with a fraction or an exponent (\(literal))" : "the number \(literal)"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// The members of an object, nil for any other value.
    var members: [Member]? {
        if case .object(let m) = self { return m }
        return nil
    }

    /// A member of an object by key (keys compared byte for byte, as a
    /// provider's parser does; Swift's `==` on strings would also match
    /// canonically equivalent spellings).
    subscript(key: String) -> GatewayJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key.utf8.elementsEqual(key.utf8) }?.value
    }

    /// The value as an integer when it is written as one (no fraction, no
    /// exponent) and fits an Int64.
    var integerLiteral: Int64? {
        guard case .number(let literal) = self, !literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int64(literal)
    }
}

/// Why a body is not acceptable JSON.
struct GatewayJSONError: Error, Equatable {
    enum Kind: Equatable { case syntax, duplicateKey }
    var kind: Kind
    var message: String
    /// The duplicate key's path (`max_tokens`, `messages[0].content`).
    var path: String?
}

extension GatewayJSON {
    /// Objects and arrays nested deeper than this are refused (the parser
    /// recurses; legitimate request bodies stay far below).
    static let maxDepth = 128

    /// Parses a whole body: exactly one value, surrounding whitespace allowed.
    static func parse(_ bytes: [UInt8]) throws(GatewayJSONError) -> GatewayJSON {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.syntax("trailing characters after the value") }
        return value
    }

    /// Compact JSON text: members in their order, strings escaped minimally,
    /// numbers as their literal.
    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let literal): out.append(contentsOf: literal.utf8)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (i, e) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                e.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(m.key, to: &out)
                out.append(UInt8(ascii: ":"))
                m.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    var text: String {
        var out: [UInt8] = []
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            // Runs that need no escape are copied whole.
            var run = 0
            for i in 0..<utf8.count {
                let byte = utf8[i]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<i]))
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    out.append(contentsOf: "\\u00".utf8)
                    out.append(hex[Int(byte >> 4)])
                    out.append(hex[Int(byte & 0xF)])
                }
                run = i + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<utf8.count]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A recursive-descent parser; `path` holds the keys and indexes leading
    /// to the value being read (for a duplicate key's message).
    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var path: [PathStep] = []

        enum PathStep {
            case key(String)
            case element(Int)
        }

        init(bytes: [UInt8]) { self.bytes = bytes }

        func syntax(_ what: String) -> GatewayJSONError {
            GatewayJSONError(kind: .syntax, message: "the body is not valid JSON: \(what) at byte \(index)")
        }

        func pathText(_ key: String) -> String {
            var out = ""
            for step in path {
                switch step {
                case .key(let k): out += out.isEmpty ? k : "." + k
                case .element(let i): out += "[\(i)]"
                }
            }
            return out.isEmpty ? key : out + "." + key
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard index < bytes.count else { throw syntax("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw syntax("unexpected character")
            }
        }

        mutating func literal(_ word: StaticString) throws(GatewayJSONError) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw syntax("unexpected end") }
            let matches = word.withUTF8Buffer { expected in
                (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
            }
            guard matches else { throw syntax("invalid literal") }
            index += count
        }

        mutating func object(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard depth <= GatewayJSON.maxDepth else { throw syntax("nesting deeper than \(GatewayJSON.maxDepth) levels") }
            index += 1  // {
            var members: [Member] = []
            var seen = Set<[UInt8]>()
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw syntax("expected a key") }
                let key = try string()
                // Byte for byte: what a provider's parser compares.
                guard seen.insert(Array(key.utf8)).inserted else {
                    let full = pathText(key)
                    throw GatewayJSONError(kind: .duplicateKey, message: "the key \"\(full)\" appears twice", path: full)
                }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw syntax("expected ':' after a key") }
                index += 1
                skipWhitespace()
                path.append(.key(key))
                let v = try value(depth: depth)
                path.removeLast()
                members.append(Member(key, v))
                skipWhitespace()
                guard index < bytes.count else { throw syntax("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                throw syntax("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard depth <= GatewayJSON.maxDepth else { throw syntax("nesting deeper than \(GatewayJSON.maxDepth) levels") }
            index += 1  // [
            var elements: [GatewayJSON] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                path.append(.element(elements.count))
                let v = try value(depth: depth)
                path.removeLast()
                elements.append(v)
                skipWhitespace()
                guard index < bytes.count else { throw syntax("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
                throw syntax("expected ',' or ']' in an array")
            }
        }

        /// RFC 8259's number grammar; returns the literal.
        mutating func number() throws(GatewayJSONError) -> String {
            let start = index
            func digit() -> Bool { index < bytes.count && bytes[index] >= UInt8(ascii: "0") && bytes[index] <= UInt8(ascii: "9") }
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digit() else { throw syntax("invalid number") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if digit() { throw syntax("number with a leading zero") }
            } else {
                while digit() { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digit() else { throw syntax("invalid number") }
                while digit() { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digit() else { throw syntax("invalid number") }
                while digit() { index += 1 }
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        /// A string at the cursor (its opening quote): escapes decoded,
        /// surrogate pairs joined (a lone surrogate is an error), UTF-8
        /// checked, control characters refused.
        mutating func string() throws(GatewayJSONError) -> String {
            index += 1  // "
            var out: [UInt8] = []
            var runStart = index
            while true {
                guard index < bytes.count else { throw syntax("unterminated string") }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    out.append(contentsOf: bytes[runStart..<index])
                    index += 1
                    break
                }
                if byte < 0x20 { throw syntax("unescaped control character in a string") }
                if byte != UInt8(ascii: "\\") {
                    index += 1
                    continue
                }
                out.append(contentsOf: bytes[runStart..<index])
                index += 1
                guard index < bytes.count else { throw syntax("unterminated string") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                        else { throw syntax("unpaired surrogate escape") }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw syntax("unpaired surrogate escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw syntax("unpaired surrogate escape")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw syntax("invalid \\u escape") }
                    out.append(contentsOf: String(Character(u)).utf8)
                default:
                    throw syntax("invalid escape in a string")
                }
                runStart = index
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw syntax("invalid UTF-8 in a string") }
            return s
        }

        mutating func hex4() throws(GatewayJSONError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw syntax("unterminated \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw syntax("invalid \\u escape")
                }
                value = value << 4 | d
                index += 1
            }
            return value
        }
    }
}

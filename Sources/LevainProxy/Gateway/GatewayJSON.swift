// The JSON of a model request as the gateway reads and forwards it.
//
// Why not JSONSerialization: it keeps one of two equal keys without saying
// so (and the provider's parser may keep the other: a gateway that checked
// `"max_tokens":100` and forwarded `"max_tokens":100000` is how the cap was
// bypassed), bridges `true` to the number 1 and `3.5` to 3 on request, and
// re-encodes objects in its own order. Why not the project's JSONValue:
// it sorts keys (the order of a JSON Schema's properties is the order a
// model writes them in) and keeps the last duplicate. Here a body is parsed
// once, strictly (RFC 8259, UTF-8, escapes, depth); a duplicate key anywhere
// is an error naming its path; objects keep their members' order; numbers
// keep the literal the client wrote (checked against the grammar), so a
// 64-bit seed is not rounded through a Double. What the gateway forwards is
// written from this tree, never from the client's bytes. The lexical layer
// (strings, numbers, literals) is LevainJSON's JSONScanner, shared with the
// JSONValue parser; only the tree differs.

import LevainJSON

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
        guard parser.scanner.atEnd else { throw parser.syntax("trailing characters after the value") }
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

    /// A string as JSON (the project's one string writer).
    static func writeString(_ s: String, to out: inout [UInt8]) { JSONText.writeString(s, to: &out) }

    /// A recursive-descent parser; `path` holds the keys and indexes leading
    /// to the value being read (for a duplicate key's message).
    private struct Parser {
        var scanner: JSONScanner
        var path: [PathStep] = []

        enum PathStep {
            case key(String)
            case element(Int)
        }

        init(bytes: [UInt8]) { scanner = JSONScanner(bytes) }

        var index: Int { scanner.index }

        func syntax(_ what: String) -> GatewayJSONError { Self.syntax(scanner.fault(what)) }

        static func syntax(_ f: JSONScanner.Fault) -> GatewayJSONError {
            GatewayJSONError(kind: .syntax, message: "the body is not valid JSON: \(f.what) at byte \(f.offset)")
        }

        // The scanner's steps, their faults worded as this parser's errors.
        private mutating func string() throws(GatewayJSONError) -> String {
            do { return try scanner.string() } catch { throw Self.syntax(error) }
        }

        private mutating func literal(_ word: StaticString) throws(GatewayJSONError) {
            do { try scanner.literal(word) } catch { throw Self.syntax(error) }
        }

        private mutating func number() throws(GatewayJSONError) -> (literal: String, isInteger: Bool) {
            do { return try scanner.number() } catch { throw Self.syntax(error) }
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

        mutating func skipWhitespace() { scanner.skipWhitespace() }

        mutating func value(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard let c = scanner.peek else { throw syntax("unexpected end") }
            switch c {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number().literal)
            default: throw syntax("unexpected character")
            }
        }

        mutating func object(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard depth <= GatewayJSON.maxDepth else { throw syntax("nesting deeper than \(GatewayJSON.maxDepth) levels") }
            scanner.index += 1  // {
            var members: [Member] = []
            var seen = Set<[UInt8]>()
            skipWhitespace()
            if scanner.consume(UInt8(ascii: "}")) { return .object(members) }
            while true {
                skipWhitespace()
                guard scanner.peek == UInt8(ascii: "\"") else { throw syntax("expected a key") }
                let key = try string()
                // Byte for byte: what a provider's parser compares.
                guard seen.insert(Array(key.utf8)).inserted else {
                    let full = pathText(key)
                    throw GatewayJSONError(kind: .duplicateKey, message: "the key \"\(full)\" appears twice", path: full)
                }
                skipWhitespace()
                guard scanner.consume(UInt8(ascii: ":")) else { throw syntax("expected ':' after a key") }
                skipWhitespace()
                path.append(.key(key))
                let v = try value(depth: depth)
                path.removeLast()
                members.append(Member(key, v))
                skipWhitespace()
                guard !scanner.atEnd else { throw syntax("unexpected end") }
                if scanner.consume(UInt8(ascii: ",")) { continue }
                if scanner.consume(UInt8(ascii: "}")) { return .object(members) }
                throw syntax("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws(GatewayJSONError) -> GatewayJSON {
            guard depth <= GatewayJSON.maxDepth else { throw syntax("nesting deeper than \(GatewayJSON.maxDepth) levels") }
            scanner.index += 1  // [
            var elements: [GatewayJSON] = []
            skipWhitespace()
            if scanner.consume(UInt8(ascii: "]")) { return .array(elements) }
            while true {
                skipWhitespace()
                path.append(.element(elements.count))
                let v = try value(depth: depth)
                path.removeLast()
                elements.append(v)
                skipWhitespace()
                guard !scanner.atEnd else { throw syntax("unexpected end") }
                if scanner.consume(UInt8(ascii: ",")) { continue }
                if scanner.consume(UInt8(ascii: "]")) { return .array(elements) }
                throw syntax("expected ',' or ']' in an array")
            }
        }
    }
}

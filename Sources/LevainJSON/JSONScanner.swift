/// The lexical layer of every JSON tree the project reads (the log's and the
/// API's `JSONValue`, the gateway's order- and literal-keeping request
/// tree): whitespace, literals, strings (escapes decoded, surrogate pairs
/// joined, a lone surrogate, a control character or invalid UTF-8
/// refused) and numbers (RFC 8259's grammar, the literal kept). Each parser
/// builds its tree on it and words its own errors from `Fault`.
public struct JSONScanner {
    public let bytes: [UInt8]
    public var index = 0

    /// What is wrong at `offset`.
    public struct Fault: Error, Sendable, Equatable {
        public var what: String
        public var offset: Int
    }

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var atEnd: Bool { index >= bytes.count }

    /// The byte at the cursor, nil at the end.
    public var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    public func fault(_ what: String) -> Fault { Fault(what: what, offset: index) }

    public mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// Consumes `byte` if it is at the cursor.
    public mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// `true`, `false` or `null` at the cursor.
    public mutating func literal(_ word: StaticString) throws(Fault) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fault("unexpected end") }
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
        for i in 0..<count where bytes[index + i] != expected[i] {
            throw fault("invalid literal")
        }
        index += count
    }

    /// A number at the cursor: its literal as written, and whether it has
    /// neither a fraction nor an exponent.
    public mutating func number() throws(Fault) -> (literal: String, isInteger: Bool) {
        let start = index
        var isInteger = true
        func digit() -> Bool { index < bytes.count && bytes[index] >= UInt8(ascii: "0") && bytes[index] <= UInt8(ascii: "9") }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard digit() else { throw fault("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if digit() { throw fault("number with a leading zero") }
        } else {
            while digit() { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard digit() else { throw fault("invalid fraction") }
            while digit() { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digit() else { throw fault("invalid exponent") }
            while digit() { index += 1 }
        }
        return (String(decoding: bytes[start..<index], as: UTF8.self), isInteger)
    }

    /// A string at the cursor (its opening quote).
    public mutating func string() throws(Fault) -> String {
        index += 1  // "
        var out: [UInt8] = []
        var runStart = index
        while true {
            guard index < bytes.count else { throw fault("unterminated string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[runStart..<index])
                index += 1
                break
            }
            if byte < 0x20 { throw fault("unescaped control character in a string") }
            if byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            // Runs that need no decoding are copied whole.
            out.append(contentsOf: bytes[runStart..<index])
            index += 1
            guard index < bytes.count else { throw fault("unterminated string") }
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
                    else { throw fault("unpaired surrogate escape") }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fault("unpaired surrogate escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fault("unpaired surrogate escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fault("invalid \\u escape") }
                out.append(contentsOf: String(Character(u)).utf8)
            default:
                throw fault("invalid escape in a string")
            }
            runStart = index
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fault("invalid UTF-8") }
        return s
    }

    private mutating func hex4() throws(Fault) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fault("unterminated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fault("invalid \\u escape")
            }
            value = value << 4 | d
            index += 1
        }
        return value
    }
}

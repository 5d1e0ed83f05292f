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
            guard digit() else { throw fault("invalid number") }
            while digit() { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digit() else { throw fault("invalid number") }
            while digit() { index += 1 }
        }
        return (String(decoding: bytes[start..<index], as: UTF8.self), isInteger)
    }

    /// A string at the cursor (its opening quote), decoded.
    public mutating func string() throws(Fault) -> String {
        try scanString(materialize: true)!
    }

    /// A string at the cursor, checked as `string()` checks it but not
    /// built: what a reader does with a value it does not keep.
    public mutating func skipString() throws(Fault) {
        _ = try scanString(materialize: false)
    }

    /// Escapes, surrogate pairs and UTF-8 (Unicode's Table 3-7, byte by
    /// byte: no overlong forms, no surrogates, nothing past U+10FFFF) are
    /// checked as the string is read; the value is built only if asked.
    private mutating func scanString(materialize: Bool) throws(Fault) -> String? {
        index += 1  // opening quote
        let start = index
        var runStart = index
        var decoded: [UInt8]? = nil
        while true {
            guard index < bytes.count else { throw fault("unterminated string") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let end = index
                index += 1
                guard materialize else { return nil }
                if var decoded {
                    decoded.append(contentsOf: bytes[runStart..<end])
                    return String(decoding: decoded, as: UTF8.self)
                }
                return String(decoding: bytes[start..<end], as: UTF8.self)
            } else if byte == UInt8(ascii: "\\") {
                if materialize {
                    if decoded == nil { decoded = [] }
                    decoded!.append(contentsOf: bytes[runStart..<index])
                }
                index += 1
                guard index < bytes.count else { throw fault("unterminated string") }
                let escape = bytes[index]
                index += 1
                var unescaped: UInt8? = nil
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): unescaped = escape
                case UInt8(ascii: "b"): unescaped = 0x08
                case UInt8(ascii: "f"): unescaped = 0x0C
                case UInt8(ascii: "n"): unescaped = 0x0A
                case UInt8(ascii: "r"): unescaped = 0x0D
                case UInt8(ascii: "t"): unescaped = 0x09
                case UInt8(ascii: "u"):
                    let scalar = try unicodeEscape()
                    if materialize { Self.appendUTF8(scalar, to: &decoded!) }
                default:
                    throw fault("invalid escape in a string")
                }
                if let unescaped, materialize { decoded!.append(unescaped) }
                runStart = index
            } else if byte < 0x20 {
                throw fault("unescaped control character in a string")
            } else if byte < 0x80 {
                index += 1
            } else {
                try utf8Sequence()
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
    private mutating func unicodeEscape() throws(Fault) -> UInt32 {
        let first = try hex4()
        switch first {
        case 0xD800...0xDBFF:
            guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw fault("unpaired surrogate escape") }
            index += 2
            let second = try hex4()
            guard (0xDC00...0xDFFF).contains(second) else { throw fault("unpaired surrogate escape") }
            return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        case 0xDC00...0xDFFF:
            throw fault("unpaired surrogate escape")
        default:
            return first
        }
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

    /// One well-formed multi-byte UTF-8 sequence (Unicode Table 3-7).
    private mutating func utf8Sequence() throws(Fault) {
        let lead = bytes[index]
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
        default: throw fault("invalid UTF-8")
        }
        guard index + count < bytes.count else { throw fault("invalid UTF-8") }
        let second = bytes[index + 1]
        guard second >= low && second <= high else { throw fault("invalid UTF-8") }
        var k = 2
        while k <= count {
            guard bytes[index + k] & 0xC0 == 0x80 else { throw fault("invalid UTF-8") }
            k += 1
        }
        index += count + 1
    }

    private static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
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
}

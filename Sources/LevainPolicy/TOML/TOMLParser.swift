// A strict TOML 1.0 parser that records where every key and value came from.
//
// It works on the UTF-8 bytes of the input with the standard library only (no Foundation,
// to keep CLI startup cheap). Columns are counted in bytes. The input is hostile by
// assumption: nothing here traps, recursion is bounded (arrays and inline tables nest at
// most `maxNesting` deep; a dotted key inside an inline table counts one level per extra
// part; a key has at most `maxKeyParts` parts), and every step is linear in the input.
//
// Table redefinition rules follow TOML 1.0 as tested by toml-test (the same rules as
// Python's tomllib):
// - `[t]` may define a table once; a table only created implicitly (as a parent in an
//   earlier header) may still be defined by a later header.
// - Tables created by dotted keys are "defined": no `[header]` may name them later, though
//   headers may define sub-tables under them.
// - A dotted key may only walk through tables that dotted keys created in the same section
//   (the same `[header]` block or inline table), or through implicitly created ones; never
//   through a table defined by a header, an array of tables, or an inline table.
// - Inline tables and literal arrays are complete values: nothing extends them afterwards,
//   and `[[a]]` cannot append to an array written as `a = [...]`.

public enum TOMLParser {
    /// Deepest nesting of arrays and inline tables accepted.
    static let maxNesting = 128
    /// Most parts accepted in one dotted key or header.
    static let maxKeyParts = 128

    public static func parse(_ text: String) throws(TOMLParseError) -> TOMLTable {
        var parser = TOMLByteParser(text)
        return try parser.parseDocument()
    }
}

// MARK: - Mutable document used while parsing

/// How a mutable table came to exist; decides what may define or extend it later.
private enum TableOrigin {
    /// Created as a parent by a header such as `[a.b]` (for `a`). A later header may define it.
    case implicit
    /// Defined by `[header]` or `[[header]]` (and the root).
    case header
    /// Created by dotted keys in the given section; extendable by dotted keys in that
    /// section only.
    case dotted(section: Int)
}

private final class MutableTable {
    var origin: TableOrigin
    var position: TOMLPosition
    var keyPosition: TOMLPosition?
    var entries: [(key: String, slot: Slot)] = []
    var index: [String: Int] = [:]

    init(origin: TableOrigin, position: TOMLPosition, keyPosition: TOMLPosition?) {
        self.origin = origin
        self.position = position
        self.keyPosition = keyPosition
    }

    func slot(_ key: String) -> Slot? {
        guard let i = index[key], i < entries.count else { return nil }
        return entries[i].slot
    }

    func append(_ key: String, _ slot: Slot) {
        index[key] = entries.count
        entries.append((key: key, slot: slot))
    }

    /// Converts to the immutable model. Recursion depth is bounded by the key-part limits.
    func freeze() -> TOMLTable {
        var out: [(key: String, node: TOMLNode)] = []
        out.reserveCapacity(entries.count)
        for (key, slot) in entries {
            switch slot {
            case .value(let node):
                out.append((key: key, node: node))
            case .table(let table):
                out.append((key: key, node: table.frozenNode()))
            case .tableArray(let array):
                let elements = array.elements.map { $0.frozenNode() }
                out.append((key: key, node: TOMLNode(value: .array(elements), position: array.position,
                                                     keyPosition: array.keyPosition)))
            }
        }
        return TOMLTable(entries: out)
    }

    func frozenNode() -> TOMLNode {
        TOMLNode(value: .table(freeze()), position: position, keyPosition: keyPosition)
    }
}

private final class MutableTableArray {
    var elements: [MutableTable]
    let position: TOMLPosition
    let keyPosition: TOMLPosition

    init(first: MutableTable, position: TOMLPosition, keyPosition: TOMLPosition) {
        elements = [first]
        self.position = position
        self.keyPosition = keyPosition
    }
}

private enum Slot {
    /// A finished value: scalar, literal array or inline table. Never extended.
    case value(TOMLNode)
    case table(MutableTable)
    /// An array of tables built by `[[header]]`s.
    case tableArray(MutableTableArray)
}

private struct KeyPart {
    var name: String
    var offset: Int
}

// MARK: - Byte constants

private enum Byte {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22          // "
    static let hash: UInt8 = 0x23           // #
    static let apostrophe: UInt8 = 0x27     // '
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let colon: UInt8 = 0x3A
    static let equals: UInt8 = 0x3D
    static let leftBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let rightBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F
    static let leftBrace: UInt8 = 0x7B
    static let rightBrace: UInt8 = 0x7D
    static let del: UInt8 = 0x7F

    static func isDigit(_ b: UInt8) -> Bool { b >= zero && b <= nine }
    static func isHexDigit(_ b: UInt8) -> Bool { hexValue(b) != nil }
    static func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
    static func isBareKey(_ b: UInt8) -> Bool { isLetter(b) || isDigit(b) || b == underscore || b == minus }
    static func isWhitespace(_ b: UInt8) -> Bool { b == space || b == tab }

    static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case 0x30...0x39: UInt32(b - 0x30)
        case 0x41...0x46: UInt32(b - 0x41 + 10)
        case 0x61...0x66: UInt32(b - 0x61 + 10)
        default: nil
        }
    }

    /// Characters that may appear in a number or date-time token.
    static func isValueToken(_ b: UInt8) -> Bool {
        isLetter(b) || isDigit(b) || b == underscore || b == dot || b == colon || b == plus || b == minus
    }

    /// True for a raw byte that may not appear in a comment or string (everything below
    /// U+0020 except tab, and DEL). CR and LF are handled by the callers.
    static func isForbiddenControl(_ b: UInt8) -> Bool { (b < space && b != tab) || b == del }
}

// MARK: - The parser

private struct TOMLByteParser {
    let bytes: [UInt8]
    /// Offset of the first byte of every line, for position lookups (binary search).
    let lineStarts: [Int]
    var i: Int
    /// Incremented by every header; dotted-key tables remember the section that made them.
    var section = 0
    /// Inline tables get negative section numbers so they never match a header section.
    var inlineSection = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
        var starts: [Int] = [0]
        for (offset, b) in bytes.enumerated() where b == Byte.lf {
            starts.append(offset + 1)
        }
        // Skip a UTF-8 byte-order mark and do not count it in columns.
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
            i = 3
            starts[0] = 3
        } else {
            i = 0
        }
        lineStarts = starts
    }

    // MARK: Positions and errors

    func position(_ offset: Int) -> TOMLPosition {
        var lo = 0
        var hi = lineStarts.count - 1
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return TOMLPosition(line: lo + 1, column: max(1, offset - lineStarts[lo] + 1))
    }

    func error(_ message: String, at offset: Int) -> TOMLParseError {
        TOMLParseError(position: position(offset), message: message)
    }

    var atEnd: Bool { i >= bytes.count }

    func peek(_ ahead: Int = 0) -> UInt8? {
        let j = i + ahead
        return j < bytes.count ? bytes[j] : nil
    }

    /// A short, printable description of the character at `offset` for messages.
    func describe(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of file" }
        let b = bytes[offset]
        switch b {
        case Byte.lf, Byte.cr: return "end of line"
        case 0x21...0x7E: return "'\(Character(Unicode.Scalar(b)))'"
        case Byte.space: return "' '"
        case Byte.tab: return "tab"
        case 0..<0x80: return Self.scalarName(UInt32(b))
        default:
            let end = min(bytes.count, offset + 4)
            let s = String(decoding: bytes[offset..<end], as: UTF8.self)
            if let scalar = s.unicodeScalars.first {
                switch scalar.properties.generalCategory {
                case .spaceSeparator, .lineSeparator, .paragraphSeparator, .control, .format,
                     .surrogate, .privateUse, .unassigned, .nonspacingMark, .enclosingMark, .spacingMark:
                    return Self.scalarName(scalar.value)
                default:
                    return "'\(Character(scalar))' (\(Self.scalarName(scalar.value)))"
                }
            }
            return "a non-ASCII character"
        }
    }

    static func scalarName(_ value: UInt32) -> String {
        var hex = String(value, radix: 16, uppercase: true)
        while hex.count < 4 { hex = "0" + hex }
        return "U+" + hex
    }

    // MARK: Whitespace, comments, newlines

    mutating func skipWhitespace() {
        while i < bytes.count, Byte.isWhitespace(bytes[i]) { i += 1 }
    }

    /// Consumes LF or CRLF at `i` (the caller has seen CR or LF there).
    mutating func consumeNewline() throws(TOMLParseError) {
        if bytes[i] == Byte.cr {
            guard peek(1) == Byte.lf else {
                throw error("bare carriage return (CR not followed by LF)", at: i)
            }
            i += 2
        } else {
            i += 1
        }
    }

    /// Skips a comment starting at `#`, up to but not including the line end.
    mutating func skipComment() throws(TOMLParseError) {
        i += 1
        while i < bytes.count {
            let b = bytes[i]
            if b == Byte.lf { return }
            if b == Byte.cr {
                guard peek(1) == Byte.lf else {
                    throw error("bare carriage return (CR not followed by LF) in comment", at: i)
                }
                return
            }
            if Byte.isForbiddenControl(b) {
                throw error("control character \(Self.scalarName(UInt32(b))) in comment", at: i)
            }
            i += 1
        }
    }

    /// After a key/value pair or a header: optional whitespace and comment, then a line
    /// end or the end of the input.
    mutating func expectLineEnd(after what: String) throws(TOMLParseError) {
        skipWhitespace()
        if peek() == Byte.hash { try skipComment() }
        guard let b = peek() else { return }
        guard b == Byte.lf || b == Byte.cr else {
            throw error("expected end of line after \(what), found \(describe(at: i))", at: i)
        }
        try consumeNewline()
    }

    /// Inside arrays: whitespace, newlines and comments.
    mutating func skipArrayFiller() throws(TOMLParseError) {
        while i < bytes.count {
            switch bytes[i] {
            case Byte.space, Byte.tab: i += 1
            case Byte.lf, Byte.cr: try consumeNewline()
            case Byte.hash: try skipComment()
            default: return
            }
        }
    }

    // MARK: Document

    mutating func parseDocument() throws(TOMLParseError) -> TOMLTable {
        let root = MutableTable(origin: .header, position: TOMLPosition(line: 1, column: 1), keyPosition: nil)
        var current = root
        while true {
            skipWhitespace()
            guard let b = peek() else { break }
            switch b {
            case Byte.hash:
                try skipComment()
                try expectLineEnd(after: "comment")
            case Byte.lf, Byte.cr:
                try consumeNewline()
            case Byte.leftBracket:
                current = try parseHeader(root: root)
                try expectLineEnd(after: "table header")
            default:
                try parseKeyValue(into: current, section: section, inlineDepth: nil)
                try expectLineEnd(after: "value")
            }
        }
        return root.freeze()
    }

    // MARK: Keys

    mutating func parseKey() throws(TOMLParseError) -> [KeyPart] {
        var parts: [KeyPart] = []
        while true {
            skipWhitespace()
            let start = i
            parts.append(KeyPart(name: try parseSimpleKey(), offset: start))
            if parts.count > TOMLParser.maxKeyParts {
                throw error("key has more than \(TOMLParser.maxKeyParts) dotted parts", at: start)
            }
            skipWhitespace()
            guard peek() == Byte.dot else { return parts }
            i += 1
        }
    }

    mutating func parseSimpleKey() throws(TOMLParseError) -> String {
        guard let b = peek() else { throw error("expected a key, found end of file", at: i) }
        if b == Byte.quote || b == Byte.apostrophe {
            if peek(1) == b && peek(2) == b {
                throw error("a multi-line string cannot be used as a key", at: i)
            }
            return b == Byte.quote ? try parseBasicString() : try parseLiteralString()
        }
        guard Byte.isBareKey(b) else { throw error("expected a key, found \(describe(at: i))", at: i) }
        let start = i
        while i < bytes.count, Byte.isBareKey(bytes[i]) { i += 1 }
        return String(decoding: bytes[start..<i], as: UTF8.self)
    }

    /// Renders key parts for messages: bare parts as is, others quoted and escaped.
    static func render<C: Collection>(_ parts: C) -> String where C.Element == KeyPart {
        var out = ""
        for (n, part) in parts.enumerated() {
            if n > 0 { out += "." }
            let bare = !part.name.isEmpty && part.name.utf8.allSatisfy(Byte.isBareKey)
            out += bare ? part.name : quoteForMessage(part.name)
        }
        return out
    }

    static func quoteForMessage(_ s: String) -> String {
        var out = "'"
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x27: out += "\\'"
            case 0x5C: out += "\\\\"
            case 0..<0x20, 0x7F: out += "\\u" + String(scalarName(scalar.value).dropFirst(2))
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "'"
    }

    // MARK: Key/value pairs

    /// Parses `key = value` and stores it in `table`. `inlineDepth` is the nesting level of
    /// the enclosing inline table, nil at the top level.
    mutating func parseKeyValue(into table: MutableTable, section: Int, inlineDepth: Int?) throws(TOMLParseError) {
        let parts = try parseKey()
        guard peek() == Byte.equals else {
            throw error("expected '=' after key, found \(describe(at: i))", at: i)
        }
        i += 1
        skipWhitespace()
        var depth = 0
        if let inlineDepth {
            depth = inlineDepth + parts.count - 1
            if depth > TOMLParser.maxNesting {
                throw error("nesting deeper than \(TOMLParser.maxNesting) levels", at: parts[0].offset)
            }
        }
        var value = try parseValue(depth: depth)
        value.keyPosition = parts.last.map { position($0.offset) }
        try insert(value, at: parts, into: table, section: section)
    }

    /// Stores a value under a (possibly dotted) key relative to `table`, creating and
    /// checking the intermediate tables.
    mutating func insert(_ value: TOMLNode, at parts: [KeyPart], into table: MutableTable,
                         section: Int) throws(TOMLParseError) {
        guard let last = parts.last else { return }
        var t = table
        for n in 0..<(parts.count - 1) {
            let part = parts[n]
            guard let existing = t.slot(part.name) else {
                let p = position(part.offset)
                let sub = MutableTable(origin: .dotted(section: section), position: p, keyPosition: p)
                t.append(part.name, .table(sub))
                t = sub
                continue
            }
            let path = { Self.render(parts[0...n]) }
            switch existing {
            case .table(let sub):
                switch sub.origin {
                case .implicit:
                    sub.origin = .dotted(section: section)
                case .dotted(let s) where s == section:
                    break
                case .dotted:
                    throw error("dotted key cannot extend table \"\(path())\" defined by dotted keys in another section", at: part.offset)
                case .header:
                    throw error("dotted key cannot extend table \"\(path())\" defined by a [header]", at: part.offset)
                }
                t = sub
            case .tableArray:
                throw error("dotted key cannot extend array of tables \"\(path())\"", at: part.offset)
            case .value(let node):
                throw notATable(node, path: path(), at: part.offset)
            }
        }
        if t.slot(last.name) != nil {
            throw error("duplicate key \"\(Self.render(parts))\"", at: last.offset)
        }
        t.append(last.name, .value(value))
    }

    func notATable(_ node: TOMLNode, path: String, at offset: Int) -> TOMLParseError {
        switch node.value {
        case .table:
            return error("inline table \"\(path)\" cannot be extended", at: offset)
        case .array:
            return error("static array \"\(path)\" cannot be extended", at: offset)
        default:
            return error("key \"\(path)\" is already defined as \(node.value.typeName), not a table", at: offset)
        }
    }

    // MARK: Headers

    /// Parses `[a.b]` or `[[a.b]]` and returns the table that following pairs go into.
    mutating func parseHeader(root: MutableTable) throws(TOMLParseError) -> MutableTable {
        let start = i
        let headerPosition = position(start)
        i += 1
        let isArray = peek() == Byte.leftBracket
        if isArray { i += 1 }
        let parts = try parseKey()
        guard peek() == Byte.rightBracket else {
            throw error("expected '\(isArray ? "]]" : "]")' to close table header, found \(describe(at: i))", at: i)
        }
        i += 1
        if isArray {
            guard peek() == Byte.rightBracket else {
                throw error("expected ']]' to close array of tables header, found \(describe(at: i))", at: i)
            }
            i += 1
        }
        section += 1

        var t = root
        for n in 0..<parts.count {
            let part = parts[n]
            let isLast = n == parts.count - 1
            let partPosition = position(part.offset)
            let path = { Self.render(parts[0...n]) }
            guard let existing = t.slot(part.name) else {
                if isLast {
                    let sub = MutableTable(origin: .header, position: headerPosition, keyPosition: partPosition)
                    if isArray {
                        t.append(part.name, .tableArray(MutableTableArray(first: sub, position: headerPosition,
                                                                          keyPosition: partPosition)))
                    } else {
                        t.append(part.name, .table(sub))
                    }
                    return sub
                }
                let sub = MutableTable(origin: .implicit, position: partPosition, keyPosition: partPosition)
                t.append(part.name, .table(sub))
                t = sub
                continue
            }
            switch existing {
            case .table(let sub):
                guard isLast else {
                    t = sub
                    continue
                }
                if isArray {
                    throw error("cannot define array of tables [[\(path())]]: \"\(path())\" is already a table", at: part.offset)
                }
                switch sub.origin {
                case .implicit:
                    sub.origin = .header
                    sub.position = headerPosition
                    sub.keyPosition = partPosition
                    return sub
                case .header:
                    throw error("table [\(path())] is defined twice", at: part.offset)
                case .dotted:
                    throw error("table [\(path())] is already defined by dotted keys", at: part.offset)
                }
            case .tableArray(let array):
                guard isLast else {
                    guard let lastElement = array.elements.last else {
                        throw error("internal error: empty array of tables", at: part.offset)
                    }
                    t = lastElement
                    continue
                }
                guard isArray else {
                    throw error("table [\(path())] is already defined as an array of tables", at: part.offset)
                }
                let sub = MutableTable(origin: .header, position: headerPosition, keyPosition: partPosition)
                array.elements.append(sub)
                return sub
            case .value(let node):
                if isLast, isArray, case .array = node.value {
                    throw error("cannot append to static array \"\(path())\" with [[\(path())]]", at: part.offset)
                }
                if isLast, case .table = node.value {
                    throw error("inline table \"\(path())\" cannot be redefined by a header", at: part.offset)
                }
                throw notATable(node, path: path(), at: part.offset)
            }
        }
        // parseKey returns at least one part, so the loop always returns.
        throw error("expected a key in table header", at: start)
    }

    // MARK: Values

    /// Parses one value. `depth` counts the arrays and inline tables around it.
    mutating func parseValue(depth: Int) throws(TOMLParseError) -> TOMLNode {
        let start = i
        let pos = position(start)
        guard let b = peek() else { throw error("expected a value, found end of file", at: i) }
        let value: TOMLValue
        switch b {
        case Byte.quote:
            if peek(1) == Byte.quote && peek(2) == Byte.quote {
                value = .string(try parseMultilineBasicString())
            } else {
                value = .string(try parseBasicString())
            }
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe {
                value = .string(try parseMultilineLiteralString())
            } else {
                value = .string(try parseLiteralString())
            }
        case Byte.leftBracket:
            value = try parseArray(depth: depth)
        case Byte.leftBrace:
            value = try parseInlineTable(depth: depth)
        case 0x74: // t
            value = try parseKeyword("true", .boolean(true))
        case 0x66: // f
            value = try parseKeyword("false", .boolean(false))
        case Byte.plus, Byte.minus, Byte.zero...Byte.nine, 0x69, 0x6E: // + - digits i n
            value = try parseNumberOrDateTime()
        default:
            throw error("expected a value, found \(describe(at: i))", at: i)
        }
        return TOMLNode(value: value, position: pos, keyPosition: nil)
    }

    mutating func parseKeyword(_ word: StaticString, _ value: TOMLValue) throws(TOMLParseError) -> TOMLValue {
        let count = word.utf8CodeUnitCount
        let matches = word.withUTF8Buffer { w in
            i + count <= bytes.count && (0..<count).allSatisfy { bytes[i + $0] == w[$0] }
        }
        guard matches, !(peek(count).map(Byte.isBareKey) ?? false) else {
            throw error("invalid value (expected true or false; strings must be quoted)", at: i)
        }
        i += count
        return value
    }

    // MARK: Arrays and inline tables

    mutating func parseArray(depth: Int) throws(TOMLParseError) -> TOMLValue {
        let start = i
        guard depth < TOMLParser.maxNesting else {
            throw error("arrays and inline tables nested deeper than \(TOMLParser.maxNesting) levels", at: start)
        }
        i += 1
        var elements: [TOMLNode] = []
        while true {
            try skipArrayFiller()
            guard let b = peek() else { throw error("unterminated array", at: start) }
            if b == Byte.rightBracket {
                i += 1
                return .array(elements)
            }
            var element = try parseValue(depth: depth + 1)
            element.keyPosition = nil
            elements.append(element)
            try skipArrayFiller()
            guard let c = peek() else { throw error("unterminated array", at: start) }
            switch c {
            case Byte.comma: i += 1
            case Byte.rightBracket:
                i += 1
                return .array(elements)
            default:
                throw error("expected ',' or ']' in array, found \(describe(at: i))", at: i)
            }
        }
    }

    mutating func parseInlineTable(depth: Int) throws(TOMLParseError) -> TOMLValue {
        let start = i
        guard depth < TOMLParser.maxNesting else {
            throw error("arrays and inline tables nested deeper than \(TOMLParser.maxNesting) levels", at: start)
        }
        i += 1
        inlineSection -= 1
        let mySection = inlineSection
        let table = MutableTable(origin: .header, position: position(start), keyPosition: nil)
        skipWhitespace()
        if peek() == Byte.rightBrace {
            i += 1
            return .table(table.freeze())
        }
        while true {
            skipWhitespace()
            guard let b = peek() else { throw error("unterminated inline table", at: start) }
            switch b {
            case Byte.lf, Byte.cr:
                throw error("newline not allowed in inline table", at: i)
            case Byte.rightBrace:
                throw error("trailing comma not allowed in inline table", at: i)
            default:
                break
            }
            try parseKeyValue(into: table, section: mySection, inlineDepth: depth + 1)
            skipWhitespace()
            guard let c = peek() else { throw error("unterminated inline table", at: start) }
            switch c {
            case Byte.comma:
                i += 1
            case Byte.rightBrace:
                i += 1
                return .table(table.freeze())
            case Byte.lf, Byte.cr:
                throw error("newline not allowed in inline table", at: i)
            case Byte.hash:
                throw error("comment not allowed in inline table", at: i)
            default:
                throw error("expected ',' or '}' in inline table, found \(describe(at: i))", at: i)
            }
        }
    }

    // MARK: Strings

    /// Appends the bytes of one escape sequence (`i` at the backslash).
    mutating func parseEscape(into out: inout [UInt8]) throws(TOMLParseError) {
        let start = i
        guard let e = peek(1) else { throw error("unterminated string", at: start) }
        i += 2
        switch e {
        case 0x62: out.append(0x08)          // \b
        case 0x74: out.append(Byte.tab)      // \t
        case 0x6E: out.append(Byte.lf)       // \n
        case 0x66: out.append(0x0C)          // \f
        case 0x72: out.append(Byte.cr)       // \r
        case Byte.quote: out.append(Byte.quote)
        case Byte.backslash: out.append(Byte.backslash)
        case 0x75, 0x55:                     // \u \U
            let count = e == 0x75 ? 4 : 8
            var code: UInt32 = 0
            for k in 0..<count {
                guard let h = peek(k), let v = Byte.hexValue(h) else {
                    throw error("invalid escape: \\\(e == 0x75 ? "u" : "U") needs \(count) hexadecimal digits", at: start)
                }
                code = code &* 16 &+ v
            }
            i += count
            guard let scalar = Unicode.Scalar(code) else {
                let text = String(decoding: bytes[(start + 2)..<(start + 2 + count)], as: UTF8.self)
                throw error("escape \\\(e == 0x75 ? "u" : "U")\(text) is not a Unicode scalar value (surrogate or out of range)", at: start)
            }
            UTF8.encode(scalar) { out.append($0) }
        default:
            if e > 0x20 && e < 0x7F {
                throw error("invalid escape \\\(Character(Unicode.Scalar(e))) in string", at: start)
            }
            throw error("invalid escape sequence (backslash followed by \(describe(at: start + 1))) in string", at: start)
        }
    }

    /// `"..."` (`i` at the opening quote). Also used for quoted keys.
    mutating func parseBasicString() throws(TOMLParseError) -> String {
        let start = i
        i += 1
        var out: [UInt8] = []
        while true {
            guard let b = peek() else { throw error("unterminated string", at: start) }
            switch b {
            case Byte.quote:
                i += 1
                return String(decoding: out, as: UTF8.self)
            case Byte.backslash:
                try parseEscape(into: &out)
            case Byte.lf, Byte.cr:
                throw error("newline in single-line string (unterminated string?)", at: i)
            default:
                if Byte.isForbiddenControl(b) {
                    throw error("control character \(Self.scalarName(UInt32(b))) in string (use an escape)", at: i)
                }
                out.append(b)
                i += 1
            }
        }
    }

    /// `'...'` (`i` at the opening apostrophe). Also used for quoted keys.
    mutating func parseLiteralString() throws(TOMLParseError) -> String {
        let start = i
        i += 1
        let contentStart = i
        while true {
            guard let b = peek() else { throw error("unterminated string", at: start) }
            switch b {
            case Byte.apostrophe:
                let s = String(decoding: bytes[contentStart..<i], as: UTF8.self)
                i += 1
                return s
            case Byte.lf, Byte.cr:
                throw error("newline in single-line string (unterminated string?)", at: i)
            default:
                if Byte.isForbiddenControl(b) {
                    throw error("control character \(Self.scalarName(UInt32(b))) in string", at: i)
                }
                i += 1
            }
        }
    }

    /// Skips the newline right after an opening `"""` or `'''`.
    mutating func trimLeadingNewline() throws(TOMLParseError) {
        if peek() == Byte.lf || peek() == Byte.cr { try consumeNewline() }
    }

    /// At a run of `delimiter` bytes inside a multi-line string: appends the quotes that are
    /// content and returns true when the run closes the string.
    mutating func handleQuoteRun(_ delimiter: UInt8, into out: inout [UInt8]) throws(TOMLParseError) -> Bool {
        let runStart = i
        while i < bytes.count, bytes[i] == delimiter { i += 1 }
        let count = i - runStart
        if count < 3 {
            out.append(contentsOf: repeatElement(delimiter, count: count))
            return false
        }
        guard count <= 5 else {
            throw error("too many quotes at the end of a multi-line string", at: runStart)
        }
        out.append(contentsOf: repeatElement(delimiter, count: count - 3))
        return true
    }

    /// `"""..."""` (`i` at the first quote).
    mutating func parseMultilineBasicString() throws(TOMLParseError) -> String {
        let start = i
        i += 3
        try trimLeadingNewline()
        var out: [UInt8] = []
        while true {
            guard let b = peek() else { throw error("unterminated multi-line string", at: start) }
            switch b {
            case Byte.quote:
                if try handleQuoteRun(Byte.quote, into: &out) {
                    return String(decoding: out, as: UTF8.self)
                }
            case Byte.backslash:
                // A backslash at the end of a line (trailing whitespace allowed) removes the
                // line break and all whitespace and line breaks after it.
                var j = i + 1
                while j < bytes.count, Byte.isWhitespace(bytes[j]) { j += 1 }
                if j < bytes.count, bytes[j] == Byte.lf || bytes[j] == Byte.cr {
                    i = j
                    while let c = peek() {
                        if Byte.isWhitespace(c) {
                            i += 1
                        } else if c == Byte.lf || c == Byte.cr {
                            try consumeNewline()
                        } else {
                            break
                        }
                    }
                } else {
                    try parseEscape(into: &out)
                }
            case Byte.lf:
                out.append(Byte.lf)
                i += 1
            case Byte.cr:
                try consumeNewline()
                out.append(Byte.lf)
            default:
                if Byte.isForbiddenControl(b) {
                    throw error("control character \(Self.scalarName(UInt32(b))) in string (use an escape)", at: i)
                }
                out.append(b)
                i += 1
            }
        }
    }

    /// `'''...'''` (`i` at the first apostrophe).
    mutating func parseMultilineLiteralString() throws(TOMLParseError) -> String {
        let start = i
        i += 3
        try trimLeadingNewline()
        var out: [UInt8] = []
        while true {
            guard let b = peek() else { throw error("unterminated multi-line string", at: start) }
            switch b {
            case Byte.apostrophe:
                if try handleQuoteRun(Byte.apostrophe, into: &out) {
                    return String(decoding: out, as: UTF8.self)
                }
            case Byte.lf:
                out.append(Byte.lf)
                i += 1
            case Byte.cr:
                try consumeNewline()
                out.append(Byte.lf)
            default:
                if Byte.isForbiddenControl(b) {
                    throw error("control character \(Self.scalarName(UInt32(b))) in string", at: i)
                }
                out.append(b)
                i += 1
            }
        }
    }

    // MARK: Numbers and date-times

    mutating func parseNumberOrDateTime() throws(TOMLParseError) -> TOMLValue {
        let start = i
        while i < bytes.count, Byte.isValueToken(bytes[i]) { i += 1 }
        // "1979-05-27 07:32:00": a date followed by a space and a time is one value.
        if i - start == 10, Self.isFullDate(bytes[start..<i]), peek() == Byte.space,
           let h1 = peek(1), let h2 = peek(2), Byte.isDigit(h1), Byte.isDigit(h2), peek(3) == Byte.colon {
            i += 1
            while i < bytes.count, Byte.isValueToken(bytes[i]) { i += 1 }
        }
        let token = bytes[start..<i]
        if Self.looksLikeDateTime(token) {
            try validateDateTime(token, at: start)
            return .datetime(String(decoding: token, as: UTF8.self))
        }
        return try parseNumber(token, at: start)
    }

    static func isFullDate(_ t: ArraySlice<UInt8>) -> Bool {
        let b = Array(t)
        guard b.count == 10 else { return false }
        for k in [0, 1, 2, 3, 5, 6, 8, 9] where !Byte.isDigit(b[k]) { return false }
        return b[4] == Byte.minus && b[7] == Byte.minus
    }

    static func looksLikeDateTime(_ t: ArraySlice<UInt8>) -> Bool {
        let b = t.prefix(5).map { $0 }
        if b.count >= 5, b[0...3].allSatisfy(Byte.isDigit), b[4] == Byte.minus { return true }
        if b.count >= 3, b[0...1].allSatisfy(Byte.isDigit), b[2] == Byte.colon { return true }
        return false
    }

    func validateDateTime(_ token: ArraySlice<UInt8>, at offset: Int) throws(TOMLParseError) {
        let t = Array(token)
        var k = 0
        let text = String(decoding: t, as: UTF8.self)

        func fail(_ why: String) -> TOMLParseError {
            error("invalid date-time \(text): \(why)", at: offset)
        }
        func number(_ digits: Int) -> Int? {
            guard k + digits <= t.count else { return nil }
            var v = 0
            for d in t[k..<(k + digits)] {
                guard Byte.isDigit(d) else { return nil }
                v = v * 10 + Int(d - Byte.zero)
            }
            k += digits
            return v
        }
        func expect(_ b: UInt8) -> Bool {
            guard k < t.count, t[k] == b else { return false }
            k += 1
            return true
        }
        func time() throws(TOMLParseError) {
            guard let hour = number(2), expect(Byte.colon), let minute = number(2) else {
                throw fail("expected a time HH:MM:SS")
            }
            guard expect(Byte.colon), let second = number(2) else {
                throw fail("seconds are required (HH:MM:SS)")
            }
            guard hour <= 23 else { throw fail("hour \(hour) out of range 0-23") }
            guard minute <= 59 else { throw fail("minute \(minute) out of range 0-59") }
            guard second <= 60 else { throw fail("second \(second) out of range 0-60") }
            if expect(Byte.dot) {
                let fractionStart = k
                while k < t.count, Byte.isDigit(t[k]) { k += 1 }
                guard k > fractionStart else { throw fail("expected digits after '.' in seconds") }
            }
        }

        let hasDate = t.count >= 5 && t[4] == Byte.minus
        if hasDate {
            guard let year = number(4), expect(Byte.minus), let month = number(2), expect(Byte.minus),
                  let day = number(2) else {
                throw fail("expected a date YYYY-MM-DD")
            }
            guard (1...12).contains(month) else { throw fail("month \(month) out of range 1-12") }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
            guard day >= 1 && day <= daysInMonth else {
                throw fail("day \(day) out of range 1-\(daysInMonth) for month \(month)")
            }
            if k == t.count { return }  // local date
            guard k < t.count, t[k] == 0x54 || t[k] == 0x74 || t[k] == Byte.space else {
                throw fail("expected 'T' or a space between date and time")
            }
            k += 1
            try time()
            if k == t.count { return }  // local date-time
            if t[k] == 0x5A || t[k] == 0x7A {  // Z z
                k += 1
            } else if t[k] == Byte.plus || t[k] == Byte.minus {
                k += 1
                guard let oh = number(2), expect(Byte.colon), let om = number(2) else {
                    throw fail("expected a time offset Z or +HH:MM")
                }
                guard oh <= 23, om <= 59 else { throw fail("time offset out of range") }
            } else {
                throw fail("unexpected \(describe(at: offset + k)) after time")
            }
            guard k == t.count else { throw fail("unexpected \(describe(at: offset + k)) after time offset") }
        } else {
            try time()
            guard k == t.count else { throw fail("unexpected \(describe(at: offset + k)) after local time") }
        }
    }

    func parseNumber(_ token: ArraySlice<UInt8>, at offset: Int) throws(TOMLParseError) -> TOMLValue {
        let t = Array(token)
        let text = String(decoding: t, as: UTF8.self)
        func fail(_ why: String) -> TOMLParseError {
            error("invalid number \(text): \(why)", at: offset)
        }
        guard !t.isEmpty else { throw error("expected a value, found \(describe(at: offset))", at: offset) }

        var k = 0
        var negative = false
        var signed = false
        if t[0] == Byte.plus || t[0] == Byte.minus {
            signed = true
            negative = t[0] == Byte.minus
            k = 1
        }
        let rest = t[k...]
        if rest.elementsEqual("inf".utf8) { return .float(negative ? -Double.infinity : Double.infinity) }
        if rest.elementsEqual("nan".utf8) { return .float(negative ? -Double.nan : Double.nan) }

        // Hexadecimal, octal, binary: no sign, leading zeros allowed, value must fit Int64.
        if rest.count >= 2, t[k] == Byte.zero, t[k + 1] == 0x78 || t[k + 1] == 0x6F || t[k + 1] == 0x62 {
            let radix: Int64
            let name: String
            switch t[k + 1] {
            case 0x78: radix = 16; name = "hexadecimal"
            case 0x6F: radix = 8; name = "octal"
            default: radix = 2; name = "binary"
            }
            if signed { throw fail("a sign is not allowed on a \(name) integer") }
            k += 2
            var value: Int64 = 0
            var digits = 0
            var lastUnderscore = false
            while k < t.count {
                let c = t[k]
                if c == Byte.underscore {
                    if digits == 0 || lastUnderscore { throw fail("'_' must be between digits") }
                    lastUnderscore = true
                    k += 1
                    continue
                }
                guard let d = Byte.hexValue(c), Int64(d) < radix else {
                    throw fail("'\(Character(Unicode.Scalar(c)))' is not a \(name) digit")
                }
                let (m, o1) = value.multipliedReportingOverflow(by: radix)
                let (s, o2) = m.addingReportingOverflow(Int64(d))
                if o1 || o2 { throw fail("integer out of range (64-bit signed)") }
                value = s
                digits += 1
                lastUnderscore = false
                k += 1
            }
            if digits == 0 { throw fail("no digits after the \(name) prefix") }
            if lastUnderscore { throw fail("'_' must be between digits") }
            return .integer(value)
        }

        // Decimal integer part.
        let intStart = k
        let intDigits = try scanDigits(t, &k, fail)
        guard intDigits > 0 else { throw fail("expected digits") }
        if t[intStart] == Byte.zero && intDigits > 1 { throw fail("leading zeros are not allowed") }
        let intEnd = k

        var isFloat = false
        if k < t.count, t[k] == Byte.dot {
            k += 1
            isFloat = true
            guard try scanDigits(t, &k, fail) > 0 else { throw fail("expected digits after the decimal point") }
        }
        if k < t.count, t[k] == 0x65 || t[k] == 0x45 {  // e E
            k += 1
            isFloat = true
            if k < t.count, t[k] == Byte.plus || t[k] == Byte.minus { k += 1 }
            guard try scanDigits(t, &k, fail) > 0 else { throw fail("expected digits in the exponent") }
        }
        guard k == t.count else {
            throw fail("unexpected \(describe(at: offset + k))")
        }

        if isFloat {
            var clean = ""
            clean.reserveCapacity(t.count)
            for c in t where c != Byte.underscore {
                clean.unicodeScalars.append(Unicode.Scalar(c))
            }
            guard let d = Double(clean), d.isFinite else { throw fail("float out of range") }
            return .float(d)
        }

        var value: Int64 = 0
        for c in t[intStart..<intEnd] where c != Byte.underscore {
            let digit = Int64(c - Byte.zero)
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
            if o1 || o2 { throw fail("integer out of range (64-bit signed)") }
            value = s
        }
        return .integer(value)
    }

    /// Scans decimal digits with single underscores between them; returns the digit count.
    func scanDigits(_ t: [UInt8], _ k: inout Int,
                    _ fail: (String) -> TOMLParseError) throws(TOMLParseError) -> Int {
        var digits = 0
        var lastUnderscore = false
        while k < t.count {
            let c = t[k]
            if Byte.isDigit(c) {
                digits += 1
                lastUnderscore = false
            } else if c == Byte.underscore {
                if digits == 0 || lastUnderscore { throw fail("'_' must be between digits") }
                lastUnderscore = true
            } else {
                break
            }
            k += 1
        }
        if lastUnderscore { throw fail("'_' must be between digits") }
        return digits
    }
}

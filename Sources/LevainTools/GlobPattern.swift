/// A pattern of the `glob` tool, compiled for GNU find, which walks the
/// workspace inside the session's jail (a run of the session: its cgroup,
/// its limits, its timeout), so that no pattern and no tree costs the
/// supervisor more than one run.
///
/// The syntax is fnmatch(3)'s with FNM_PERIOD, per name: `*` and `?` match
/// within a name and never a `/`; `[...]` (`!` or `^` negates; ranges,
/// `[:class:]`; ASCII only) matches one byte; `\` quotes the next
/// character; a name's leading `.` is matched only by a literal `.`. A
/// name that is `**` matches any number of directories (zero included,
/// hidden ones too). Names are bytes (the C locale). The pattern becomes a
/// POSIX extended regular expression find matches against the whole path
/// (`-regex`, linear in the path for find's matcher), and the walk starts
/// at the pattern's literal leading names, as deep as the pattern goes.
struct GlobPattern: Equatable {
    /// Where find starts: `.` or `./` + the pattern's literal leading names.
    var start: String
    /// For find's `-regex`: the whole path as find prints it (`./a/b`).
    var regex: String
    var minDepth: Int
    /// nil when the pattern has `**`.
    var maxDepth: Int?

    static let maxBytes = 1024

    /// nil when no path can match (a bracket expression that matches no
    /// byte, say).
    static func compile(_ pattern: String) throws(BuiltinTools.Failure) -> GlobPattern? {
        guard !pattern.isEmpty, pattern.utf8.count <= maxBytes else {
            throw BuiltinTools.Failure("a glob pattern is 1 to \(maxBytes) bytes")
        }
        guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains(".."), !pattern.utf8.contains(0) else {
            throw BuiltinTools.Failure("a glob pattern is relative to the workspace and stays in it")
        }
        // "a//b" and "./a" are "a/b" and "a"; "**/**" is "**".
        var names: [String] = []
        for n in pattern.split(separator: "/").map(String.init) where n != "." {
            if n == "**" && names.last == "**" { continue }
            names.append(n)
        }
        guard !names.isEmpty else { return nil }
        let literal = names.prefix { n in n != "**" && !n.contains(where: { "*?[\\".contains($0) }) }
        let rest = names.count - literal.count
        var regex = "\\./"
        for (i, name) in names.enumerated() {
            let last = i == names.count - 1
            if name == "**" {
                if !last {
                    regex += "([^/]+/)*"
                } else if i == 0 {
                    regex += ".+"
                } else {
                    regex.removeLast()       // the "/" after the name before
                    regex += "(/.*)?"
                }
                continue
            }
            guard let r = try Self.name(Self.tokens(name)) else { return nil }
            regex += r + (last ? "" : "/")
        }
        let start = literal.isEmpty ? "." : "./" + literal.joined(separator: "/")
        let deep = names.contains("**")
        return GlobPattern(start: start, regex: regex, minDepth: literal.isEmpty ? max(1, deep ? 1 : rest) : (deep ? 0 : rest),
                           maxDepth: deep ? nil : rest)
    }

    // MARK: one name

    enum Token: Equatable {
        case star
        case any
        /// One character: its UTF-8 bytes.
        case literal(String)
        /// A bracket expression: the ASCII bytes it names, and whether it
        /// matches those or all others.
        case set(ASCIISet, negated: Bool)
    }

    static func tokens(_ name: String) throws(BuiltinTools.Failure) -> [Token] {
        let s = Array(name.unicodeScalars)
        var out: [Token] = []
        var i = 0
        while i < s.count {
            let c = s[i]
            switch c {
            case "*":
                if out.last != .star { out.append(.star) }
                i += 1
            case "?":
                out.append(.any)
                i += 1
            case "\\":
                out.append(.literal(String(i + 1 < s.count ? s[i + 1] : c)))
                i += 2
            case "[":
                if let (set, negated, next) = try bracket(s, from: i + 1) {
                    out.append(.set(set, negated: negated))
                    i = next
                } else {
                    out.append(.literal("["))
                    i += 1
                }
            default:
                out.append(.literal(String(c)))
                i += 1
            }
        }
        return out
    }

    /// The bracket expression after a `[` at `from`; nil when it is not
    /// closed (the `[` is then an ordinary character, as fnmatch has it).
    static func bracket(_ s: [Unicode.Scalar], from: Int) throws(BuiltinTools.Failure) -> (ASCIISet, Bool, Int)? {
        var j = from
        var negated = false
        if j < s.count && (s[j] == "!" || s[j] == "^") { negated = true; j += 1 }
        var set = ASCIISet()
        var first = true
        func ascii(_ c: Unicode.Scalar) throws(BuiltinTools.Failure) -> UInt8 {
            guard c.isASCII, c != "\0" else { throw BuiltinTools.Failure("a bracket expression of a glob pattern holds ASCII characters only") }
            return UInt8(c.value)
        }
        while j < s.count {
            var c = s[j]
            if c == "]" && !first { return (set, negated, j + 1) }
            first = false
            if c == "[" && j + 1 < s.count && s[j + 1] == ":" {
                var k = j + 2
                while k + 1 < s.count && !(s[k] == ":" && s[k + 1] == "]") { k += 1 }
                if k + 1 < s.count {
                    let name = String(String.UnicodeScalarView(s[(j + 2)..<k]))
                    guard let members = ASCIISet.named(name) else {
                        throw BuiltinTools.Failure("[:\(name):] is not a character class (alnum, alpha, blank, cntrl, digit, graph, lower, print, punct, space, upper, xdigit)")
                    }
                    set.formUnion(members)
                    j = k + 2
                    continue
                }
            }
            if c == "\\" && j + 1 < s.count { j += 1; c = s[j] }
            let lo = try ascii(c)
            if j + 2 < s.count && s[j + 1] == "-" && s[j + 2] != "]" {
                var k = j + 2
                if s[k] == "\\" && k + 1 < s.count { k += 1 }
                let hi = try ascii(s[k])
                if lo <= hi { for b in lo...hi { set.insert(b) } }
                j = k + 1
                continue
            }
            set.insert(lo)
            j += 1
        }
        return nil
    }

    /// A name's tokens as a regular expression of one name (no `/`), with
    /// FNM_PERIOD: at the start of the name, `*`, `?` and `[...]` do not
    /// match a `.`. nil when nothing matches.
    static func name(_ tokens: [Token]) throws(BuiltinTools.Failure) -> String? {
        guard let first = tokens.first else { return "" }
        if first == .star {
            let rest = Array(tokens.dropFirst())
            guard !rest.isEmpty else { return "[^./][^/]*" }
            // A leading * matches no leading "." (not even the empty * before
            // a literal "."): either it takes the first byte, or the rest
            // starts the name without a ".".
            let taking = sequence(rest, start: .normal).map { "[^./][^/]*" + $0 }
            let empty = sequence(rest, start: .noDot)
            switch (taking, empty) {
            case (nil, nil): return nil
            case (let t?, nil): return t
            case (nil, let e?): return e
            case (let t?, let e?): return "(" + t + "|" + e + ")"
            }
        }
        return sequence(tokens, start: .leading)
    }

    enum Start { case normal, leading, noDot }

    static func sequence(_ tokens: [Token], start: Start) -> String? {
        var r = ""
        for (i, t) in tokens.enumerated() {
            let mode: Start = i == 0 ? start : .normal
            switch t {
            case .star:
                r += "[^/]*"
            case .any:
                r += mode == .normal ? "[^/]" : "[^./]"
            case .literal(let c):
                if mode == .noDot && c == "." { return nil }
                r += escaped(c)
            case .set(let set, let negated):
                var excluded = ASCIISet()
                excluded.insert(UInt8(ascii: "/"))
                if mode != .normal { excluded.insert(UInt8(ascii: ".")) }
                guard let b = bracket(set, negated: negated, excluding: excluded) else { return nil }
                r += b
            }
        }
        return r
    }

    static func escaped(_ c: String) -> String {
        c.count == 1 && "\\.[]()*+?{}|^$".contains(c) ? "\\" + c : c
    }

    /// A bracket expression for find's regex matching one byte: of `set`
    /// (or, negated, not of it), never of `excluded`. Written so that no
    /// member is read as anything but itself: `]` first, `-` last, `^` not
    /// first, `[` before `-` or `]` only.
    static func bracket(_ set: ASCIISet, negated: Bool, excluding excluded: ASCIISet) -> String? {
        var members = set
        if negated { members.formUnion(excluded) } else { members.subtract(excluded) }
        members.remove(0)
        if !negated {
            if members.isEmpty { return nil }
            // A lone ^ cannot open a bracket expression: it is matched apart.
            if members.contains(UInt8(ascii: "^")) {
                members.remove(UInt8(ascii: "^"))
                guard let rest = bracket(members, negated: false, excluding: ASCIISet()) else { return "\\^" }
                return "(\\^|" + rest + ")"
            }
        }
        let specials: [UInt8] = Array("]^\\[-".utf8)
        var text = negated ? "[^" : "["
        if members.contains(UInt8(ascii: "]")) { text += "]" }
        var b = 1
        while b < 128 {
            let c = UInt8(b)
            guard members.contains(c), !specials.contains(c) else { b += 1; continue }
            var e = b
            while e + 1 < 128 && members.contains(UInt8(e + 1)) && !specials.contains(UInt8(e + 1)) { e += 1 }
            text += String(UnicodeScalar(UInt8(b)))
            if e > b { text += (e > b + 1 ? "-" : "") + String(UnicodeScalar(UInt8(e))) }
            b = e + 1
        }
        for c in "^\\[-".utf8 where members.contains(c) { text += String(UnicodeScalar(c)) }
        return text + "]"
    }
}

/// A set of ASCII bytes.
struct ASCIISet: Equatable {
    private var bits: (UInt64, UInt64) = (0, 0)

    static func == (a: ASCIISet, b: ASCIISet) -> Bool { a.bits == b.bits }

    var isEmpty: Bool { bits == (0, 0) }

    func contains(_ b: UInt8) -> Bool {
        b < 64 ? bits.0 & (1 << UInt64(b)) != 0 : b < 128 && bits.1 & (1 << UInt64(b - 64)) != 0
    }

    mutating func insert(_ b: UInt8) {
        if b < 64 { bits.0 |= 1 << UInt64(b) } else if b < 128 { bits.1 |= 1 << UInt64(b - 64) }
    }

    mutating func remove(_ b: UInt8) {
        if b < 64 { bits.0 &= ~(1 << UInt64(b)) } else if b < 128 { bits.1 &= ~(1 << UInt64(b - 64)) }
    }

    mutating func formUnion(_ o: ASCIISet) { bits = (bits.0 | o.bits.0, bits.1 | o.bits.1) }
    mutating func subtract(_ o: ASCIISet) { bits = (bits.0 & ~o.bits.0, bits.1 & ~o.bits.1) }

    init() {}
    init(_ predicate: (UInt8) -> Bool) {
        for b in UInt8(0)..<128 where predicate(b) { insert(b) }
    }

    /// The POSIX classes of the C locale.
    static func named(_ name: String) -> ASCIISet? {
        func upper(_ b: UInt8) -> Bool { b >= 65 && b <= 90 }
        func lower(_ b: UInt8) -> Bool { b >= 97 && b <= 122 }
        func digit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        func graph(_ b: UInt8) -> Bool { b >= 33 && b <= 126 }
        switch name {
        case "alpha": return ASCIISet { upper($0) || lower($0) }
        case "upper": return ASCIISet(upper)
        case "lower": return ASCIISet(lower)
        case "digit": return ASCIISet(digit)
        case "alnum": return ASCIISet { upper($0) || lower($0) || digit($0) }
        case "xdigit": return ASCIISet { digit($0) || ($0 >= 65 && $0 <= 70) || ($0 >= 97 && $0 <= 102) }
        case "space": return ASCIISet { $0 == 32 || ($0 >= 9 && $0 <= 13) }
        case "blank": return ASCIISet { $0 == 32 || $0 == 9 }
        case "cntrl": return ASCIISet { $0 < 32 || $0 == 127 }
        case "graph": return ASCIISet(graph)
        case "print": return ASCIISet { graph($0) || $0 == 32 }
        case "punct": return ASCIISet { graph($0) && !upper($0) && !lower($0) && !digit($0) }
        default: return nil
        }
    }
}

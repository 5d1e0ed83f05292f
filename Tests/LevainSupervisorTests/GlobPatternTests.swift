import Foundation
@testable import LevainTools
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The glob tool's patterns as find's regular expressions: the same
/// answers as fnmatch(3) with FNM_PERIOD name by name (ReferenceGlob),
/// checked with the C library's own POSIX extended matcher.
@Suite struct GlobPatternTests {
    /// Whether find would print `path` (relative to the workspace) for `g`.
    static func findMatches(_ g: GlobPattern, _ path: String) -> Bool {
        let printed = "./" + path
        let depth = path.split(separator: "/").count - (g.start == "." ? 0 : g.start.split(separator: "/").count - 1)
        guard g.start == "." || printed == g.start || printed.hasPrefix(g.start + "/") else { return false }
        guard depth >= g.minDepth, g.maxDepth.map({ depth <= $0 }) ?? true else { return false }
        var re = regex_t()
        guard regcomp(&re, "^(" + g.regex + ")$", REG_EXTENDED | REG_NOSUB) == 0 else {
            Issue.record("regcomp failed for \(g.regex)")
            return false
        }
        defer { regfree(&re) }
        return regexec(&re, printed, 0, nil, 0) == 0
    }

    static func agrees(_ pattern: String, _ paths: [String]) throws -> [String] {
        let g = try GlobPattern.compile(pattern)
        var wrong: [String] = []
        for p in paths {
            let want = ReferenceGlob.matches(pattern, p)
            let got = g.map { findMatches($0, p) } ?? false
            if want != got { wrong.append("\(pattern) ~ \(p): fnmatch \(want), find \(got)") }
        }
        return wrong
    }

    @Test("hand-picked patterns: *, ?, brackets, leading dots, ** anywhere, escapes")
    func handPicked() throws {
        let paths = ["a", ".a", "a.txt", ".txt", "x.txt", "a/b", "a/.b", "a/b/c.txt", "a/b/.c.txt", ".git/config", "src/x.py",
                     "src/lib/y.py", "src/lib/deep/z.py", "b-c", "b]c", "b^c", "b\\c", "b[c", "a*b", "-x", "a/b/c/d/e"]
        let patterns = ["*", ".*", "*.txt", "?.txt", "a/*", "a/.*", "**", "**/*.py", "src/**", "src/**/*.py", "**/c.txt", "a/**/c.txt",
                        "**/**/**/**/e", "[ab]", "[!a]", "[^a]*", "b[]]c", "b[]-]c", "b[-]c", "b[\\^]c", "b[\\\\]c", "b[[]c", "b[!a-z]c",
                        "[[:alpha:]]", "[[:punct:]]*", "b[[:punct:]]c", "[.]a", "[.a]", "a\\*b", "a\\?b", "-x", "*/*/*", "a/b/c/d/e",
                        "*[.]txt", "[a-", "a[", "**/.*", "*a", "a/**/e", "?", "./a", "a//b", "src/lib/*.py"]
        var wrong: [String] = []
        for p in patterns { wrong += try Self.agrees(p, paths) }
        #expect(wrong.isEmpty, "\(wrong)")
    }

    @Test("the reference's leading-period rule, against glibc where glibc is right")
    func referencePeriod() {
        for (p, n, want) in [("*", ".a", false), (".*", ".a", true), ("?a", ".a", false), ("[.]a", ".a", false), ("\\.a", ".a", true),
                             ("*?[.]", "c.", true), ("*", "a.b", true), ("[!a]*", ".b", false)] {
            #expect(ReferenceGlob.fnmatchPeriod(p, n) == want, "\(p) ~ \(n)")
        }
        // Where glibc's FNM_PERIOD has no bug, the two agree.
        for (p, n) in [("*", ".a"), (".*", ".a"), ("?a", ".a"), ("[.]a", ".a"), ("*", "a.b"), ("a*", "a.b")] {
            #expect(ReferenceGlob.fnmatchPeriod(p, n) == (fnmatch(p, n, FNM_PERIOD) == 0), "\(p) ~ \(n)")
        }
    }

    @Test("random patterns and paths agree with fnmatch")
    func random() throws {
        var rng = SystemRandomNumberGenerator()
        let atoms = ["a", "b", ".", "*", "?", "[ab]", "[!a]", "[.b]", "[!.]", "[a-c]", "-", "\\*"]
        let chars = ["a", "b", "c", ".", "-", "*"]
        var wrong: [String] = []
        for _ in 0..<400 {
            let names = (0..<Int.random(in: 1...4, using: &rng)).map { _ -> String in
                if Int.random(in: 0..<5, using: &rng) == 0 { return "**" }
                return (0..<Int.random(in: 1...3, using: &rng)).map { _ in atoms.randomElement(using: &rng)! }.joined()
            }
            if names.contains("..") { continue }
            let pattern = names.joined(separator: "/")
            let paths = (0..<30).map { _ in
                (0..<Int.random(in: 1...5, using: &rng)).map { _ in
                    (0..<Int.random(in: 1...3, using: &rng)).map { _ in chars.randomElement(using: &rng)! }.joined()
                }.joined(separator: "/")
            }
            wrong += try Self.agrees(pattern, paths)
            if wrong.count > 5 { break }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
    }

    @Test("the walk starts at the literal names and goes as deep as the pattern")
    func walk() throws {
        let a = try #require(try GlobPattern.compile("src/lib/*.py"))
        #expect(a.start == "./src/lib" && a.minDepth == 1 && a.maxDepth == 1)
        let b = try #require(try GlobPattern.compile("**/**/**/x"))
        #expect(b.start == "." && b.maxDepth == nil && b.regex == "\\./([^/]+/)*x")
        let c = try #require(try GlobPattern.compile("a/**"))
        #expect(c.start == "./a" && c.minDepth == 0 && c.maxDepth == nil)
        let d = try #require(try GlobPattern.compile("*/*"))
        #expect(d.start == "." && d.minDepth == 2 && d.maxDepth == 2)
        // A name nothing matches (a bracket cannot match a leading "."): nothing to walk.
        #expect(try GlobPattern.compile("a/[.]x") == nil)
    }

    @Test("refused: leaving the workspace, non-ASCII brackets, unknown classes, long patterns; a control that compiles")
    func refused() throws {
        for bad in ["/etc/*", "a/../b", "[é]", "[[:nope:]]", String(repeating: "a", count: 1025), ""] {
            #expect(throws: (any Error).self, "\(bad)") { try GlobPattern.compile(bad) }
        }
        #expect(try GlobPattern.compile("é*/[a]") != nil)
    }

    @Test("edit_file's search finds non-overlapping occurrences in linear time")
    func occurrences() {
        let hay = Array("abcabcabd".utf8)
        #expect(BuiltinTools.occurrences(of: Array("abc".utf8), in: hay, upTo: 5) == [0, 3])
        #expect(BuiltinTools.occurrences(of: Array("abd".utf8), in: hay, upTo: 5) == [6])
        #expect(BuiltinTools.occurrences(of: Array("aa".utf8), in: Array("aaaa".utf8), upTo: 5) == [0, 2])
        #expect(BuiltinTools.occurrences(of: Array("x".utf8), in: hay, upTo: 5) == [])
        // The worst case for a naive search: 4 MiB of "a", a needle of 64 KiB "a" then "b".
        let big = [UInt8](repeating: 0x61, count: 4 << 20)
        let needle = [UInt8](repeating: 0x61, count: 64 << 10) + [0x62]
        let t0 = Date()
        #expect(BuiltinTools.occurrences(of: needle, in: big, upTo: 2).isEmpty)
        #expect(Date().timeIntervalSince(t0) < 5)
    }
}

/// The glob semantics, written the obvious way (exponential in the number
/// of `**`: for small cases only): `*`, `?`, `[...]` within a name, a name's
/// leading `.` matched only by a `.`, `**` for any number of directories.
enum ReferenceGlob {
    static func matches(_ pattern: String, _ path: String) -> Bool {
        match(pattern.split(separator: "/").map(String.init).filter { $0 != "." }, path.split(separator: "/").map(String.init))
    }

    private static func match(_ p: [String], _ s: [String]) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        if first == "**" {
            let rest = Array(p.dropFirst())
            for i in 0...s.count where match(rest, Array(s[i...])) { return true }
            return false
        }
        guard let name = s.first, fnmatchPeriod(first, name) else { return false }
        return match(Array(p.dropFirst()), Array(s.dropFirst()))
    }

    /// fnmatch(3) with FNM_PERIOD as POSIX defines it: a name's leading
    /// period is matched only by a period in the pattern (not by `*`, `?`
    /// or a bracket), the rest as without the flag. Not glibc's FNM_PERIOD
    /// itself: its `*` followed by `?` checks the period at the wrong place
    /// (fnmatch("*?[.]", "c.", FNM_PERIOD) is a mismatch in glibc 2.36,
    /// while "?[.]" and "*[.]" match), which made the random test fail.
    static func fnmatchPeriod(_ pattern: String, _ name: String) -> Bool {
        if name.hasPrefix(".") && !(pattern.hasPrefix(".") || pattern.hasPrefix("\\.")) { return false }
        return fnmatch(pattern, name, 0) == 0
    }
}

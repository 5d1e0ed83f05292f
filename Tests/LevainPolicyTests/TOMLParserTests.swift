import Testing
@testable import LevainPolicy

// MARK: - Helpers

private extension TOMLValue {
    var asString: String? { if case .string(let v) = self { v } else { nil } }
    var asInt: Int64? { if case .integer(let v) = self { v } else { nil } }
    var asDouble: Double? { if case .float(let v) = self { v } else { nil } }
    var asBool: Bool? { if case .boolean(let v) = self { v } else { nil } }
    var asDateTime: String? { if case .datetime(let v) = self { v } else { nil } }
    var asArray: [TOMLNode]? { if case .array(let v) = self { v } else { nil } }
    var asTable: TOMLTable? { if case .table(let v) = self { v } else { nil } }
}

private extension TOMLTable {
    /// Follows nested tables; an integer part indexes into an array.
    func node(_ path: String...) -> TOMLNode? {
        var table = self
        var node: TOMLNode?
        for part in path {
            if let n = node {
                if let idx = Int(part), let array = n.value.asArray {
                    guard idx < array.count else { return nil }
                    node = array[idx]
                    continue
                }
                guard let t = n.value.asTable else { return nil }
                table = t
            }
            guard let next = table[part] else { return nil }
            node = next
        }
        return node
    }
}

private func pos(_ line: Int, _ column: Int) -> TOMLPosition { TOMLPosition(line: line, column: column) }

private func parseError(_ text: String) -> TOMLParseError? {
    do {
        _ = try TOMLParser.parse(text)
        return nil
    } catch {
        return error
    }
}

private func expectError(_ text: String, line: Int, _ fragment: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    guard let e = parseError(text) else {
        Issue.record("expected an error containing \"\(fragment)\" for: \(text)", sourceLocation: sourceLocation)
        return
    }
    #expect(e.position.line == line, "\(e)", sourceLocation: sourceLocation)
    #expect(e.message.contains(fragment), "\(e)", sourceLocation: sourceLocation)
}

/// A small deterministic generator so garbage tests are reproducible.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

// MARK: - Values

@Suite("TOML values")
struct TOMLValueTests {
    @Test func basicStringsWithEscapes() throws {
        let t = try TOMLParser.parse(#"s = "a\tb\nc\"d\\e\bf\fg\rh""#)
        #expect(t["s"]?.value.asString == "a\tb\nc\"d\\e\u{8}f\u{C}g\rh")
    }

    @Test func unicodeEscapes() throws {
        let t = try TOMLParser.parse(#"s = "\u00E9\U0001F600\u0000""#)
        #expect(t["s"]?.value.asString == "é😀\u{0}")
    }

    @Test func literalStrings() throws {
        let t = try TOMLParser.parse(#"p = 'C:\Users\nodejs\templates' "#)
        #expect(t["p"]?.value.asString == #"C:\Users\nodejs\templates"#)
        let u = try TOMLParser.parse("q = '<\\i\\c*\\s*>' \n e = ''")
        #expect(u["q"]?.value.asString == #"<\i\c*\s*>"#)
        #expect(u["e"]?.value.asString == "")
    }

    @Test func multilineBasicStrings() throws {
        let text = "s = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n" +
            "t = \"\"\"\nThe quick brown \\\n\n\n  fox jumps \\   \n    over.\"\"\"\n"
        let t = try TOMLParser.parse(text)
        #expect(t["s"]?.value.asString == "Roses are red\nViolets are blue")
        #expect(t["t"]?.value.asString == "The quick brown fox jumps over.")
    }

    @Test func multilineQuotesAtEnd() throws {
        let t = try TOMLParser.parse(#"""
        a = """Here are two quotation marks: "". Simple enough."""
        b = """Here are three quotation marks: ""\"."""
        c = """"This," she said, "is just a pointless statement.""""
        d = """ends with two"" """
        e = """x"""""
        """#)
        #expect(t["a"]?.value.asString == #"Here are two quotation marks: "". Simple enough."#)
        #expect(t["b"]?.value.asString == #"Here are three quotation marks: """."#)
        #expect(t["c"]?.value.asString == #""This," she said, "is just a pointless statement.""#)
        #expect(t["d"]?.value.asString == #"ends with two"" "#)
        #expect(t["e"]?.value.asString == #"x"""#)
    }

    @Test func multilineLiteralStrings() throws {
        let t = try TOMLParser.parse("""
        re = '''I [dw]on't need \\d{2} apples'''
        lines = '''
        The first newline is
        trimmed in raw strings.
        '''
        q = ''''That,' she said, 'is still pointless.''''
        """)
        #expect(t["re"]?.value.asString == #"I [dw]on't need \d{2} apples"#)
        #expect(t["lines"]?.value.asString == "The first newline is\ntrimmed in raw strings.\n")
        #expect(t["q"]?.value.asString == "'That,' she said, 'is still pointless.'")
    }

    @Test func integers() throws {
        let t = try TOMLParser.parse("""
        a = +99
        b = 42
        c = 0
        d = -17
        e = 1_000
        f = 5_349_221
        g = 9223372036854775807
        h = -9223372036854775808
        i = -0
        j = +0
        """)
        #expect(t["a"]?.value.asInt == 99)
        #expect(t["b"]?.value.asInt == 42)
        #expect(t["c"]?.value.asInt == 0)
        #expect(t["d"]?.value.asInt == -17)
        #expect(t["e"]?.value.asInt == 1000)
        #expect(t["f"]?.value.asInt == 5_349_221)
        #expect(t["g"]?.value.asInt == Int64.max)
        #expect(t["h"]?.value.asInt == Int64.min)
        #expect(t["i"]?.value.asInt == 0)
        #expect(t["j"]?.value.asInt == 0)
    }

    @Test func radixIntegers() throws {
        let t = try TOMLParser.parse("""
        h1 = 0xDEADBEEF
        h2 = 0xdead_beef
        h3 = 0x7FFFFFFFFFFFFFFF
        o1 = 0o01234567
        o2 = 0o755
        b1 = 0b11010110
        b2 = 0b0000_0001
        """)
        #expect(t["h1"]?.value.asInt == 0xDEADBEEF)
        #expect(t["h2"]?.value.asInt == 0xDEADBEEF)
        #expect(t["h3"]?.value.asInt == Int64.max)
        #expect(t["o1"]?.value.asInt == 0o01234567)
        #expect(t["o2"]?.value.asInt == 0o755)
        #expect(t["b1"]?.value.asInt == 0b11010110)
        #expect(t["b2"]?.value.asInt == 1)
    }

    @Test func floats() throws {
        let t = try TOMLParser.parse("""
        a = +1.0
        b = 3.1415
        c = -0.01
        d = 5e+22
        e = 1e06
        f = -2E-2
        g = 6.626e-34
        h = 224_617.445_991_228
        i = 0e0
        j = -0.0
        """)
        #expect(t["a"]?.value.asDouble == 1.0)
        #expect(t["b"]?.value.asDouble == 3.1415)
        #expect(t["c"]?.value.asDouble == -0.01)
        #expect(t["d"]?.value.asDouble == 5e22)
        #expect(t["e"]?.value.asDouble == 1e6)
        #expect(t["f"]?.value.asDouble == -2e-2)
        #expect(t["g"]?.value.asDouble == 6.626e-34)
        #expect(t["h"]?.value.asDouble == 224_617.445_991_228)
        #expect(t["i"]?.value.asDouble == 0)
        let j = try #require(t["j"]?.value.asDouble)
        #expect(j == 0 && j.sign == .minus)
    }

    @Test func specialFloats() throws {
        let t = try TOMLParser.parse("a = inf\nb = +inf\nc = -inf\nd = nan\ne = +nan\nf = -nan")
        #expect(t["a"]?.value.asDouble == .infinity)
        #expect(t["b"]?.value.asDouble == .infinity)
        #expect(t["c"]?.value.asDouble == -.infinity)
        for key in ["d", "e", "f"] {
            #expect(t[key]?.value.asDouble?.isNaN == true)
        }
        #expect(t["f"]?.value.asDouble?.sign == .minus)
    }

    @Test func booleans() throws {
        let t = try TOMLParser.parse("yes = true\nno = false")
        #expect(t["yes"]?.value.asBool == true)
        #expect(t["no"]?.value.asBool == false)
        #expect(t["yes"]?.value.typeName == "boolean")
    }

    @Test func offsetDateTimes() throws {
        let t = try TOMLParser.parse("""
        a = 1979-05-27T07:32:00Z
        b = 1979-05-27T00:32:00-07:00
        c = 1979-05-27T00:32:00.999999-07:00
        d = 1979-05-27 07:32:00Z
        e = 1979-05-27t07:32:00z
        f = 2000-02-29T23:59:60+14:00
        """)
        #expect(t["a"]?.value.asDateTime == "1979-05-27T07:32:00Z")
        #expect(t["b"]?.value.asDateTime == "1979-05-27T00:32:00-07:00")
        #expect(t["c"]?.value.asDateTime == "1979-05-27T00:32:00.999999-07:00")
        #expect(t["d"]?.value.asDateTime == "1979-05-27 07:32:00Z")
        #expect(t["e"]?.value.asDateTime == "1979-05-27t07:32:00z")
        #expect(t["f"]?.value.asDateTime == "2000-02-29T23:59:60+14:00")
        #expect(t["a"]?.value.typeName == "datetime")
    }

    @Test func localDateTimes() throws {
        let t = try TOMLParser.parse("""
        ldt = 1979-05-27T07:32:00.5
        lds = 1979-05-27 07:32:00
        ld = 1979-05-27 # a date, then a comment
        lt1 = 07:32:00
        lt2 = 00:32:00.999999
        arr = [1979-05-27, 07:32:00]
        """)
        #expect(t["ldt"]?.value.asDateTime == "1979-05-27T07:32:00.5")
        #expect(t["lds"]?.value.asDateTime == "1979-05-27 07:32:00")
        #expect(t["ld"]?.value.asDateTime == "1979-05-27")
        #expect(t["lt1"]?.value.asDateTime == "07:32:00")
        #expect(t["lt2"]?.value.asDateTime == "00:32:00.999999")
        #expect(t["arr"]?.value.asArray?.compactMap(\.value.asDateTime) == ["1979-05-27", "07:32:00"])
    }

    @Test func arraysMixedAndNested() throws {
        let t = try TOMLParser.parse("""
        ints = [ 1, 2, 3 ]
        nested = [ [ 1, 2 ], ["a", 'b', "c"] ]
        mixed = [ 0.1, 0.2, 0.5, 1, 2, 5, "x", { k = 1 }, true ]
        """)
        #expect(t["ints"]?.value.asArray?.compactMap(\.value.asInt) == [1, 2, 3])
        let nested = try #require(t["nested"]?.value.asArray)
        #expect(nested.count == 2)
        #expect(nested[1].value.asArray?.compactMap(\.value.asString) == ["a", "b", "c"])
        let mixed = try #require(t["mixed"]?.value.asArray)
        #expect(mixed.map(\.value.typeName) == ["float", "float", "float", "integer", "integer", "integer",
                                                "string", "table", "boolean"])
        #expect(mixed[7].value.asTable?["k"]?.value.asInt == 1)
    }

    @Test func multilineArraysWithCommentsAndTrailingComma() throws {
        let t = try TOMLParser.parse("""
        a = [ # start
          1, # one
          # a comment line

          2,
        ] # done
        empty = [
        ]
        e2 = []
        """)
        #expect(t["a"]?.value.asArray?.compactMap(\.value.asInt) == [1, 2])
        #expect(t["empty"]?.value.asArray?.isEmpty == true)
        #expect(t["e2"]?.value.asArray?.isEmpty == true)
    }

    @Test func inlineTables() throws {
        let t = try TOMLParser.parse("""
        name = { first = "Tom", last = "Preston-Werner" }
        point = {x=1,y=2}
        animal = { type.name = "pug", type.size = "small" }
        empty = {}
        deep = { a = { b = { c = [1, { d = 2 }] } } }
        multi = { list = [
          1,
          2,
        ] }
        """)
        #expect(t.node("name", "first")?.value.asString == "Tom")
        #expect(t.node("point", "y")?.value.asInt == 2)
        #expect(t.node("animal", "type", "size")?.value.asString == "small")
        #expect(t["empty"]?.value.asTable?.entries.isEmpty == true)
        #expect(t.node("deep", "a", "b", "c", "1", "d")?.value.asInt == 2)
        #expect(t.node("multi", "list")?.value.asArray?.count == 2)
    }

    @Test func tablesAndImplicitSuperTables() throws {
        let t = try TOMLParser.parse("""
        [x.y.z.w]
        v = 1
        [x]
        u = 2
        [ dog . "tater.man" ]
        type.name = "pug"
        [j . "ʞ" . 'l']
        k = 3
        """)
        #expect(t.node("x", "y", "z", "w", "v")?.value.asInt == 1)
        #expect(t.node("x", "u")?.value.asInt == 2)
        #expect(t.node("dog", "tater.man", "type", "name")?.value.asString == "pug")
        #expect(t.node("j", "ʞ", "l", "k")?.value.asInt == 3)
    }

    @Test func arraysOfTables() throws {
        let t = try TOMLParser.parse("""
        [[fruits]]
        name = "apple"

        [fruits.physical]
        color = "red"

        [[fruits.varieties]]
        name = "red delicious"

        [[fruits.varieties]]
        name = "granny smith"

        [[fruits]]
        name = "banana"

        [[fruits.varieties]]
        name = "plantain"
        """)
        let fruits = try #require(t["fruits"]?.value.asArray)
        #expect(fruits.count == 2)
        #expect(t.node("fruits", "0", "name")?.value.asString == "apple")
        #expect(t.node("fruits", "0", "physical", "color")?.value.asString == "red")
        #expect(t.node("fruits", "0", "varieties")?.value.asArray?.count == 2)
        #expect(t.node("fruits", "0", "varieties", "1", "name")?.value.asString == "granny smith")
        #expect(t.node("fruits", "1", "varieties", "0", "name")?.value.asString == "plantain")
    }

    @Test func keysBareQuotedDotted() throws {
        let t = try TOMLParser.parse("""
        key = 1
        bare_key-2 = 2
        1234 = 3
        "127.0.0.1" = 4
        "character encoding" = 5
        'quoted "value"' = 6
        "ʎǝʞ" = 7
        "" = 8
        site."google.com" = 9
        fruit . color = 10
        3.14159 = "pi"
        "a\\tb" = 11
        """)
        #expect(t["bare_key-2"]?.value.asInt == 2)
        #expect(t["1234"]?.value.asInt == 3)
        #expect(t["127.0.0.1"]?.value.asInt == 4)
        #expect(t["character encoding"]?.value.asInt == 5)
        #expect(t[#"quoted "value""#]?.value.asInt == 6)
        #expect(t["ʎǝʞ"]?.value.asInt == 7)
        #expect(t[""]?.value.asInt == 8)
        #expect(t.node("site", "google.com")?.value.asInt == 9)
        #expect(t.node("fruit", "color")?.value.asInt == 10)
        #expect(t.node("3", "14159")?.value.asString == "pi")
        #expect(t["a\tb"]?.value.asInt == 11)
    }

    @Test func dottedKeysThenSubTableHeaders() throws {
        let t = try TOMLParser.parse("""
        [fruit]
        apple.color = "red"
        apple.taste.sweet = true

        [fruit.apple.texture]
        smooth = true
        """)
        #expect(t.node("fruit", "apple", "color")?.value.asString == "red")
        #expect(t.node("fruit", "apple", "taste", "sweet")?.value.asBool == true)
        #expect(t.node("fruit", "apple", "texture", "smooth")?.value.asBool == true)
    }

    @Test func dottedKeysThroughImplicitTables() throws {
        // `a.b` was only created as a parent of [a.b.c]; dotted keys in [a] may use it.
        let t = try TOMLParser.parse("[a.b.c]\nz = 1\n[a]\nb.x = 2\n")
        #expect(t.node("a", "b", "x")?.value.asInt == 2)
        #expect(t.node("a", "b", "c", "z")?.value.asInt == 1)
    }

    @Test func commentsEverywhere() throws {
        let t = try TOMLParser.parse("""
        # full line comment
        key = "value"  # trailing
        [t] # after header
        [[a]] # after array header
        x = [1, # inside
        2]
        #no space ¡unicode comment! \t tab
        """)
        #expect(t["key"]?.value.asString == "value")
        #expect(t.node("a", "0", "x")?.value.asArray?.count == 2)
    }

    @Test func sourceOrderAndKeys() throws {
        let t = try TOMLParser.parse("z = 1\na = 2\nm = 3\n[b]\n[c]")
        #expect(t.keys == ["z", "a", "m", "b", "c"])
        #expect(t.entries.map(\.key) == t.keys)
        #expect(t["missing"] == nil)
    }

    @Test func emptyDocuments() throws {
        #expect(try TOMLParser.parse("").entries.isEmpty)
        #expect(try TOMLParser.parse("\n\n  \t\n# only a comment").entries.isEmpty)
    }

    @Test func byteOrderMarkIsSkipped() throws {
        let t = try TOMLParser.parse("\u{FEFF}a = 1")
        #expect(t["a"]?.keyPosition == pos(1, 1))
    }

    @Test func tableEntriesCanBeEdited() throws {
        var t = try TOMLParser.parse("a = 1\nb = 2")
        t.entries.removeFirst()
        #expect(t["a"] == nil)
        #expect(t["b"]?.value.asInt == 2)
    }
}

// MARK: - Line endings and positions

@Suite("TOML positions")
struct TOMLPositionTests {
    @Test func crlfLineEndings() throws {
        let text = "a = 1\r\n# c\r\n[t]\r\nb = \"\"\"\r\nx\r\ny\"\"\"\r\nc = '''\r\nl\r\n'''\r\nd = [\r\n1,\r\n2]\r\n"
        let t = try TOMLParser.parse(text)
        #expect(t["a"]?.value.asInt == 1)
        #expect(t.node("t", "b")?.value.asString == "x\ny")
        #expect(t.node("t", "c")?.value.asString == "l\n")
        #expect(t.node("t", "d")?.value.asArray?.count == 2)
        #expect(t.node("t", "b")?.keyPosition == pos(4, 1))
        #expect(t.node("t", "c")?.keyPosition == pos(7, 1))
        #expect(t.node("t", "d")?.position == pos(10, 5))
    }

    @Test func positionsOfKeysAndValues() throws {
        let t = try TOMLParser.parse("""
        title = "x"
          indented   =   42
        [server]
        host = "h"
        [server.tls]
            cert = 'c'
        """)
        #expect(t["title"]?.keyPosition == pos(1, 1))
        #expect(t["title"]?.position == pos(1, 9))
        #expect(t["indented"]?.keyPosition == pos(2, 3))
        #expect(t["indented"]?.position == pos(2, 18))
        #expect(t["server"]?.position == pos(3, 1))
        #expect(t["server"]?.keyPosition == pos(3, 2))
        #expect(t.node("server", "host")?.keyPosition == pos(4, 1))
        #expect(t.node("server", "tls")?.position == pos(5, 1))
        #expect(t.node("server", "tls")?.keyPosition == pos(5, 9))
        #expect(t.node("server", "tls", "cert")?.keyPosition == pos(6, 5))
        #expect(t.node("server", "tls", "cert")?.position == pos(6, 12))
    }

    @Test func positionsOfImplicitTables() throws {
        let t = try TOMLParser.parse("\n[a.b.c]\n[x.y]\n[x]\n")
        // a and a.b were created by the [a.b.c] header: their position is their key.
        #expect(t["a"]?.position == pos(2, 2))
        #expect(t.node("a", "b")?.position == pos(2, 4))
        #expect(t.node("a", "b", "c")?.position == pos(2, 1))
        #expect(t.node("a", "b", "c")?.keyPosition == pos(2, 6))
        // x was defined later by its own header, which becomes its position.
        #expect(t["x"]?.position == pos(4, 1))
        #expect(t["x"]?.keyPosition == pos(4, 2))
    }

    @Test func positionsOfArraysOfTables() throws {
        let t = try TOMLParser.parse("[[p]]\nn = 1\n\n[[p]]\nn = 2\n[p.q]\nm = 3\n")
        let p = try #require(t["p"])
        #expect(p.position == pos(1, 1))
        #expect(p.keyPosition == pos(1, 3))
        let items = try #require(p.value.asArray)
        #expect(items.map(\.position) == [pos(1, 1), pos(4, 1)])
        #expect(items.map(\.keyPosition) == [pos(1, 3), pos(4, 3)])
        #expect(t.node("p", "1", "n")?.keyPosition == pos(5, 1))
        #expect(t.node("p", "1", "q", "m")?.keyPosition == pos(7, 1))
        #expect(t.node("p", "1", "q")?.position == pos(6, 1))
    }

    @Test func positionsOfDottedKeys() throws {
        let t = try TOMLParser.parse("[s]\nlimits . memory = \"1G\"\nlimits.cpu = 2\n")
        #expect(t.node("s", "limits")?.position == pos(2, 1))
        #expect(t.node("s", "limits")?.keyPosition == pos(2, 1))
        #expect(t.node("s", "limits", "memory")?.keyPosition == pos(2, 10))
        #expect(t.node("s", "limits", "memory")?.position == pos(2, 19))
        #expect(t.node("s", "limits", "cpu")?.keyPosition == pos(3, 8))
    }

    @Test func positionsInsideInlineTablesAndArrays() throws {
        let t = try TOMLParser.parse("x = 0\nit = { a = 1, b = [ 10,\n  20 ] }\n")
        #expect(t["it"]?.position == pos(2, 6))
        #expect(t["it"]?.keyPosition == pos(2, 1))
        #expect(t.node("it", "b")?.keyPosition == pos(2, 15))
        let b = try #require(t.node("it", "b")?.value.asArray)
        #expect(b.map(\.position) == [pos(2, 21), pos(3, 3)])
        #expect(b.allSatisfy { $0.keyPosition == nil })
    }

    @Test func columnsCountBytes() throws {
        let t = try TOMLParser.parse("\"é\" = 1\nk = { \"ü\" = 2, x = 3 }")
        #expect(t["é"]?.position == pos(1, 8))
        #expect(t.node("k", "ü")?.keyPosition == pos(2, 7))
        #expect(t.node("k", "x")?.keyPosition == pos(2, 17))
    }

    @Test func descriptions() {
        #expect(pos(3, 7).description == "3:7")
        let e = TOMLParseError(position: pos(2, 5), message: "boom")
        #expect(e.description == "2:5: boom")
    }
}

// MARK: - Errors

@Suite("TOML errors")
struct TOMLErrorTests {
    @Test func columnsAreBytesInErrors() throws {
        let e = try #require(parseError("s = \"é\" x"))
        #expect(e.position == pos(1, 10))  // é is two bytes
        #expect(e.message.contains("expected end of line after value"))
    }

    @Test func duplicateKeys() {
        expectError("name = 1\nname = 2", line: 2, "duplicate key \"name\"")
        expectError("a.b = 1\na.b = 2", line: 2, "duplicate key \"a.b\"")
        expectError("'a' = 1\n\"a\" = 2", line: 2, "duplicate key")
        expectError("[t]\nx = 1\n\nx = 2", line: 4, "duplicate key \"x\"")
        expectError("[a.b]\n[a]\nb = 1", line: 3, "duplicate key \"b\"")
    }

    @Test func tableDefinedTwice() {
        expectError("[a]\nx = 1\n[a]", line: 3, "table [a] is defined twice")
        expectError("[a.b]\n[a]\n[a]", line: 3, "table [a] is defined twice")
        expectError("[a]\n[a.b]\n[a.b]", line: 3, "table [a.b] is defined twice")
    }

    @Test func headerRedefiningDottedTable() {
        expectError("a.b = 1\n[a]", line: 2, "already defined by dotted keys")
        expectError("[t1]\nt2.t3.v = 0\n[t1.t2]", line: 3, "already defined by dotted keys")
        expectError("[fruit]\napple.taste.sweet = true\n[fruit.apple.taste]", line: 3, "already defined by dotted keys")
    }

    @Test func dottedKeyExtendingHeaderTable() {
        expectError("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", line: 4, "dotted key cannot extend table \"b.c\"")
        expectError("[a.b.c.d]\nz = 9\n[a]\nb.c.d.k.t = 1", line: 4, "defined by a [header]")
    }

    @Test func headerAfterDottedKeysUsedAnImplicitTable() {
        // a.b was implicit, then dotted keys in [a] defined it: no header may define it now.
        expectError("[a.b.c]\n[a]\nb.x = 1\n[a.b]", line: 4, "table [a.b] is already defined by dotted keys")
    }

    @Test func extendingInlineTables() {
        expectError("a = {b = 1}\na.c = 2", line: 2, "inline table \"a\" cannot be extended")
        expectError("a = {b = 1}\n[a]", line: 2, "inline table \"a\" cannot be redefined")
        expectError("a = {b = 1}\n[a.c]", line: 2, "inline table \"a\" cannot be extended")
        expectError("a = {b = {}, b.c = 1}", line: 1, "inline table \"b\" cannot be extended")
        expectError("a = {b.c = 1, b = 2}", line: 1, "duplicate key \"b\"")
        expectError("a = [{b = 1}]\n[[a]]", line: 2, "cannot append to static array \"a\"")
    }

    @Test func staticArrays() {
        expectError("a = [1]\n[[a]]", line: 2, "cannot append to static array")
        expectError("a = [{}]\n[a.b]", line: 2, "static array \"a\" cannot be extended")
        expectError("a = []\na.b = 1", line: 2, "static array \"a\" cannot be extended")
    }

    @Test func tableVersusArrayOfTables() {
        expectError("[a]\n[[a]]", line: 2, "already a table")
        expectError("[[a]]\n[a]", line: 2, "already defined as an array of tables")
        expectError("[a.b]\n[[a]]", line: 2, "already a table")
        expectError("[[a.b]]\n[a]\nb.c = 1", line: 3, "cannot extend array of tables \"b\"")
    }

    @Test func scalarUsedAsTable() {
        expectError("a = 1\na.b = 2", line: 2, "key \"a\" is already defined as integer, not a table")
        expectError("a = 'x'\n[a.b]", line: 2, "already defined as string")
        expectError("[t]\na = true\n[t.a]", line: 3, "key \"t.a\" is already defined as boolean")
        expectError("a = 1\n[[a]]", line: 2, "already defined as integer")
    }

    @Test func missingEquals() {
        expectError("key \"value\"", line: 1, "expected '=' after key")
        expectError("\n\nkey\n= 1", line: 3, "expected '=' after key")
        expectError("a.b", line: 1, "expected '=' after key")
    }

    @Test func missingValue() {
        expectError("a =", line: 1, "expected a value, found end of file")
        expectError("a = \nb = 1", line: 1, "expected a value, found end of line")
        expectError("a = # c", line: 1, "expected a value")
        expectError("a = =", line: 1, "expected a value, found '='")
    }

    @Test func invalidKeys() {
        expectError("= 1", line: 1, "expected a key, found '='")
        expectError("a..b = 1", line: 1, "expected a key, found '.'")
        expectError("a. = 1", line: 1, "expected a key")
        expectError("é = 1", line: 1, "expected a key, found 'é'")
        expectError("a b = 1", line: 1, "expected '=' after key")
        expectError("\"\"\"k\"\"\" = 1", line: 1, "multi-line string cannot be used as a key")
        expectError("'''k''' = 1", line: 1, "multi-line string cannot be used as a key")
        expectError("\"a\nb\" = 1", line: 1, "newline in single-line string")
    }

    @Test func invalidEscapes() {
        expectError("a = \"\\q\"", line: 1, "invalid escape \\q in string")
        expectError("\na = \"\\x41\"", line: 2, "invalid escape \\x in string")
        expectError("a = \"\\e\"", line: 1, "invalid escape \\e in string")
        expectError("a = \"\\ \"", line: 1, "invalid escape sequence")
        expectError("a = \"\"\"\\ x\"\"\"", line: 1, "invalid escape sequence")
        expectError("a = \"\\u12\"", line: 1, "needs 4 hexadecimal digits")
        expectError("a = \"\\U0001F60\"", line: 1, "needs 8 hexadecimal digits")
    }

    @Test func invalidUnicodeScalars() {
        expectError("a = \"\\uD800\"", line: 1, "\\uD800 is not a Unicode scalar value")
        expectError("a = \"\\uDFFF\"", line: 1, "not a Unicode scalar value")
        expectError("a = \"\\U00110000\"", line: 1, "\\U00110000 is not a Unicode scalar value")
        expectError("a = \"\\UFFFFFFFF\"", line: 1, "not a Unicode scalar value")
    }

    @Test func controlCharactersInStrings() {
        expectError("a = \"x\u{1}y\"", line: 1, "control character U+0001 in string")
        expectError("a = 'x\u{7F}'", line: 1, "control character U+007F in string")
        expectError("a = \"\"\"\n\u{0}\"\"\"", line: 2, "control character U+0000 in string")
        expectError("a = '''\n\n\u{1B}'''", line: 3, "control character U+001B in string")
        expectError("a = \"x\u{C}\"", line: 1, "control character U+000C")
        // Tab is fine everywhere.
        #expect(parseError("a = \"x\ty\"\nb = 'x\ty'\nc = '''\t'''\nd = \"\"\"\t\"\"\" #\t") == nil)
    }

    @Test func controlCharactersInComments() {
        expectError("# ok\n# bad \u{1} here", line: 2, "control character U+0001 in comment")
        expectError("a = 1 # \u{7F}", line: 1, "control character U+007F in comment")
    }

    @Test func bareCarriageReturn() {
        expectError("a = 1\rb = 2", line: 1, "bare carriage return")
        expectError("a = 1 # c\r", line: 1, "bare carriage return")
        expectError("a = '''x\ry'''", line: 1, "bare carriage return")
        expectError("a = \"\"\"\nx\ry\"\"\"", line: 2, "bare carriage return")
        expectError("\r", line: 1, "bare carriage return")
        expectError("a = [1,\r2]", line: 1, "bare carriage return")
    }

    @Test func unterminatedStrings() {
        expectError("a = \"abc", line: 1, "unterminated string")
        expectError("a = 'abc\nb = 1", line: 1, "newline in single-line string")
        expectError("\na = \"\"\"abc\n\n", line: 2, "unterminated multi-line string")
        expectError("a = '''abc''", line: 1, "unterminated multi-line string")
        expectError("a = \"\"\"x\"\"\"\"\"\"", line: 1, "too many quotes")
        expectError("a = \"\\", line: 1, "unterminated string")
    }

    @Test func invalidIntegers() {
        expectError("a = 01", line: 1, "leading zeros are not allowed")
        expectError("a = +012", line: 1, "leading zeros")
        expectError("a = 0_1", line: 1, "leading zeros")
        expectError("a = 1__2", line: 1, "'_' must be between digits")
        expectError("a = 1_", line: 1, "'_' must be between digits")
        expectError("a = _1", line: 1, "expected a value")
        expectError("a = +_1", line: 1, "'_' must be between digits")
        expectError("a = 0x_1", line: 1, "'_' must be between digits")
        expectError("a = -0x1", line: 1, "sign is not allowed on a hexadecimal integer")
        expectError("a = +0o7", line: 1, "sign is not allowed on a octal integer")
        expectError("a = 0b102", line: 1, "'2' is not a binary digit")
        expectError("a = 0o8", line: 1, "'8' is not a octal digit")
        expectError("a = 0x", line: 1, "no digits after the hexadecimal prefix")
        expectError("a = 0X1F", line: 1, "invalid number")
        expectError("a = 12a", line: 1, "invalid number 12a")
        expectError("a = 1 2", line: 1, "expected end of line after value")
    }

    @Test func integerOverflow() {
        expectError("a = 9223372036854775808", line: 1, "integer out of range")
        expectError("a = -9223372036854775809", line: 1, "integer out of range")
        expectError("a = 0x8000000000000000", line: 1, "integer out of range")
        expectError("a = 0b" + String(repeating: "1", count: 64), line: 1, "integer out of range")
        expectError("a = " + String(repeating: "9", count: 5000), line: 1, "integer out of range")
    }

    @Test func invalidFloats() {
        expectError("a = 1.", line: 1, "expected digits after the decimal point")
        expectError("a = .5", line: 1, "expected a value, found '.'")
        expectError("a = 1.e5", line: 1, "expected digits after the decimal point")
        expectError("a = 1e", line: 1, "expected digits in the exponent")
        expectError("a = 1e+", line: 1, "expected digits in the exponent")
        expectError("a = 3.14_", line: 1, "'_' must be between digits")
        expectError("a = 1e_5", line: 1, "'_' must be between digits")
        expectError("a = 03.14", line: 1, "leading zeros")
        expectError("a = 1.5.2", line: 1, "invalid number")
        expectError("a = 1e400", line: 1, "float out of range")
        expectError("a = infinity", line: 1, "invalid number")
        expectError("a = NaN", line: 1, "expected a value")
        expectError("a = +inf_", line: 1, "invalid number")
    }

    @Test func invalidDateTimes() {
        expectError("a = 1979-13-27", line: 1, "month 13 out of range 1-12")
        expectError("a = 1979-00-27", line: 1, "month 0 out of range")
        expectError("a = 2021-02-29", line: 1, "day 29 out of range 1-28 for month 2")
        expectError("a = 1979-04-31T00:00:00", line: 1, "day 31 out of range 1-30")
        expectError("a = 1979-05-00", line: 1, "day 0 out of range")
        expectError("a = 1979-05-27T24:00:00", line: 1, "hour 24 out of range")
        expectError("a = 1979-05-27T23:60:00", line: 1, "minute 60 out of range")
        expectError("a = 23:59:61", line: 1, "second 61 out of range")
        expectError("a = 1979-05-27T07:32", line: 1, "seconds are required")
        expectError("a = 07:32", line: 1, "seconds are required")
        expectError("a = 1979-05-27T07:32:00+7:00", line: 1, "expected a time offset")
        expectError("a = 1979-05-27T07:32:00+24:00", line: 1, "time offset out of range")
        expectError("a = 1979-05-27T07:32:00.", line: 1, "expected digits after '.'")
        expectError("a = 07:32:00Z", line: 1, "after local time")
        expectError("a = 1979-5-27", line: 1, "expected a date YYYY-MM-DD")
        expectError("a = 1979-05-27X07:32:00", line: 1, "expected 'T' or a space")
        expectError("a = 1979-05-27 07:32", line: 1, "seconds are required")
        expectError("a = 1979-05-27T07:32:00ZZ", line: 1, "after time offset")
    }

    @Test func invalidBooleansAndBareWords() {
        expectError("a = TRUE", line: 1, "expected a value")
        expectError("a = truee", line: 1, "expected true or false")
        expectError("a = fals", line: 1, "expected true or false")
        expectError("a = hello", line: 1, "expected a value, found 'h'")
    }

    @Test func invalidArrays() {
        expectError("a = [1 2]", line: 1, "expected ',' or ']' in array")
        expectError("a = [,]", line: 1, "expected a value, found ','")
        expectError("a = [1,,2]", line: 1, "expected a value, found ','")
        expectError("a = [1,\n2,\n", line: 1, "unterminated array")
        expectError("a = [\n1,\n2 # c\n3]", line: 4, "expected ',' or ']'")
    }

    @Test func invalidInlineTables() {
        expectError("a = {b = 1,\nc = 2}", line: 1, "newline not allowed in inline table")
        expectError("a = {\n}", line: 1, "newline not allowed")
        expectError("a = {b = 1\n}", line: 1, "newline not allowed in inline table")
        expectError("a = {b = 1,}", line: 1, "trailing comma not allowed in inline table")
        expectError("a = {b = 1", line: 1, "unterminated inline table")
        expectError("a = {b = 1 c = 2}", line: 1, "expected ',' or '}' in inline table")
        expectError("a = {b = 1, b = 2}", line: 1, "duplicate key \"b\"")
        expectError("a = {b = 1 # c\n}", line: 1, "comment not allowed in inline table")
        expectError("a = {,}", line: 1, "expected a key, found ','")
    }

    @Test func invalidHeaders() {
        expectError("[a", line: 1, "expected ']' to close table header")
        expectError("[[a]", line: 1, "expected ']]' to close array of tables header")
        expectError("[[a] ]", line: 1, "expected ']]'")
        expectError("[]", line: 1, "expected a key, found ']'")
        expectError("[ [a]]", line: 1, "expected a key, found '['")
        expectError("[a] b = 1", line: 1, "expected end of line after table header")
        expectError("[a.]", line: 1, "expected a key")
        expectError("[a]\n[[b]] x", line: 2, "expected end of line after table header")
    }

    @Test func junkAfterValues() {
        expectError("a = \"x\" y", line: 1, "expected end of line after value, found 'y'")
        expectError("a = 'x''y'", line: 1, "expected end of line after value")
        expectError("a = [1] ]", line: 1, "expected end of line after value, found ']'")
        expectError("a = 1\n}", line: 2, "expected a key, found '}'")
        expectError("a = 1\u{1}", line: 1, "found U+0001")
        expectError("a = 1\u{2028}", line: 1, "found U+2028")
        expectError("a = 1\u{3000}b", line: 1, "found U+3000")
    }

    @Test func nestingLimit() throws {
        let ok = "a = " + String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(parseError(ok) == nil)
        let tooDeep = "a = " + String(repeating: "[", count: 129) + String(repeating: "]", count: 129)
        expectError(tooDeep, line: 1, "nested deeper than 128")
        let inline = "a = " + String(repeating: "{b = ", count: 200) + "1" + String(repeating: "}", count: 200)
        expectError(inline, line: 1, "nested deeper than 128")
        // Dotted keys inside inline tables count as levels too.
        let dotted = Array(repeating: "k", count: 100).joined(separator: ".")
        let inlineDotted = "a = " + String(repeating: "{\(dotted) = ", count: 3) + "1" + String(repeating: "}", count: 3)
        expectError(inlineDotted, line: 1, "nesting deeper than 128")
        // Hostile depth must fail cleanly, not overflow the stack.
        let hostile = "a = " + String(repeating: "[", count: 100_000)
        expectError(hostile, line: 1, "nested deeper than 128")
    }

    @Test func keyPartLimit() {
        let ok = Array(repeating: "k", count: 128).joined(separator: ".")
        #expect(parseError("[\(ok)]\n\(ok) = 1") == nil)
        let long = Array(repeating: "k", count: 129).joined(separator: ".")
        expectError("\(long) = 1", line: 1, "more than 128 dotted parts")
        expectError("\n[\(long)]", line: 2, "more than 128 dotted parts")
    }

    @Test func garbageInputsThrowRather() {
        let alphabet: [String] = ["[", "]", "[[", "]]", "{", "}", "=", ",", ".", "\"", "'", "\"\"\"", "'''",
                                  "\\", "#", "\n", "\r\n", "\r", " ", "\t", "a", "1", "-", "+", "_", "e",
                                  "0x", "inf", "nan", "true", ":", "1979-05-27", "T", "Z", "\u{0}", "é", "\\u"]
        var rng = SplitMix64(state: 0x5EED)
        for _ in 0..<3000 {
            var text = ""
            for _ in 0..<rng.next(40) { text += alphabet[rng.next(alphabet.count)] }
            // Either outcome is fine; what matters is no crash and a sane position.
            if let e = parseError(text) {
                #expect(e.position.line >= 1 && e.position.column >= 1)
            }
        }
        // Random mutations of a valid document.
        let valid = Array("""
        [server]
        host = "h" # c
        ports = [80, 443]
        tls = { cert = 'c', key.path = "k" }
        [[rule]]
        at = 1979-05-27T07:32:00Z
        f = 1e3
        """.utf8)
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0..<(1 + rng.next(3)) {
                let idx = rng.next(bytes.count)
                switch rng.next(3) {
                case 0: bytes[idx] = UInt8(truncatingIfNeeded: rng.next(128))
                case 1: bytes.remove(at: idx)
                default: bytes.insert(UInt8(truncatingIfNeeded: rng.next(128)), at: idx)
                }
            }
            _ = parseError(String(decoding: bytes, as: UTF8.self))
        }
    }

    @Test func specificGarbageThrows() {
        for text in ["[", "[[", "{", "a = {", "a = [", "\"", "'", "a = \"\"\"", "a = '''", "a.\"", "=",
                     "a = 1979-", "a = 0x", "a = +", "a = -", "a = 1e", "[a]]", "a = \u{0}",
                     "\u{0}", "a = \"\\U", "[[]]", "a = {a = {a = [}}}"] {
            #expect(parseError(text) != nil, "\(text.debugDescription) should not parse")
        }
    }

    @Test func longInputsAreLinear() throws {
        // Many keys, many table-array elements, a long array and a long string.
        var text = ""
        for n in 0..<20_000 { text += "k\(n) = \(n)\n" }
        for n in 0..<5_000 { text += "[[items]]\nid = \(n)\n[items.sub]\nx = 1\n" }
        text += "[big]\nlist = [" + String(repeating: "1, ", count: 100_000) + "]\n"
        text += "s = \"" + String(repeating: "x", count: 200_000) + "\"\n"
        let t = try TOMLParser.parse(text)
        #expect(t["k19999"]?.value.asInt == 19_999)
        #expect(t["items"]?.value.asArray?.count == 5_000)
        #expect(t.node("big", "list")?.value.asArray?.count == 100_000)
        #expect(t.node("big", "s")?.value.asString?.utf8.count == 200_000)
        #expect(t.node("big", "s")?.keyPosition?.line == 20_000 + 4 * 5_000 + 3)
    }
}

import LevainJSON
import Testing

/// The lexical layer both JSON trees are built on.
@Suite struct JSONScannerTests {
    static func number(_ text: String) -> (String, Bool)? {
        var s = JSONScanner(Array(text.utf8))
        guard let n = try? s.number(), s.atEnd else { return nil }
        return (n.literal, n.isInteger)
    }

    static func string(_ text: String) -> String? {
        var s = JSONScanner(Array(text.utf8))
        guard let v = try? s.string(), s.atEnd else { return nil }
        return v
    }

    @Test func numbersKeepTheirLiteral() {
        #expect(Self.number("18446744073709551615")! == ("18446744073709551615", true))
        #expect(Self.number("-0.10e+3")! == ("-0.10e+3", false))
        #expect(Self.number("0")! == ("0", true))
        for bad in ["01", "-", "1.", "1e", ".5", "+1", "-01"] {
            #expect(Self.number(bad) == nil, "\(bad)")
        }
    }

    @Test func stringsAreDecodedAndChecked() {
        #expect(Self.string(#""a\"b\\c\/\n\u00e9\ud83d\ude00""#) == "a\"b\\c/\né😀")
        for bad in [#""a"#, "\"\u{01}\"", #""\x""#, #""\ud800""#, #""\udc00x""#, #""\u12""#] {
            #expect(Self.string(bad) == nil, "\(bad)")
        }
        var s = JSONScanner([0x22, 0xC3, 0x22])
        #expect(throws: JSONScanner.Fault.self) { try s.string() }
    }

    @Test func faultsSayWhereAndWhat() {
        var s = JSONScanner(Array("nul".utf8))
        do { try s.literal("null"); Issue.record("accepted") } catch {
            #expect(error.offset == 0 && error.what == "unexpected end")
        }
        var t = JSONScanner(Array("01".utf8))
        do { _ = try t.number(); Issue.record("accepted") } catch {
            #expect(error.offset == 1 && error.what.contains("leading zero"))
        }
    }
}

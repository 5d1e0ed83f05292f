import Foundation
import LevainJSON
import Testing

/// The project's JSON model (moved here from LevainSessionLogTests with the
/// parser; parse errors are LevainJSON's `JSONError` now, not the log's).
@Suite("JSON values")
struct JSONValueTests {
    @Test func encodingIsCanonical() {
        let value: JSONValue = ["b": 1, "a": [true, false, nil], "c": ["z": "x", "y": 2.5]]
        #expect(value.encoded() == #"{"a":[true,false,null],"b":1,"c":{"y":2.5,"z":"x"}}"#)
        // Keys sort by UTF-8 bytes: "B" < "a" < "é".
        #expect(JSONValue.object(["é": 1, "a": 2, "B": 3]).encoded() == #"{"B":3,"a":2,"é":1}"#)
        #expect(JSONValue.double(.nan).encoded() == "null")
        #expect(JSONValue.double(1).encoded() == "1.0")
        #expect(JSONValue.int(-9_223_372_036_854_775_808).encoded() == "-9223372036854775808")
    }

    @Test func stringsAreEscapedMinimally() throws {
        let value = JSONValue.string("q\"b\\n\nt\tc\u{01}\u{7F}é😀/")
        #expect(value.encoded() == "\"q\\\"b\\\\n\\nt\\tc\\u0001\u{7F}é😀/\"")
        #expect(try JSONValue.parse(value.encoded()) == value)
    }

    @Test func parseRoundTrips() throws {
        let value: JSONValue = [
            "argv": ["/bin/sh", "-c", "echo \"hi\""], "env": ["PATH": "/usr/bin"], "timeout": 30,
            "ratio": 0.25, "big": 1e300, "neg": -17, "none": nil, "nested": [[[]], [:]],
        ]
        #expect(try JSONValue.parse(value.encoded()) == value)
        #expect(try JSONValue.parse(" { \"a\" : [ 1 , 2.0 , \"\\u00e9\\ud83d\\ude00\" ] } ")
                == ["a": [1, 2.0, "é😀"]])
        #expect(try JSONValue.parse("12345678901234567890") == .double(12345678901234567890))
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"\\x\"", "\"a", "{} x",
                      "\"\\ud800\"", "NaN", "[\"\u{01}\"]"])
    func parseRejects(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
    }

    @Test("a key twice in one object is refused, with its path; equal keys in different objects are fine")
    func duplicateKeys() throws {
        func path(_ text: String) -> String? {
            do { _ = try JSONValue.parse(text); return nil } catch { return error.duplicateKeyPath }
        }
        #expect(path(#"{"a":1,"a":2}"#) == "a")
        #expect(path(#"{"limits":{"memory":"64M","memory":"128M"}}"#) == "limits.memory")
        #expect(path(#"{"binds":{"ro":[{"x":1},{"y":1,"y":2}]}}"#) == "binds.ro[1].y")
        #expect(path(#"[{"k":1,"k":1}]"#) == "[0].k")
        // An escape spelling the same key is the same key.
        #expect(path(#"{"a":1,"\u0061":2}"#) == "a")
        // The control: the same key in sibling and nested objects parses.
        #expect(try JSONValue.parse(#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#) == ["a": ["a": 1], "b": [["a": 1], ["a": 2]]])
        // Other syntax errors carry no path.
        #expect(path(#"{"a":1,}"#) == nil)
    }

    @Test("raw bytes: invalid UTF-8 is refused, not replaced; valid UTF-8 parses as from a String")
    func utf8Bytes() throws {
        #expect(throws: JSONError.self) { try JSONValue.parse(utf8: Array(#"{"a":""#.utf8) + [0xFF] + Array(#""}"#.utf8)) }
        #expect(throws: JSONError.self) { try JSONValue.parse(utf8: Array(#"{"a":""#.utf8) + [0xC3] + Array(#""}"#.utf8)) }
        #expect(throws: JSONError.self) { try JSONValue.parse(utf8: [0xEF, 0xBB, 0xBF] + Array("{}".utf8)) }
        let text = #"{"é":"😀","n":[1,2.5,null]}"#
        #expect(try JSONValue.parseObject(utf8: Array(text.utf8)) == (try JSONValue.parseObject(text)))
    }

    @Test func parseObjectRequiresAnObject() {
        #expect(throws: JSONError.self) { try JSONValue.parseObject("[1]") }
    }

    @Test func codableMatchesFoundation() throws {
        let value: JSONValue = ["a": 1, "b": [2.5, "x", true, nil]]
        let data = try JSONEncoder().encode(value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: data) == value)
    }
}

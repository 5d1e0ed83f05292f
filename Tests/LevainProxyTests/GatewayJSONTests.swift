import Testing
@testable import LevainProxy

@Suite struct GatewayJSONTests {
    func parse(_ text: String) throws(GatewayJSONError) -> GatewayJSON {
        try GatewayJSON.parse(Array(text.utf8))
    }

    func expectError(_ text: String, _ kind: GatewayJSONError.Kind, path: String? = nil, _ fragment: String = "",
                     sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let v = try parse(text)
            Issue.record("parsed \(text) as \(v.text)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.kind == kind && error.path == path && (fragment.isEmpty || error.message.contains(fragment)), "\(text): \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("written back as parsed: members in their order, number literals as written, strings re-escaped")
    func roundTrip() throws {
        let text = #"{ "b": 1, "a": {"z": [1, 2.50, -0, 1e400, -3E-2], "y": "\u00e9\n\/\"x\u0001"}, "seed": 18446744073709551615, "t": true, "n": null, "e": [], "o": {} }"#
        let v = try parse(text)
        #expect(v.text == #"{"b":1,"a":{"z":[1,2.50,-0,1e400,-3E-2],"y":"é\n/\"x\u0001"},"seed":18446744073709551615,"t":true,"n":null,"e":[],"o":{}}"#)
        #expect(try parse(v.text) == v)
        #expect(v.members?.map(\.key) == ["b", "a", "seed", "t", "n", "e", "o"])
        #expect(v["seed"]?.integerLiteral == nil)  // beyond Int64
        #expect(v["b"]?.integerLiteral == 1)
        #expect(v["a"]?["z"] == .array([.number("1"), .number("2.50"), .number("-0"), .number("1e400"), .number("-3E-2")]))
        // A surrogate pair is one scalar.
        #expect(try parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test("a duplicate key anywhere is an error naming its path, spelled any way; canonically equivalent keys are different keys")
    func duplicates() throws {
        expectError(#"{"max_tokens": 100, "max_tokens": 100000}"#, .duplicateKey, path: "max_tokens")
        expectError(#"{"max_tokens": 100, "max\u005ftokens": 100000}"#, .duplicateKey, path: "max_tokens")
        expectError(#"{"model": "a", "stream": true, "model": "b"}"#, .duplicateKey, path: "model")
        expectError(#"{"stream_options": {"include_usage": true, "include_usage": false}}"#, .duplicateKey, path: "stream_options.include_usage")
        expectError(#"{"messages": [{"role": "user"}, {"role": "user", "role": "system"}]}"#, .duplicateKey, path: "messages[1].role")
        expectError(#"[[{"a": [{"k": 1, "k": 2}]}]]"#, .duplicateKey, path: "[0][0].a[0].k")
        // Controls: equal keys in different objects, and keys that differ by
        // bytes but are canonically equivalent (é precomposed and e + U+0301;
        // K and the Kelvin sign): a provider's parser keeps both.
        let v = try parse(#"{"a": {"k": 1}, "b": {"k": 1}, "\u00e9": 1, "e\u0301": 2, "K": 3, "\u212a": 4}"#)
        #expect(v.members?.count == 6)
        #expect(v["\u{e9}"] == .number("1") && v["e\u{301}"] == .number("2"))
        #expect(v["K"] == .number("3") && v["\u{212a}"] == .number("4"))
    }

    @Test("strict syntax: what a lenient parser might read differently from the provider is refused")
    func syntax() throws {
        for bad in [#"{"a": 1,}"#, #"{"a": 01}"#, #"{"a": 1."#, #"{"a": .5}"#, #"{"a": +1}"#, #"{"a": NaN}"#, #"{"a": Infinity}"#,
                    #"{"a": "\ud800"}"#, #"{"a": "\udc00x"}"#, #"{"a": "\x"}"#, "{\"a\": \"tab\there\"}", #"{"a": 1} x"#, #"{"a": 1}{"#,
                    #"{'a': 1}"#, #"{"a" 1}"#, "", " ", #"{"a": tru}"#, #"{"a": [1 2]}"#, "\u{feff}{}"] {
            expectError(bad, .syntax)
        }
        // Invalid UTF-8 inside a string.
        var bytes = Array(#"{"a": "x"#.utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(#""}"#.utf8)
        #expect(throws: GatewayJSONError.self) { try GatewayJSON.parse(bytes) }
    }

    @Test("nesting: 128 levels parse (on a concurrency thread, where the gateway parses), 129 are refused")
    func depth() async throws {
        let ok = String(repeating: "[", count: 127) + "{\"a\":1}" + String(repeating: "]", count: 127)
        let parsed = await Task.detached { try? GatewayJSON.parse(Array(ok.utf8)) }.value
        #expect(parsed != nil)
        let deep = String(repeating: "[", count: 129) + String(repeating: "]", count: 129)
        expectError(deep, .syntax, "deeper than 128")
        let deepObjects = String(repeating: "{\"a\":", count: 200) + "1" + String(repeating: "}", count: 200)
        expectError(deepObjects, .syntax, "deeper than 128")
    }
}

import LevainPolicy
@testable import LevainProxy
import NIOHTTP1
import Testing

@Suite("Egress: address classes")
struct EgressAddressClassTests {
    @Test("refused addresses, IPv4 and every IPv6 form that embeds one", arguments: [
        ("0.0.0.0", AddressClass.unspecified), ("0.1.2.3", .unspecified), ("::", .unspecified),
        ("127.0.0.1", .loopback), ("127.255.255.254", .loopback), ("::1", .loopback),
        ("10.0.0.1", .privateUse), ("172.16.0.1", .privateUse), ("172.31.255.255", .privateUse),
        ("192.168.1.1", .privateUse), ("fc00::1", .privateUse), ("fd12:3456::1", .privateUse), ("fec0::1", .privateUse),
        ("169.254.0.1", .linkLocal), ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        ("169.254.169.254", .cloudMetadata), ("100.100.100.200", .cloudMetadata), ("fd00:ec2::254", .cloudMetadata),
        ("100.64.0.1", .sharedAddressSpace), ("100.127.255.255", .sharedAddressSpace),
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("ff02::1", .multicast),
        ("255.255.255.255", .broadcast), ("240.0.0.1", .reserved), ("192.0.0.8", .reserved), ("192.0.2.1", .reserved),
        ("198.18.0.1", .reserved), ("2001:db8::1", .reserved), ("2001::1", .reserved), ("100::1", .reserved),
        ("64:ff9b:1::1", .reserved),
        // IPv4-mapped, -compatible, -translated, NAT64 and 6to4 forms.
        ("::ffff:127.0.0.1", .loopback), ("::ffff:7f00:1", .loopback), ("::ffff:169.254.169.254", .cloudMetadata),
        ("::ffff:10.1.2.3", .privateUse), ("::127.0.0.1", .loopback), ("::10.0.0.1", .privateUse),
        ("::ffff:0:192.168.0.1", .privateUse), ("64:ff9b::127.0.0.1", .loopback), ("64:ff9b::a9fe:a9fe", .cloudMetadata),
        ("2002:7f00:1::1", .loopback), ("2002:a00:1::", .privateUse), ("::ffff:0.0.0.0", .unspecified),
        ("::ffff:100.100.100.200", .cloudMetadata),
    ])
    func refused(_ text: String, _ expected: AddressClass) {
        #expect(AddressClass(literal: text) == expected, "\(text)")
        #expect(!expected.isGlobal)
    }

    @Test("global addresses pass", arguments: [
        "1.1.1.1", "8.8.8.8", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1",
        "169.253.1.1", "192.169.0.1", "223.255.255.255", "11.0.0.1",
        "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:1.1.1.1", "64:ff9b::808:808", "2002:808:808::1",
    ])
    func global(_ text: String) {
        #expect(AddressClass(literal: text) == .global, "\(text)")
    }

    @Test("only strict literals are literals (the rest goes to getaddrinfo, whose answers are checked)",
          arguments: ["localhost", "127.1", "0x7f.0.0.1", "2130706433", "1.2.3.4.5", "[::1]", "", "fe80::1%eth0"])
    func notLiterals(_ text: String) {
        #expect(AddressClass(literal: text) == nil, "\(text)")
    }

    @Test("raw bytes of other lengths are refused")
    func oddLength() {
        #expect(AddressClass(bytes: [1, 2, 3]) == .reserved)
    }
}

@Suite("Egress: request targets and rules")
struct EgressTargetTests {
    @Test("absolute-form targets")
    func absolute() throws {
        #expect(try EgressTarget.absolute("http://Example.COM./a?b=1#frag") == EgressTarget(host: "example.com", port: 80, path: "/a?b=1"))
        #expect(try EgressTarget.absolute("HTTP://a.ok.test:8080") == EgressTarget(host: "a.ok.test", port: 8080, path: "/"))
        #expect(try EgressTarget.absolute("http://h?x") == EgressTarget(host: "h", port: 80, path: "/?x"))
        #expect(try EgressTarget.absolute("http://[2606:4700::1]:81/p") == EgressTarget(host: "2606:4700::1", port: 81, path: "/p"))
        #expect(EgressTarget(host: "2606:4700::1", port: 81, path: "/").hostHeader == "[2606:4700::1]:81")
        #expect(EgressTarget(host: "a.test", port: 80, path: "/").hostHeader == "a.test")
    }

    @Test("malformed or unsupported targets are refused", arguments: [
        "/", "*", "https://example.com/", "ftp://example.com/", "example.com/x", "http://user:pw@allowed.test/",
        "http://allowed.test@evil.test/", "http://::1/", "http://[::1/", "http://[nothex]/", "http://a..b/",
        "http://a b/", "http://h:0/", "http://h:65536/", "http://h:+80/", "http://h:/", "http:///", "http://h%00/",
    ])
    func malformed(_ uri: String) {
        #expect(throws: EgressTarget.Malformed.self, "\(uri)") { try EgressTarget.absolute(uri) }
    }

    @Test("CONNECT authorities need a port")
    func connect() throws {
        #expect(try EgressTarget.connect("allowed.test:443") == EgressTarget(host: "allowed.test", port: 443, path: ""))
        #expect(try EgressTarget.connect("[::1]:22") == EgressTarget(host: "::1", port: 22, path: ""))
        #expect(throws: EgressTarget.Malformed.self) { try EgressTarget.connect("allowed.test") }
        #expect(throws: EgressTarget.Malformed.self) { try EgressTarget.connect("http://allowed.test:443") }
    }

    @Test("decision order: methods, ports, deny, allow")
    func order() {
        var rules = Policy.Egress()
        rules.allow = ["*.ok.test", "both.test"].compactMap(DomainPattern.init)
        rules.deny = ["both.test", "*.bad.ok.test"].compactMap(DomainPattern.init)
        rules.methods = ["GET", "CONNECT"]
        rules.ports = [443]
        func rule(_ m: String, _ h: String, _ p: Int) -> String? {
            EgressRules.denial(method: m, host: h, port: p, rules: rules)?.rule
        }
        #expect(rule("GET", "a.ok.test", 443) == nil)
        #expect(rule("CONNECT", "a.ok.test", 443) == nil)
        #expect(rule("POST", "both.test", 80) == "network.methods")
        #expect(rule("get", "a.ok.test", 443) == "network.methods")  // methods are case-sensitive
        #expect(rule("GET", "both.test", 80) == "network.ports")
        #expect(rule("GET", "both.test", 443) == "network.deny")
        #expect(rule("GET", "x.bad.ok.test", 443) == "network.deny")
        #expect(rule("GET", "ok.test", 443) == "network.allow")
        #expect(rule("GET", "other.test", 443) == "network.allow")
    }

    @Test("upstream headers: hop-by-hop out, Host set, secrets injected over the jail's own")
    func upstreamHeaders() {
        var rules = Policy.Egress()
        rules.inject = [Policy.HeaderInjection(domain: DomainPattern("*.ok.test")!, header: "Authorization", secret: "tok"),
                        Policy.HeaderInjection(domain: DomainPattern("other.test")!, header: "X-Other", secret: "tok")]
        let settings = EgressSettings(rules: rules, secrets: ["tok": "Bearer s3cret"])
        let head = HTTPRequestHead(version: .http1_0, method: .POST, uri: "http://a.ok.test:8080/x", headers: [
            "Host": "evil.test", "Proxy-Authorization": "Basic cnVuLWFiYzp4", "Proxy-Connection": "keep-alive",
            "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "5", "TE": "trailers",
            "Upgrade": "websocket", "Trailer": "x", "authorization": "Bearer jail-guess", "X-Kept": "yes",
            "Transfer-Encoding": "chunked",
        ])
        let target = EgressTarget(host: "a.ok.test", port: 8080, path: "/x")
        let out = EgressRules.upstreamHead(head, target: target, settings: settings)
        #expect(out.uri == "/x")
        #expect(out.version == .http1_1)
        #expect(out.headers["host"] == ["a.ok.test:8080"])
        #expect(out.headers["authorization"] == ["Bearer s3cret"])
        #expect(out.headers["x-other"].isEmpty)
        #expect(out.headers["x-kept"] == ["yes"])
        #expect(out.headers["connection"] == ["close"])
        #expect(out.headers["transfer-encoding"] == ["chunked"])
        for gone in ["proxy-authorization", "proxy-connection", "x-secret-hop", "keep-alive", "te", "upgrade", "trailer"] {
            #expect(out.headers[gone].isEmpty, "\(gone)")
        }
    }

    @Test("Proxy-Authorization names the run")
    func proxyUser() {
        #expect(EgressRules.proxyUser(["Proxy-Authorization": "Basic cnVuLWFiYzp4"]) == "run-abc")
        #expect(EgressRules.proxyUser(["Proxy-Authorization": "basic cnVuLWFiYw=="]) == "run-abc")
        #expect(EgressRules.proxyUser(["Proxy-Authorization": "Bearer x"]) == nil)
        #expect(EgressRules.proxyUser(["Proxy-Authorization": "Basic !!!"]) == nil)
        #expect(EgressRules.proxyUser([:]) == nil)
    }

    @Test("answers are JSON that names the rule")
    func answers() {
        let a = EgressAnswer.denied("network.allow", host: "x.test", port: 80, message: "say \"why\"\n")
        #expect(a.body == #"{"error":"egress_denied","rule":"network.allow","host":"x.test","port":80,"message":"say \"why\"\n"}"# + "\n")
        let wire = String(buffer: a.buffer(.init()))
        #expect(wire.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(wire.contains("x-levain-denied: network.allow\r\n"))
        #expect(wire.contains("connection: close\r\n\r\n{"))
    }
}

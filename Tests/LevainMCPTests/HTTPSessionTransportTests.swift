import Foundation
import LevainAPI
import LevainJSON
import MCP
import Testing
@testable import LevainMCP

/// The bounded streamable-HTTP transport of `/mcp`: each request's stream
/// carries its own progress and then its response; unread progress is
/// bounded; nothing is kept after a request ends.
@Suite struct HTTPSessionTransportTests {
    static let headers = ["Accept": "application/json, text/event-stream", "Content-Type": "application/json"]

    func post(_ t: HTTPSessionTransport, _ json: String) async -> MCP.HTTPResponse {
        await t.handle(MCP.HTTPRequest(method: "POST", headers: Self.headers, body: Data(json.utf8), path: "/mcp"))
    }

    func collect(_ r: MCP.HTTPResponse) async throws -> [String] {
        guard case .stream(let s, _) = r else { Issue.record("not a stream: \(r.statusCode)"); return [] }
        var out: [String] = []
        for try await e in s { out.append(String(decoding: e, as: UTF8.self)) }
        return out
    }

    @Test("progress goes to the stream of the request whose token it names, then the response ends that stream")
    func routing() async throws {
        let t = HTTPSessionTransport(sessionID: "s1")
        let a = await post(t, #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exec","_meta":{"progressToken":"ta"}}}"#)
        let b = await post(t, #"{"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"exec","_meta":{"progressToken":7}}}"#)
        #expect(a.headers[HTTPHeaderName.sessionID] == "s1")
        #expect(await t.openStreams == 2)
        // The server reads both requests, in order.
        var it = await t.receive().makeAsyncIterator()
        #expect(try await it.next().map { String(decoding: $0, as: UTF8.self) }?.contains(#""id":1"#) == true)
        #expect(try await it.next() != nil)
        try await t.send(Data(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1,"message":"for b"}}"#.utf8))
        try await t.send(Data(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"ta","progress":1,"message":"for a"}}"#.utf8))
        try await t.send(Data(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"nobody","progress":1}}"#.utf8))
        try await t.send(Data(#"{"jsonrpc":"2.0","id":1,"result":{"ok":1}}"#.utf8))
        try await t.send(Data(#"{"jsonrpc":"2.0","id":"two","result":{"ok":2}}"#.utf8))
        let ea = try await collect(a), eb = try await collect(b)
        #expect(ea.count == 2 && ea[0].contains("for a") && ea[1].contains(#""ok":1"#))
        #expect(eb.count == 2 && eb[0].contains("for b") && eb[1].contains(#""ok":2"#))
        #expect(ea.allSatisfy { $0.hasPrefix("event: message\ndata: {") && $0.hasSuffix("}\n\n") })
        #expect(await t.openStreams == 0)
    }

    @Test("unread progress is bounded (the rest dropped); the response always gets through")
    func bounded() async throws {
        let t = HTTPSessionTransport(sessionID: "s")
        let r = await post(t, #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#)
        let piece = String(repeating: "x", count: 60_000)
        for _ in 0..<100 {
            try await t.send(Data(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1,"message":"\#(piece)"}}"#.utf8))
        }
        try await t.send(Data(#"{"jsonrpc":"2.0","id":1,"result":{}}"#.utf8))
        let events = try await collect(r)
        let kept = events.dropLast().reduce(0) { $0 + $1.utf8.count }
        #expect(kept <= HTTPSessionTransport.maxPendingProgress && events.count > 2 && events.count < 101)
        #expect(events.last?.contains(#""result""#) == true)
    }

    @Test("notifications are 202; GET is 405; a bad body 400; a duplicate id 409; DELETE ends the session")
    func methods() async throws {
        let t = HTTPSessionTransport(sessionID: "s")
        #expect(await post(t, #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).statusCode == 202)
        #expect(await t.handle(MCP.HTTPRequest(method: "GET", headers: Self.headers, path: "/mcp")).statusCode == 405)
        #expect(await post(t, "not json").statusCode == 400)
        var noSSE = Self.headers
        noSSE["Accept"] = "application/json"
        #expect(await t.handle(MCP.HTTPRequest(method: "POST", headers: noSSE, body: Data("{}".utf8), path: "/mcp")).statusCode == 406)
        _ = await post(t, #"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        #expect(await post(t, #"{"jsonrpc":"2.0","id":9,"method":"ping"}"#).statusCode == 409)
        #expect(await t.handle(MCP.HTTPRequest(method: "DELETE", headers: [:], path: "/mcp")).statusCode == 200)
        #expect(await t.openStreams == 0)
        #expect(await post(t, #"{"jsonrpc":"2.0","id":10,"method":"ping"}"#).statusCode == 404)
    }
}

@Suite struct ControlToolsTests {
    @Test("arguments are read strictly: unknown keys and wrong types name the key; ids are checked before they reach a URL")
    func arguments() throws {
        #expect(throws: ToolFailure.self) { try Arguments(.exec, ["session": "s-1", "bogus": 1]) }
        let a = try Arguments(.exec, ["session": "../v1/x", "command": 5, "timeout": "10m"])
        #expect(throws: ToolFailure.self) { try a.id("session") }
        #expect(throws: ToolFailure.self) { try a.string("command") }
        #expect(try Arguments(.exec, ["session": "s-0123456789ab"]).id("session") == "s-0123456789ab")
        #expect(throws: ToolFailure.self) { try ControlServer.runBody(Arguments(.exec, ["session": "s"])) }
        #expect(throws: ToolFailure.self) { try ControlServer.runBody(Arguments(.exec, ["session": "s", "command": "x", "argv": ["y"]])) }
        #expect(try ControlServer.runBody(Arguments(.exec, ["session": "s", "argv": ["ls"], "cwd": "/tmp"])) == ["argv": ["ls"], "cwd": "/tmp"])
        // Every tool's schema lists exactly the keys it accepts, and closes the object.
        for tool in ControlTool.allCases {
            #expect(tool.inputSchema["additionalProperties"] == .bool(false))
            for key in tool.inputSchema["required"]?.arrayValue ?? [] { #expect(tool.keys.contains(key.stringValue ?? "")) }
        }
    }

    @Test("query values are percent-encoded, a space as %20 and a plus sign kept")
    func query() {
        #expect(URLQuery.path("/v1/x", [("path", "a b+c/é?&=")]) == "/v1/x?path=a%20b%2Bc/%C3%A9%3F%26%3D")
        #expect(URLQuery.path("/v1/x", []) == "/v1/x")
    }
}

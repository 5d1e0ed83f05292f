import Foundation
import LevainJSON
import MCP

// The project's JSON value and the MCP swift-sdk's, both ways: what the
// in-jail endpoint, the host servers and the control server convert with.

extension JSONValue {
    /// An MCP value as the project's JSON (binary data as base64 text).
    public init(mcp v: MCP.Value) {
        switch v {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(Int64(i))
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .data(_, let d): self = .string(d.base64EncodedString())
        case .array(let a): self = .array(a.map(JSONValue.init(mcp:)))
        case .object(let o): self = .object(o.mapValues(JSONValue.init(mcp:)))
        }
    }

    /// The same value as the MCP swift-sdk's.
    public var mcp: MCP.Value {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .int(Int(i))
        case .double(let d): .double(d)
        case .string(let s): .string(s)
        case .array(let a): .array(a.map(\.mcp))
        case .object(let o): .object(o.mapValues(\.mcp))
        }
    }
}

import LevainJSON
import LevainPolicy

/// The part of JSON Schema (2020-12) that tool inputs and agent outputs
/// use: type, properties, required, additionalProperties, items, enum,
/// const, minimum/maximum (and exclusive), minLength/maxLength, pattern
/// (POSIX extended, anchored by the schema's own ^/$), minItems/maxItems,
/// allOf/anyOf/oneOf/not. Annotations (title, description, default,
/// examples, $schema, $id, format) are accepted and not checked. A keyword
/// that would change the meaning and is not implemented ($ref, $defs
/// references, if/then/else, patternProperties, dependentRequired, ...)
/// makes the schema invalid instead of being ignored: a schema is
/// enforced as written or refused when it is registered.
public struct JSONSchema: Sendable, Equatable {
    public let value: JSONValue

    static let annotations: Set<String> = [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "format", "deprecated",
        "readOnly", "writeOnly", "$defs", "definitions",
    ]
    static let keywords: Set<String> = [
        "type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "allOf",
        "anyOf", "oneOf", "not", "minProperties", "maxProperties", "uniqueItems",
    ]
    static let types: Set<String> = ["object", "array", "string", "number", "integer", "boolean", "null"]

    /// Checks the schema itself; the error names the keyword's path.
    public init(_ value: JSONValue, requireObject: Bool = false) throws(SchemaError) {
        try Self.check(value, at: "#")
        if requireObject {
            guard value["type"]?.stringValue == "object" else {
                throw SchemaError(path: "#/type", message: "a tool's input schema must have \"type\": \"object\"")
            }
        }
        self.value = value
    }

    public static func parse(_ text: String, requireObject: Bool = false) throws(SchemaError) -> JSONSchema {
        let v: JSONValue
        do { v = try JSONValue.parse(text) } catch { throw SchemaError(path: "#", message: "not JSON: \(error)") }
        return try JSONSchema(v, requireObject: requireObject)
    }

    private static func check(_ s: JSONValue, at path: String) throws(SchemaError) {
        if case .bool = s { return }
        guard let o = s.objectValue else { throw SchemaError(path: path, message: "a schema is an object or a boolean") }
        for (k, v) in o {
            let p = path + "/" + k
            if annotations.contains(k) { continue }
            guard keywords.contains(k) else {
                throw SchemaError(path: p, message: "the keyword \"\(k)\" is not supported here (supported: \(keywords.sorted().joined(separator: ", ")))")
            }
            switch k {
            case "type":
                let names = v.arrayValue?.compactMap(\.stringValue) ?? v.stringValue.map { [$0] } ?? []
                guard !names.isEmpty, names.allSatisfy(types.contains) else {
                    throw SchemaError(path: p, message: "\"type\" is one of \(types.sorted().joined(separator: ", ")) or an array of them")
                }
            case "properties":
                guard let props = v.objectValue else { throw SchemaError(path: p, message: "\"properties\" is an object of schemas") }
                for (name, sub) in props { try check(sub, at: p + "/" + name) }
            case "required":
                guard let a = v.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else {
                    throw SchemaError(path: p, message: "\"required\" is an array of property names")
                }
            case "additionalProperties", "items", "not":
                try check(v, at: p)
            case "allOf", "anyOf", "oneOf":
                guard let a = v.arrayValue, !a.isEmpty else { throw SchemaError(path: p, message: "\"\(k)\" is a non-empty array of schemas") }
                for (i, sub) in a.enumerated() { try check(sub, at: p + "/\(i)") }
            case "enum":
                guard v.arrayValue != nil else { throw SchemaError(path: p, message: "\"enum\" is an array") }
            case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
                guard number(v) != nil else { throw SchemaError(path: p, message: "\"\(k)\" is a number") }
            case "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties":
                guard let n = number(v), n >= 0, n == n.rounded() else { throw SchemaError(path: p, message: "\"\(k)\" is a non-negative integer") }
            case "pattern":
                guard let re = v.stringValue else { throw SchemaError(path: p, message: "\"pattern\" is a string") }
                if let e = PosixRegex.compileError(Self.unanchored(re)) {
                    throw SchemaError(path: p, message: "the pattern does not compile as a POSIX extended expression: \(e)")
                }
            case "uniqueItems":
                guard v.boolValue != nil else { throw SchemaError(path: p, message: "\"uniqueItems\" is true or false") }
            default: break
            }
        }
    }

    /// JSON Schema patterns are unanchored searches: ".*" around what is
    /// not anchored, so that PosixRegex's whole-text match means "contains".
    static func unanchored(_ re: String) -> String {
        var r = re
        r = r.hasPrefix("^") ? String(r.dropFirst()) : ".*" + r
        r = (r.hasSuffix("$") && !r.hasSuffix("\\$")) ? String(r.dropLast()) : r + ".*"
        return r
    }

    static func number(_ v: JSONValue) -> Double? {
        switch v {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }

    /// The first way `instance` breaks the schema, or nil.
    public func validate(_ instance: JSONValue) -> SchemaError? {
        Self.validate(instance, value, at: "$")
    }

    private static func typeName(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double(let d): d == d.rounded() && abs(d) < 9e15 ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    private static func validate(_ x: JSONValue, _ s: JSONValue, at path: String) -> SchemaError? {
        if case .bool(let b) = s { return b ? nil : SchemaError(path: path, message: "no value is allowed here") }
        guard let o = s.objectValue else { return nil }
        func fail(_ m: String) -> SchemaError { SchemaError(path: path, message: m) }
        if let t = o["type"] {
            let names = t.arrayValue?.compactMap(\.stringValue) ?? t.stringValue.map { [$0] } ?? []
            let actual = typeName(x)
            let ok = names.contains(actual) || (actual == "integer" && names.contains("number"))
            if !ok { return fail("expected \(names.joined(separator: " or ")), got \(actual)") }
        }
        if let e = o["enum"]?.arrayValue, !e.contains(where: { equal($0, x) }) {
            return fail("must be one of \(e.map { $0.encoded() }.joined(separator: ", "))")
        }
        if let c = o["const"], !equal(c, x) { return fail("must be \(c.encoded())") }
        if let n = number(x) {
            if let m = o["minimum"].flatMap(number), n < m { return fail("\(format(n)) is less than the minimum \(format(m))") }
            if let m = o["maximum"].flatMap(number), n > m { return fail("\(format(n)) is more than the maximum \(format(m))") }
            if let m = o["exclusiveMinimum"].flatMap(number), n <= m { return fail("\(format(n)) must be more than \(format(m))") }
            if let m = o["exclusiveMaximum"].flatMap(number), n >= m { return fail("\(format(n)) must be less than \(format(m))") }
        }
        if let str = x.stringValue {
            let count = str.count
            if let m = o["minLength"].flatMap(number), Double(count) < m { return fail("shorter than \(format(m)) characters") }
            if let m = o["maxLength"].flatMap(number), Double(count) > m { return fail("longer than \(format(m)) characters") }
            if let re = o["pattern"]?.stringValue, !PosixRegex.wholeMatch(unanchored(re), str) {
                return fail("does not match the pattern \(re)")
            }
        }
        if let a = x.arrayValue {
            if let m = o["minItems"].flatMap(number), Double(a.count) < m { return fail("fewer than \(format(m)) items") }
            if let m = o["maxItems"].flatMap(number), Double(a.count) > m { return fail("more than \(format(m)) items") }
            if o["uniqueItems"]?.boolValue == true {
                for i in a.indices { for j in a.indices where j > i && equal(a[i], a[j]) { return fail("items \(i) and \(j) are equal") } }
            }
            if let item = o["items"] {
                for (i, v) in a.enumerated() { if let e = validate(v, item, at: "\(path)[\(i)]") { return e } }
            }
        }
        if let obj = x.objectValue {
            if let m = o["minProperties"].flatMap(number), Double(obj.count) < m { return fail("fewer than \(format(m)) properties") }
            if let m = o["maxProperties"].flatMap(number), Double(obj.count) > m { return fail("more than \(format(m)) properties") }
            for r in o["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where obj[r] == nil {
                return fail("the property \"\(r)\" is required")
            }
            let props = o["properties"]?.objectValue ?? [:]
            for key in obj.keys.sorted() {
                let v = obj[key]!
                let sub = path + "." + key
                if let ps = props[key] {
                    if let e = validate(v, ps, at: sub) { return e }
                } else if let extra = o["additionalProperties"] {
                    if case .bool(false) = extra { return fail("the property \"\(key)\" is not allowed (known: \(props.keys.sorted().joined(separator: ", ")))") }
                    if let e = validate(v, extra, at: sub) { return e }
                }
            }
        }
        if let all = o["allOf"]?.arrayValue {
            for sub in all { if let e = validate(x, sub, at: path) { return e } }
        }
        if let any = o["anyOf"]?.arrayValue {
            var first: SchemaError? = nil
            var matched = false
            for sub in any {
                if let e = validate(x, sub, at: path) { first = first ?? e } else { matched = true; break }
            }
            if !matched { return fail("matches none of anyOf (first: \(first?.description ?? "?"))") }
        }
        if let one = o["oneOf"]?.arrayValue {
            let n = one.filter { validate(x, $0, at: path) == nil }.count
            if n != 1 { return fail("matches \(n) of oneOf's schemas, not exactly one") }
        }
        if let not = o["not"], validate(x, not, at: path) == nil { return fail("must not match the \"not\" schema") }
        return nil
    }

    private static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = number(a), let y = number(b) { return x == y }
        return a == b
    }

    private static func format(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    }
}

public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// "#/properties/x" for a schema's own faults; "$.x[0]" for an instance's.
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

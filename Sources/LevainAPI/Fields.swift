#if canImport(Glibc)
import Glibc
#endif
import LevainJSON
import LevainSessionLog

/// Checks a JSON object's keys and reads typed fields with errors naming them.
public struct Fields: Sendable {
    public let object: JSONObject
    public let allowed: Set<String>
    public let prefix: String

    public init(_ object: JSONObject, allowed: Set<String>, prefix: String = "") {
        self.object = object
        self.allowed = allowed
        self.prefix = prefix
    }

    /// Refuses the first unknown key (in sorted order), naming the known ones.
    public func check() throws(APIError) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw APIError(.invalid, "unknown field \(prefix)\(key); known: \(allowed.sorted().joined(separator: ", "))", field: prefix + key)
        }
    }

    /// A string field; nil when absent or null.
    public static func string(_ o: JSONObject, _ key: String) throws(APIError) -> String? {
        guard let v = o[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw APIError(.invalid, "\(key) must be a string", field: key) }
        return s
    }

    /// A boolean field; nil when absent.
    public static func bool(_ o: JSONObject, _ key: String) throws(APIError) -> Bool? {
        guard let v = o[key] else { return nil }
        guard let b = v.boolValue else { throw APIError(.invalid, "\(key) must be true or false", field: key) }
        return b
    }
}

public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (padding and line breaks ignored); nil on any other byte.
    public static func decode(_ s: String) -> [UInt8]? {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = Int8(i) }
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in s.utf8 {
            if c == UInt8(ascii: "=") || c == 10 || c == 13 { continue }
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xff))
            }
        }
        return out
    }

    /// Standard base64 with padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i]), b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0, b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let n = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(n & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

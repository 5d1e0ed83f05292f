/// Query strings of the control API's URLs: every byte but the unreserved
/// ones percent-encoded, a space as %20 (the API reads '+' as a plus sign).
public enum URLQuery {
    /// `keepingSlashes`: '/' stays as it is (a path given as a value).
    public static func encode(_ s: String, keepingSlashes: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepingSlashes:
                out.append("/")
            default:
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// `base?k=v&...` (just `base` without items), values keeping their slashes.
    public static func path(_ base: String, _ items: [(String, String)]) -> String {
        guard !items.isEmpty else { return base }
        return base + "?" + items.map { "\(encode($0.0))=\(encode($0.1, keepingSlashes: true))" }.joined(separator: "&")
    }
}

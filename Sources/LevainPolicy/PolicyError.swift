/// The error of the LevainPolicy module. A policy error names the file, the
/// line and the key, and says what to do instead.
public struct PolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case syntax
        case unknownKey
        case wrongType
        case invalidValue
        case missing
        case notFound
        case seccomp
    }

    public var code: Code
    public var file: String
    public var line: Int?
    /// The dotted key ("limits.memory"), when the error is about one.
    public var key: String?
    public var message: String

    public init(_ code: Code, file: String, line: Int? = nil, key: String? = nil, _ message: String) {
        self.code = code
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// "policies/x.toml:12: limits.memory: invalid size ..." — the
    /// compiler-style form editors and humans both read.
    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

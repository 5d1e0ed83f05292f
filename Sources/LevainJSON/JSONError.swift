/// Why JSON text did not parse: the message names the byte offset and what
/// was expected there; a key given twice in one object is named by its path.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// The byte offset of the fault, when there is one.
    public var offset: Int?
    /// For a key that appears twice in one object: where, as a path of keys
    /// and indexes ("limits.memory", "a[2].b").
    public var duplicateKeyPath: String?

    public init(_ message: String, offset: Int? = nil, duplicateKeyPath: String? = nil) {
        self.message = message
        self.offset = offset
        self.duplicateKeyPath = duplicateKeyPath
    }

    public var description: String { message }
}

// The document model produced by `TOMLParser`.
//
// Choices made here (read before using the model):
// - `TOMLTable.entries` is an array of `(key:, node:)` tuples in source order. A tuple of
//   Sendable values is Sendable, so no separate entry struct is needed. The table also
//   keeps a key -> index map so that `table[key]` is O(1); it is rebuilt whenever
//   `entries` is assigned.
// - Positions are 1-based. Columns count UTF-8 bytes from the start of the line (a
//   leading byte-order mark is not counted).
// - Keys are Swift `String`s and compare with `String` equality, so two quoted keys that
//   differ only in Unicode normalization are the same key (the parser reports the second
//   as a duplicate). For policy files that is the safer reading.
// - Multi-line strings keep their line breaks as "\n" (a CRLF in the source becomes LF).
// - Date-times are validated but kept as their source text (`.datetime(String)`).

/// A place in the source text: 1-based line, 1-based column counted in UTF-8 bytes.
public struct TOMLPosition: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// A value with the places it came from.
public struct TOMLNode: Sendable {
    public var value: TOMLValue
    /// Where the value starts. For a table: its `[header]` (the opening bracket), the key
    /// that first created it for implicit and dotted-key tables, or the `{` of an inline
    /// table. For an array of tables: its first `[[header]]`.
    public var position: TOMLPosition
    /// Where the key that introduced the value starts. Nil for the elements of a literal
    /// array and for the root. Each element of an array of tables carries the position of
    /// the last key of its own `[[header]]`.
    public var keyPosition: TOMLPosition?

    public init(value: TOMLValue, position: TOMLPosition, keyPosition: TOMLPosition? = nil) {
        self.value = value
        self.position = position
        self.keyPosition = keyPosition
    }
}

public indirect enum TOMLValue: Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    /// Offset date-time, local date-time, local date or local time: validated, kept as the
    /// original text (a space separator stays a space).
    case datetime(String)
    case array([TOMLNode])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .datetime: "datetime"
        case .array: "array"
        case .table: "table"
        }
    }
}

public struct TOMLTable: Sendable {
    /// The keys and values in source order. Keys are unique in a parsed table.
    public var entries: [(key: String, node: TOMLNode)] {
        didSet { index = Self.makeIndex(entries) }
    }

    private var index: [String: Int]

    public init() {
        entries = []
        index = [:]
    }

    public init(entries: [(key: String, node: TOMLNode)]) {
        self.entries = entries
        index = Self.makeIndex(entries)
    }

    /// The node stored under `key` (the first one if `entries` was edited to hold the key
    /// twice).
    public subscript(key: String) -> TOMLNode? {
        guard let i = index[key], i < entries.count else { return nil }
        return entries[i].node
    }

    /// The keys in source order.
    public var keys: [String] { entries.map(\.key) }

    private static func makeIndex(_ entries: [(key: String, node: TOMLNode)]) -> [String: Int] {
        var index: [String: Int] = [:]
        index.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() where index[entry.key] == nil {
            index[entry.key] = i
        }
        return index
    }
}

public struct TOMLParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var position: TOMLPosition
    public var message: String

    public init(position: TOMLPosition, message: String) {
        self.position = position
        self.message = message
    }

    /// "line:column: message"
    public var description: String { "\(position): \(message)" }
}

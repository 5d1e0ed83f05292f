import LevainJSON
import GRDB

/// The one error type of the session log: a code to branch on, a message for
/// people, and the underlying cause when there is one (an SQLite error).
public struct SessionLogError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A read-only open of a file that does not exist.
        public static let logNotFound = Code(rawValue: "log-not-found")
        /// The file is not a Levain session log (no schema, or another database).
        public static let notASessionLog = Code(rawValue: "not-a-session-log")
        /// The log was written by a newer Levain (unknown migrations).
        public static let newerSchema = Code(rawValue: "newer-schema")
        /// The file could not be opened or created.
        public static let openFailed = Code(rawValue: "open-failed")
        /// A write on a log opened read-only.
        public static let readOnly = Code(rawValue: "read-only")
        /// A write after `close()`.
        public static let closed = Code(rawValue: "closed")
        /// `insertRun` with an idempotency key already used in the session;
        /// `existingRunID` names the run that holds it.
        public static let duplicateIdempotencyKey = Code(rawValue: "duplicate-idempotency-key")
        /// `insertSession` or `insertRun` with an id that already exists.
        public static let duplicateID = Code(rawValue: "duplicate-id")
        public static let unknownSession = Code(rawValue: "unknown-session")
        public static let unknownRun = Code(rawValue: "unknown-run")
        /// A bad argument (an empty id, a NUL character in an id, ...).
        public static let invalidArgument = Code(rawValue: "invalid-argument")
        public static let invalidJSON = Code(rawValue: "invalid-json")
        /// A stored row that cannot be read back (bad enum value, bad time).
        public static let malformedRow = Code(rawValue: "malformed-row")
        /// SQLite reports the database file as corrupt (SQLITE_CORRUPT, SQLITE_NOTADB).
        public static let corrupt = Code(rawValue: "corrupt")
        /// The database stayed locked by another writer past the busy timeout.
        public static let busy = Code(rawValue: "busy")
        /// Any other SQLite or I/O failure.
        public static let database = Code(rawValue: "database")
    }

    public let code: Code
    public let message: String
    /// The run already holding the key, for `.duplicateIdempotencyKey`.
    public let existingRunID: String?
    /// The SQLite extended result code behind this error, if any.
    public let sqliteCode: Int32?
    /// SQLite's own message for `sqliteCode`.
    public let sqliteMessage: String?

    public init(_ code: Code, _ message: String, existingRunID: String? = nil,
                sqliteCode: Int32? = nil, sqliteMessage: String? = nil) {
        self.code = code
        self.message = message
        self.existingRunID = existingRunID
        self.sqliteCode = sqliteCode
        self.sqliteMessage = sqliteMessage
    }

    init(_ code: Code, _ message: String, underlying: DatabaseError) {
        self.init(code, message, sqliteCode: underlying.extendedResultCode.rawValue,
                  sqliteMessage: underlying.message)
    }

    public var description: String {
        var text = "session log: \(message)"
        if let sqliteCode {
            text += " (SQLite error \(sqliteCode): \(sqliteMessage ?? "no message"))"
        }
        return text
    }
}

extension SessionLogError {
    /// Maps any error thrown by GRDB or by our own code to a SessionLogError.
    static func wrap(_ error: any Error, _ context: @autoclosure () -> String) -> SessionLogError {
        if let error = error as? SessionLogError { return error }
        guard let dbError = error as? DatabaseError else {
            return SessionLogError(.database, "\(context()): \(error)")
        }
        let code: Code
        switch dbError.resultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return SessionLogError(.corrupt, "\(context()): the database file is corrupt or not an SQLite database",
                                   underlying: dbError)
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            code = .busy
        case .SQLITE_READONLY:
            code = .readOnly
        case .SQLITE_CANTOPEN:
            code = .openFailed
        case .SQLITE_MISUSE where (dbError.message ?? "").lowercased().contains("closed"):
            code = .closed
        default:
            code = .database
        }
        return SessionLogError(code, context(), underlying: dbError)
    }
}

/// Runs `body`, converting whatever it throws into a SessionLogError.
@inline(__always) @discardableResult
func mapErrors<T>(_ context: @autoclosure () -> String, _ body: () throws -> T) throws(SessionLogError) -> T {
    do {
        return try body()
    } catch {
        throw SessionLogError.wrap(error, context())
    }
}

extension SessionLogError {
    /// Stored JSON that does not parse (only a damaged or tampered log has it).
    public init(_ error: JSONError) {
        self.init(.invalidJSON, error.message)
    }
}

import LevainJSON
import LevainSessionLog

/// The control API's error: every code maps to one HTTP status, the message
/// names the field or object and says what to do, and `cause` keeps the
/// error underneath (the log's, the kernel's) instead of flattening it into
/// the message. The supervisor's own error type is this one
/// (`SupervisorError`), so what a handler throws is what the client reads.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Bad input: a malformed body, a bad value, a path outside the workspace.
        case invalid = "invalid_request"
        case unauthorized
        case notFound = "not_found"
        /// The object is not in a state that allows it (a closed session).
        case conflict
        case tooLarge = "too_large"
        /// A jail could not be made (after the retries).
        case spawnFailed = "spawn_failed"
        /// Shutting down, or a harness that is gone.
        case unavailable
        case internalError = "internal_error"
    }

    public var code: Code
    public var message: String
    /// The request field at fault, when there is one.
    public var field: String?
    /// The errno name a file operation in the jail failed with (`EACCES`,
    /// `ENOENT`, `EISDIR`, ...), so clients can tell a permission error from
    /// a directory in the way, both 409.
    public var errno: String?
    /// What went wrong underneath, when something did (not sent to clients:
    /// it is for the supervisor's own messages and logs).
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, field: String? = nil, errno: String? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.errno = errno
        self.cause = cause
    }

    public var httpStatus: Int {
        switch code {
        case .invalid: 400
        case .unauthorized: 401
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .spawnFailed: 502
        case .unavailable: 503
        case .internalError: 500
        }
    }

    public var description: String { message }

    /// The error as the API sends it: `{"error": {"code", "message", "field"?, "errno"?}}`.
    public var json: JSONValue {
        var e: JSONObject = ["code": .string(code.rawValue), "message": .string(message)]
        if let field { e["field"] = .string(field) }
        if let errno { e["errno"] = .string(errno) }
        return ["error": .object(e)]
    }

    /// An error the API sent (`Reply.json`), read back; nil if the body is not one.
    public init?(status: Int, json: JSONObject?) {
        guard let e = json?["error"]?.objectValue, let m = e["message"]?.stringValue else { return nil }
        self.init(Code(rawValue: e["code"]?.stringValue ?? "") ?? Self.code(forStatus: status), m, field: e["field"]?.stringValue,
                  errno: e["errno"]?.stringValue)
    }

    public static func code(forStatus status: Int) -> Code {
        Code.allCases.first { APIError($0, "").httpStatus == status } ?? .internalError
    }
}

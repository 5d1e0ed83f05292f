/// The error of the LevainSupervisor module. Every code maps to one HTTP
/// status; the message names the field or object and says what to do.
public struct SupervisorError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
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

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
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
}

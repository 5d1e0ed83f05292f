import LevainAPI

/// The supervisor's error is the API's: what a handler throws is what the
/// client reads (code, message, field), with the cause kept beside it.
public typealias SupervisorError = APIError

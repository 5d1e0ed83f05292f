import LevainPolicy
import LevainSystem

/// The error of the LevainSandbox module: what failed, in words a user can act
/// on, with the errno and the spawn step underneath when there is one.
public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// The machine lacks isolation the policy asks for.
        case unsupported
        /// Bad input: a bind source that does not exist, a bad size, ...
        case invalidInput
        /// Setting up the jail failed at a spawn step.
        case spawn
        case cgroup
        case policy
        case io
    }

    public var code: Code
    public var message: String
    public var step: String?
    public var errno: Int32?

    public init(_ code: Code, _ message: String, step: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.step = step
        self.errno = errno
    }

    public init(_ error: PolicyError) {
        self.init(.policy, error.description)
    }

    public init(_ error: SystemError) {
        self.init(error.code == .cgroup ? .cgroup : .io, error.description, errno: error.errno?.rawValue)
    }

    public var description: String { message }
}

#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// The error of the LevainSystem module: what failed (a code), a message
/// naming the object (a path, a pid), and the errno underneath when there is
/// one.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        case syscall
        case cgroup
        case unsupported
        case invalidArgument
        case io
    }

    public var code: Code
    public var message: String
    public var errno: Errno?

    public init(_ code: Code, _ message: String, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// The error of the system call that just failed, from the thread's errno.
    public static func syscall(_ what: String, errno value: Int32 = Glibc.errno) -> SystemError {
        SystemError(.syscall, what, errno: Errno(rawValue: value))
    }

    public var description: String {
        if let errno { return "\(message): \(errno.symbolicName) (\(errno.errorDescription))" }
        return message
    }
}

extension Errno {
    /// "ENOENT" and the like, for messages and reports.
    public var symbolicName: String {
        switch self {
        case .permissionDenied: "EACCES"
        case .notPermitted: "EPERM"
        case .noSuchFileOrDirectory: "ENOENT"
        case .fileExists: "EEXIST"
        case .resourceBusy: "EBUSY"
        case .invalidArgument: "EINVAL"
        case .noFunction: "ENOSYS"
        case .notDirectory: "ENOTDIR"
        case .isDirectory: "EISDIR"
        case .tooManyOpenFiles: "EMFILE"
        case .noSpace: "ENOSPC"
        case .readOnlyFileSystem: "EROFS"
        case .badFileDescriptor: "EBADF"
        case .interrupted: "EINTR"
        case .resourceTemporarilyUnavailable: "EAGAIN"
        case .noMemory: "ENOMEM"
        case .tooManySymbolicLinkLevels: "ELOOP"
        case .improperLink: "EXDEV"
        case .noSuchProcess: "ESRCH"
        case .addressFamilyNotSupported: "EAFNOSUPPORT"
        case .fileTooLarge: "EFBIG"
        case .notSupported: "EOPNOTSUPP"
        default: "errno \(rawValue)"
        }
    }

    /// strerror's text without the thread-unsafe strerror.
    public var errorDescription: String {
        var buffer = [CChar](repeating: 0, count: 256)
        let text: String = buffer.withUnsafeMutableBufferPointer { buf in
            // Swift sees the XSI strerror_r (0 on success, text in buf).
            guard strerror_r(rawValue, buf.baseAddress!, buf.count) == 0 else { return "errno \(rawValue)" }
            return String(cString: buf.baseAddress!)
        }
        return text
    }
}

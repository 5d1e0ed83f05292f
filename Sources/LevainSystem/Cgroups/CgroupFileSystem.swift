#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// The few filesystem operations the cgroup drivers need, so that the drivers
/// can be exercised against a directory tree laid out like cgroupfs.
///
/// Writes never create files: on cgroupfs every interface file exists as soon
/// as its directory does, so a missing file means the controller or the
/// feature is absent, and a write to it must fail with ENOENT rather than
/// leave a stray regular file behind.
public protocol CgroupFileSystem: Sendable {
    /// mkdir(2) with mode 0755; EEXIST is reported, not swallowed.
    func mkdir(_ path: String) throws(SystemError)
    /// rmdir(2); errors (EBUSY, ENOENT, ...) are reported with their errno.
    func rmdir(_ path: String) throws(SystemError)
    /// The whole content of a file.
    func readText(_ path: String) throws(SystemError) -> String
    /// Writes `text` to an existing file in one write(2), as cgroupfs wants.
    func writeText(_ path: String, _ text: String) throws(SystemError)
    func exists(_ path: String) -> Bool
    func isDirectory(_ path: String) -> Bool
    /// open(2) with O_WRONLY|O_CLOEXEC (never O_CREAT); the caller closes it.
    func openForWriting(_ path: String) throws(SystemError) -> Int32
    /// open(2) with O_RDONLY|O_DIRECTORY|O_CLOEXEC; the caller closes it.
    func openDirectory(_ path: String) throws(SystemError) -> Int32
}

extension CgroupFileSystem {
    /// The file's content, or nil when it cannot be read (absent, most often).
    public func readTextIfPresent(_ path: String) -> String? {
        try? readText(path)
    }
}

/// `CgroupFileSystem` over the real system calls, EINTR retried.
public struct RealCgroupFileSystem: CgroupFileSystem {
    public init() {}

    public func mkdir(_ path: String) throws(SystemError) {
        while Glibc.mkdir(path, 0o755) != 0 {
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemError.syscall("mkdir \(path)", errno: e)
        }
    }

    public func rmdir(_ path: String) throws(SystemError) {
        while Glibc.rmdir(path) != 0 {
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemError.syscall("rmdir \(path)", errno: e)
        }
    }

    public func readText(_ path: String) throws(SystemError) -> String {
        let fd = try Self.open(path, O_RDONLY | O_CLOEXEC, what: "open \(path)")
        defer { _ = Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let e = Glibc.errno
                if e == EINTR { continue }
                throw SystemError.syscall("read \(path)", errno: e)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func writeText(_ path: String, _ text: String) throws(SystemError) {
        let fd = try Self.open(path, O_WRONLY | O_CLOEXEC, what: "open \(path)")
        defer { _ = Glibc.close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        // cgroupfs takes a value in a single write; the loop only matters for
        // a short write, which cgroupfs does not do.
        repeat {
            let n = bytes.withUnsafeBytes { buf in
                Glibc.write(fd, buf.baseAddress.map { $0 + offset }, buf.count - offset)
            }
            if n < 0 {
                let e = Glibc.errno
                if e == EINTR { continue }
                throw SystemError.syscall("write \(path)", errno: e)
            }
            offset += n
        } while offset < bytes.count
    }

    public func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func openForWriting(_ path: String) throws(SystemError) -> Int32 {
        try Self.open(path, O_WRONLY | O_CLOEXEC, what: "open \(path) for writing")
    }

    public func openDirectory(_ path: String) throws(SystemError) -> Int32 {
        try Self.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, what: "open directory \(path)")
    }

    private static func open(_ path: String, _ flags: Int32, what: String) throws(SystemError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags)
            if fd >= 0 { return fd }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemError.syscall(what, errno: e)
        }
    }
}

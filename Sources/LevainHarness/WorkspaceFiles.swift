#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// File operations in /workspace for the supervisor. Every path is relative
/// to /workspace and resolved beneath it (openat2 RESOLVE_BENEATH): `..` and
/// symlinks that lead out fail with EXDEV. They run with the jail user's
/// file ids (setfsuid), so they can touch exactly what a run could, and
/// what they create belongs to the jail user.
struct WorkspaceFiles {
    struct Failure: Error {
        var code: String
        var message: String

        static func errno(_ e: Int32, _ what: String) -> Failure {
            Failure(code: errnoName(e), message: "\(what): \(String(cString: strerror(e)))")
        }
    }

    struct Entry {
        var name: String
        var type: String
        var size: UInt64
        var mode: UInt32
        var mtime: Int64
    }

    let root: Int32
    let uid: UInt32
    let gid: UInt32
    static let resolve = UInt64(LV_RESOLVE_BENEATH | LV_RESOLVE_NO_MAGICLINKS)

    init(path: String = "/workspace", uid: UInt32, gid: UInt32) throws(Failure) {
        let fd = open(path, O_PATH_LINUX | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno(errno, path) }
        root = fd
        self.uid = uid
        self.gid = gid
    }

    /// Runs `body` with the jail user's file ids.
    func asJailUser<T>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        lv_set_fs_ids(uid, gid)
        defer { lv_set_fs_ids(0, 0) }
        return try body()
    }

    func asJailUserQuietly(_ body: () -> Void) {
        lv_set_fs_ids(uid, gid)
        body()
        lv_set_fs_ids(0, 0)
    }

    /// "a/b/c" -> ("a/b", "c"); "c" -> (".", "c").
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "." : dir, String(path[path.index(after: slash)...]))
    }

    static func validate(_ path: String) throws(Failure) {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.utf8.contains(0), path.utf8.count <= 4096 else {
            throw Failure(code: "EINVAL", message: "\(path): not a path relative to /workspace")
        }
        for comp in path.split(separator: "/") where comp == ".." {
            throw Failure(code: "EXDEV", message: "\(path): leaves the workspace")
        }
    }

    func openBeneath(_ path: String, _ flags: Int32, mode: UInt32 = 0) throws(Failure) -> Int32 {
        let fd = lv_openat2(root, path, flags | O_CLOEXEC, mode, Self.resolve)
        guard fd >= 0 else { throw .errno(errno, path) }
        return fd
    }

    /// Opens a file for reading; returns the fd and how many bytes to send:
    /// its size, refused (EFBIG) above `maxBytes` unless `truncate`, which
    /// sends its first `maxBytes` bytes instead.
    func openForReading(_ path: String, maxBytes: UInt64, truncate: Bool = false) throws(Failure) -> (Int32, UInt64) {
        try Self.validate(path)
        return try asJailUser { () throws(Failure) -> (Int32, UInt64) in
            let fd = try openBeneath(path, O_RDONLY | O_NOFOLLOW)
            var st = Glibc.stat()
            guard fstat(fd, &st) == 0 else { close(fd); throw .errno(errno, path) }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                close(fd)
                throw Failure(code: (st.st_mode & S_IFMT) == S_IFDIR ? "EISDIR" : "EINVAL", message: "\(path): not a regular file")
            }
            guard truncate || UInt64(st.st_size) <= maxBytes else {
                close(fd)
                throw Failure(code: "EFBIG", message: "\(path): \(st.st_size) bytes, more than \(maxBytes)")
            }
            return (fd, min(UInt64(st.st_size), maxBytes))
        }
    }

    /// Makes the parent directories of `path` (as the jail user) and opens
    /// a temporary file beside it; `commit` renames it into place.
    func beginWrite(_ path: String, mode: UInt32) throws(Failure) -> PendingWrite {
        try Self.validate(path)
        let (dir, base) = Self.split(path)
        guard base != "." && base != ".." && !base.isEmpty else { throw Failure(code: "EINVAL", message: "\(path): no file name") }
        return try asJailUser { () throws(Failure) -> PendingWrite in
            let dirfd = try mkdirs(dir)
            var random = [UInt8](repeating: 0, count: 6)
            _ = lv_random_bytes(&random, random.count)
            let tmp = ".levain-write-" + random.map { String($0, radix: 16) }.joined()
            let fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(mode & 0o777))
            guard fd >= 0 else { let e = errno; close(dirfd); throw .errno(e, path) }
            return PendingWrite(dirfd: dirfd, fd: fd, tempName: tmp, finalName: base, path: path, files: self)
        }
    }

    /// mkdir -p beneath the root; returns an fd of the directory.
    func mkdirs(_ dir: String) throws(Failure) -> Int32 {
        var cur = fcntl(root, F_DUPFD_CLOEXEC, 3)
        guard cur >= 0 else { throw .errno(errno, dir) }
        for comp in dir.split(separator: "/") where comp != "." {
            let name = String(comp)
            if mkdirat(cur, name, 0o755) != 0 && errno != EEXIST {
                let e = errno
                close(cur)
                throw .errno(e, dir)
            }
            let next = lv_openat2(cur, name, O_PATH_LINUX | O_DIRECTORY | O_CLOEXEC, 0, Self.resolve)
            let e = errno
            close(cur)
            guard next >= 0 else { throw .errno(e, dir) }
            cur = next
        }
        return cur
    }

    func list(_ path: String) throws(Failure) -> [Entry] {
        if path != "." { try Self.validate(path) }
        return try asJailUser { () throws(Failure) -> [Entry] in
            let fd = try openBeneath(path, O_RDONLY | O_DIRECTORY)
            guard let dir = fdopendir(fd) else { let e = errno; close(fd); throw .errno(e, path) }
            defer { closedir(dir) }
            var entries: [Entry] = []
            while let ent = readdir(dir) {
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name == "." || name == ".." || name.hasPrefix(".levain-write-") { continue }
                var st = Glibc.stat()
                guard fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                entries.append(Self.entry(name, st))
                if entries.count >= 10_000 { break }
            }
            return entries.sorted { $0.name < $1.name }
        }
    }

    func stat(_ path: String) throws(Failure) -> Entry {
        if path != "." { try Self.validate(path) }
        let (dir, base) = Self.split(path)
        return try asJailUser { () throws(Failure) -> Entry in
            if path == "." {
                var st = Glibc.stat()
                guard fstat(root, &st) == 0 else { throw .errno(errno, path) }
                return Self.entry(".", st)
            }
            let dirfd = try openBeneath(dir, O_PATH_LINUX | O_DIRECTORY)
            defer { close(dirfd) }
            var st = Glibc.stat()
            guard fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw .errno(errno, path) }
            return Self.entry(base, st)
        }
    }

    /// Makes a directory; with `parents` also the missing ones above it, and
    /// an existing directory is then no error (mkdir -p).
    func mkdir(_ path: String, parents: Bool, mode: UInt32) throws(Failure) {
        try Self.validate(path)
        let (dir, base) = Self.split(path)
        guard base != "." && !base.isEmpty else { throw Failure(code: "EEXIST", message: "\(path): the workspace itself") }
        try asJailUser { () throws(Failure) in
            let dirfd = parents ? try mkdirs(dir) : try openBeneath(dir, O_PATH_LINUX | O_DIRECTORY)
            defer { close(dirfd) }
            guard mkdirat(dirfd, base, mode_t(mode & 0o777)) != 0 else { return }
            let e = errno
            var st = Glibc.stat()
            if parents && e == EEXIST && fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                return
            }
            throw .errno(e, path)
        }
    }

    /// Moves `path` to `to` (rename(2) beneath the workspace: a file there is
    /// replaced, an empty directory too; a symlink is moved, not followed).
    func rename(_ path: String, to: String) throws(Failure) {
        try Self.validate(path)
        try Self.validate(to)
        let (fromDir, fromBase) = Self.split(path)
        let (toDir, toBase) = Self.split(to)
        guard fromBase != ".", toBase != "." else { throw Failure(code: "EINVAL", message: "the workspace itself cannot be moved") }
        try asJailUser { () throws(Failure) in
            let from = try openBeneath(fromDir, O_PATH_LINUX | O_DIRECTORY)
            defer { close(from) }
            let into = try openBeneath(toDir, O_PATH_LINUX | O_DIRECTORY)
            defer { close(into) }
            guard renameat(from, fromBase, into, toBase) == 0 else { throw .errno(errno, "\(path) -> \(to)") }
        }
    }

    func delete(_ path: String, recursive: Bool) throws(Failure) {
        try Self.validate(path)
        let (dir, base) = Self.split(path)
        guard base != "." else { throw Failure(code: "EINVAL", message: "the workspace itself cannot be deleted") }
        try asJailUser { () throws(Failure) in
            let dirfd = try openBeneath(dir, O_PATH_LINUX | O_DIRECTORY)
            defer { close(dirfd) }
            try removeEntry(dirfd, base, recursive: recursive, path: path, depth: 0)
        }
    }

    private func removeEntry(_ parent: Int32, _ name: String, recursive: Bool, path: String, depth: Int) throws(Failure) {
        var st = Glibc.stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw .errno(errno, path) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard recursive else { throw Failure(code: "EISDIR", message: "\(path): a directory; delete it with recursive") }
            guard depth < 256 else { throw Failure(code: "ELOOP", message: "\(path): too deep") }
            let sub = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard sub >= 0 else { throw .errno(errno, path) }
            guard let d = fdopendir(sub) else { let e = errno; close(sub); throw .errno(e, path) }
            defer { closedir(d) }
            var names: [String] = []
            while let ent = readdir(d) {
                let n = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if n != "." && n != ".." { names.append(n) }
            }
            for n in names { try removeEntry(dirfd(d), n, recursive: true, path: path + "/" + n, depth: depth + 1) }
            guard unlinkat(parent, name, AT_REMOVEDIR) == 0 else { throw .errno(errno, path) }
        } else {
            guard unlinkat(parent, name, 0) == 0 else { throw .errno(errno, path) }
        }
    }

    static func entry(_ name: String, _ st: Glibc.stat) -> Entry {
        let type: String
        switch st.st_mode & S_IFMT {
        case S_IFREG: type = "file"
        case S_IFDIR: type = "dir"
        case S_IFLNK: type = "symlink"
        default: type = "other"
        }
        return Entry(name: name, type: type, size: UInt64(max(0, st.st_size)), mode: UInt32(st.st_mode & 0o7777),
                     mtime: Int64(st.st_mtim.tv_sec))
    }
}

/// A file being written: bytes go to a temporary file, which is renamed
/// into place only when the whole content arrived within the size limit.
final class PendingWrite {
    let dirfd: Int32
    var fd: Int32
    let tempName: String
    let finalName: String
    let path: String
    let files: WorkspaceFiles
    var size: UInt64 = 0

    init(dirfd: Int32, fd: Int32, tempName: String, finalName: String, path: String, files: WorkspaceFiles) {
        self.dirfd = dirfd
        self.fd = fd
        self.tempName = tempName
        self.finalName = finalName
        self.path = path
        self.files = files
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(WorkspaceFiles.Failure) {
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw .errno(errno, path)
            }
            off += n
        }
        size += UInt64(bytes.count)
    }

    func commit() throws(WorkspaceFiles.Failure) {
        defer { cleanup() }
        guard fsync(fd) == 0 else { throw .errno(errno, path) }
        try files.asJailUser { () throws(WorkspaceFiles.Failure) in
            // A symlink in the file's place is not replaced: the caller may
            // think it writes where the link points (outside, perhaps).
            var st = Glibc.stat()
            if fstatat(dirfd, finalName, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                if (st.st_mode & S_IFMT) == S_IFLNK {
                    throw WorkspaceFiles.Failure(code: "ELOOP", message: "\(path) is a symlink; it is not replaced (delete it first)")
                }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    throw WorkspaceFiles.Failure(code: "EISDIR", message: "\(path) is a directory")
                }
            }
            guard renameat(dirfd, tempName, dirfd, finalName) == 0 else { throw .errno(errno, path) }
        }
    }

    /// Drops the temporary file (a failed or oversized write leaves nothing).
    func abort() {
        files.asJailUserQuietly { _ = unlinkat(dirfd, tempName, 0) }
        cleanup()
    }

    private func cleanup() {
        if fd >= 0 { close(fd); fd = -1 }
        close(dirfd)
    }

    deinit { if fd >= 0 { close(fd); _ = unlinkat(dirfd, tempName, 0); close(dirfd) } }
}

func errnoName(_ e: Int32) -> String {
    switch e {
    case ENOENT: "ENOENT"
    case EACCES: "EACCES"
    case EPERM: "EPERM"
    case EEXIST: "EEXIST"
    case EISDIR: "EISDIR"
    case ENOTDIR: "ENOTDIR"
    case EXDEV: "EXDEV"
    case ELOOP: "ELOOP"
    case EFBIG: "EFBIG"
    case ENOSPC: "ENOSPC"
    case EINVAL: "EINVAL"
    case ENOTEMPTY: "ENOTEMPTY"
    case EROFS: "EROFS"
    case ENAMETOOLONG: "ENAMETOOLONG"
    case E2BIG: "E2BIG"
    case ENOMEM: "ENOMEM"
    case EMFILE: "EMFILE"
    default: "E\(e)"
    }
}

/// O_PATH (Glibc's Swift module does not export it).
let O_PATH_LINUX: Int32 = 0o10000000

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainSystem

/// A workspace with a size the kernel enforces: a sparse ext4 image file per
/// workspace (`<workspace>.img`), attached to a loop device by the parent and
/// mounted at /workspace inside the jail's own mount namespace. A run that
/// fills it gets ENOSPC; the host's disk gives at most the image's size (and
/// only what is written: the file is sparse, and the mount's `discard` gives
/// deleted blocks back). Nothing is mounted on the host: the mount goes with
/// the jail's mount namespace, and the loop device (LO_FLAGS_AUTOCLEAR) with
/// its last user, so a crash of the supervisor leaves neither behind.
public enum WorkspaceImage {
    /// The image file of a workspace whose plain-directory path would be `workspace`.
    public static func path(of workspace: String) -> String { workspace + ".img" }

    /// The mount options inside the jail: deleted files' blocks go back to
    /// the host (the image shrinks); no background thread zeroing inode
    /// tables (a fresh image's are holes already). (The spawn core adds
    /// noatime, nosuid, nodev.)
    public static let mountOptions = "discard,noinit_itable"

    /// Where mkfs.ext4 may be; the first that exists is used.
    static let mkfsCandidates = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"]

    /// Makes the image unless it exists: a sparse file of `size` bytes with an
    /// ext4 filesystem whose root directory belongs to uid:gid (host ids).
    /// Made under a temporary name and renamed into place, so a crash never
    /// leaves a half-made image. An existing image keeps its size.
    ///
    /// mkfs.ext4 runs once per (size, owner) into `templates` (a directory
    /// of the state's cache); each new image is a sparse copy of that (under
    /// 1 MiB of data), which takes a millisecond where mkfs takes 25.
    /// True when it made the image now (nothing can hold it yet: attach it
    /// `fresh`), false when it was there.
    @discardableResult
    public static func prepare(_ image: String, size: UInt64, uid: UInt32, gid: UInt32,
                               templates: String? = nil) throws(SandboxError) -> Bool {
        var st = stat()
        if lstat(image, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw SandboxError(.io, "the workspace image \(image) is not a regular file")
            }
            return false
        }
        if let slash = image.lastIndex(of: "/"), slash != image.startIndex {
            try Directories.make(String(image[..<slash]), mode: 0o700)
        }
        guard access("/dev/loop-control", F_OK) == 0 else {
            throw SandboxError(.unsupported, "a workspace_size needs loop devices, and /dev/loop-control is missing: load the loop module (modprobe loop), or set [filesystem] workspace_size = \"off\" for an unbounded host directory")
        }
        if let templates {
            try Directories.make(templates, mode: 0o700)
            let template = templates + "/workspace-\(size)-\(uid)-\(gid).img"
            if access(template, F_OK) != 0 { try makeFilesystem(template, size: size, uid: uid, gid: gid) }
            try copySparse(from: template, to: image)
        } else {
            try makeFilesystem(image, size: size, uid: uid, gid: gid)
        }
        return true
    }

    /// mkfs.ext4 on a new sparse file, renamed to `image` when done.
    static func makeFilesystem(_ image: String, size: UInt64, uid: UInt32, gid: UInt32) throws(SandboxError) {
        guard let mkfs = mkfsCandidates.first(where: { access($0, X_OK) == 0 }) else {
            throw SandboxError(.unsupported, "a workspace_size needs mkfs.ext4 (Debian package e2fsprogs): install it, or set [filesystem] workspace_size = \"off\" for an unbounded host directory")
        }
        let temporary = image + ".new-\(getpid())"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SandboxError(.io, "cannot create the workspace image \(temporary): \(String(cString: strerror(errno)))")
        }
        let sized = ftruncate(fd, off_t(size)) == 0
        let sizeError = errno
        close(fd)
        guard sized else {
            unlink(temporary)
            throw SandboxError(.io, "cannot size the workspace image \(temporary) to \(size) bytes: \(String(cString: strerror(sizeError)))")
        }
        // -m 0: no blocks reserved for root (the jail user gets them all);
        // lazy init: only the metadata mkfs must write now, not zeroed tables.
        let args = [mkfs, "-q", "-F", "-m", "0", "-L", "workspace",
                    "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=\(uid):\(gid)", temporary]
        let (status, output) = QuietProcess.run(args, outputPath: temporary + ".output")
        guard status == 0 else {
            unlink(temporary)
            throw SandboxError(.io, "mkfs.ext4 failed on the workspace image \(temporary) (status \(status)): \(output)")
        }
        try renameIntoPlace(temporary, image)
    }

    /// Copies the data extents of `source` (SEEK_DATA/SEEK_HOLE) into a new
    /// file of the same size, renamed to `destination` when done.
    static func copySparse(from source: String, to destination: String) throws(SandboxError) {
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard input >= 0 else { throw SandboxError(.io, "cannot open \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var st = stat()
        guard fstat(input, &st) == 0 else { throw SandboxError(.io, "cannot stat \(source): \(String(cString: strerror(errno)))") }
        let temporary = destination + ".new-\(getpid())"
        unlink(temporary)
        let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw SandboxError(.io, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var failure: Int32 = 0
        if ftruncate(output, st.st_size) != 0 { failure = errno }
        var offset: off_t = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while failure == 0 && offset < st.st_size {
            let data = lseek(input, offset, 3 /* SEEK_DATA */)
            if data < 0 { if errno != ENXIO { failure = errno }; break }
            var hole = lseek(input, data, 4 /* SEEK_HOLE */)
            if hole < 0 { hole = st.st_size }
            var at = data
            while failure == 0 && at < hole {
                let n = pread(input, &buffer, min(buffer.count, Int(hole - at)), at)
                if n <= 0 { failure = n < 0 ? errno : EIO; break }
                if pwrite(output, buffer, n, at) != n { failure = errno; break }
                at += off_t(n)
            }
            offset = hole
        }
        close(output)
        guard failure == 0 else {
            unlink(temporary)
            throw SandboxError(.io, "cannot copy the workspace template \(source) to \(temporary): \(String(cString: strerror(failure)))")
        }
        try renameIntoPlace(temporary, destination)
    }

    static func renameIntoPlace(_ temporary: String, _ path: String) throws(SandboxError) {
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw SandboxError(.io, "cannot rename the workspace image into place at \(path): \(String(cString: strerror(e)))")
        }
    }

    /// The image's size in bytes (its apparent size: the quota), or nil.
    public static func size(of image: String) -> UInt64? {
        var st = stat()
        guard stat(image, &st) == 0 else { return nil }
        return UInt64(st.st_size)
    }

    /// The loop device that has the image attached now (an earlier jail of
    /// the same workspace whose mount namespace is going away), or nil.
    public static func holder(of image: String) -> String? {
        var st = stat()
        guard stat(image, &st) == 0 else { return nil }
        let n = lv_loop_find(UInt64(st.st_dev), UInt64(st.st_ino))
        return n < 0 ? nil : "/dev/loop\(n)"
    }

    /// Attaches the image to a free loop device. An ext4 image mounted twice
    /// at once is corrupted, so an image another loop device has is refused:
    /// callers wait for `holder(of:)` to be nil first (an earlier jail of the
    /// same workspace lets go of it when its mount namespace goes).
    /// `fresh`: the caller made the image just now, so nothing can hold it
    /// (saves a scan of every loop device).
    public static func attach(_ image: String, fresh: Bool = false) throws(SandboxError) -> LoopDevice {
        let fd = open(image, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw SandboxError(.io, "cannot open the workspace image \(image): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw SandboxError(.io, "the workspace image \(image) is not a regular file")
        }
        let holder = fresh ? -1 : lv_loop_find(UInt64(st.st_dev), UInt64(st.st_ino))
        guard holder < 0 else {
            throw SandboxError(.io, "the workspace image \(image) is still in use (by /dev/loop\(holder)): an earlier jail of this workspace has not let go of it; try again")
        }
        var index: Int32 = -1
        let loop = lv_loop_attach(fd, 0, &index)
        guard loop >= 0 else {
            throw SandboxError(.io, "cannot attach the workspace image \(image) to a loop device: \(String(cString: strerror(-loop)))")
        }
        return LoopDevice(fd: loop, path: "/dev/loop\(index)")
    }
}

/// A loop device attached to a workspace image. The holder keeps it open
/// until the jail has mounted it (it runs), then releases it: from then on
/// only the jail's mount keeps it, and it detaches by itself when that goes.
public struct LoopDevice: Sendable {
    public let fd: Int32
    public let path: String

    public func release() { close(fd) }
}

#if canImport(Glibc)
import Glibc
#endif

/// Removing what a jail may have written into a host directory (a warm
/// jail's workspace): symbolic links are removed, never followed; every
/// directory is opened with O_NOFOLLOW relative to its parent, so a rename
/// inside the tree cannot send the removal elsewhere.
public enum FileTree {
    /// Directories nested deeper than this are left in place (and the call
    /// reports it): the recursion is bounded whatever the tree holds.
    public static let maximumDepth = 256

    /// Removes `path` (a file, a link or a directory tree). True when
    /// nothing is left; a missing path counts as removed.
    @discardableResult
    public static func remove(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else { return errno == ENOENT }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return unlink(path) == 0 || errno == ENOENT }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        let emptied = removeContents(of: fd, depth: 0)
        close(fd)
        return emptied && (rmdir(path) == 0 || errno == ENOENT)
    }

    /// Empties the directory `fd` (which the call keeps open).
    private static func removeContents(of fd: Int32, depth: Int) -> Bool {
        guard depth < maximumDepth else { return false }
        let listing = dup(fd)
        guard listing >= 0, let dir = fdopendir(listing) else {
            if listing >= 0 { close(listing) }
            return false
        }
        defer { closedir(dir) }
        var ok = true
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            if unlinkat(fd, name, 0) == 0 || errno == ENOENT { continue }
            guard errno == EISDIR else { ok = false; continue }
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { ok = false; continue }
            let emptied = removeContents(of: child, depth: depth + 1)
            close(child)
            if !(emptied && (unlinkat(fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)) { ok = false }
        }
        return ok
    }
}

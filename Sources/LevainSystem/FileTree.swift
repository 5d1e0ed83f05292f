#if canImport(Glibc)
import Glibc
#endif

/// Removing what a jail may have written into a host directory (a warm
/// jail's workspace): symbolic links are removed, never followed; every
/// directory is opened with O_NOFOLLOW relative to its parent, so a rename
/// inside the tree cannot send the removal elsewhere, and a directory on
/// another filesystem (a mount) is left alone. Names are used as the bytes
/// they are, whatever their encoding.
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
        let emptied = removeContents(of: fd, device: st.st_dev, depth: 0)
        close(fd)
        return emptied && (rmdir(path) == 0 || errno == ENOENT)
    }

    /// Empties the directory `fd` (which the call keeps open). Passes over
    /// it until one removes nothing: entries unlinked during a readdir may
    /// make it skip others.
    private static func removeContents(of fd: Int32, device: dev_t, depth: Int) -> Bool {
        guard depth < maximumDepth else { return false }
        // Bounded: a pass that removes nothing ends it, and so does the
        // 16th (something keeps writing into the tree).
        for _ in 0..<16 {
            let listing = dup(fd)
            guard listing >= 0, let dir = fdopendir(listing) else {
                if listing >= 0 { close(listing) }
                return false
            }
            rewinddir(dir)
            var removed = 0, left = 0
            while let entry = readdir(dir) {
                let outcome: Int = withUnsafePointer(to: &entry.pointee.d_name) { raw in
                    raw.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                        if strcmp(name, ".") == 0 || strcmp(name, "..") == 0 { return 0 }
                        return removeEntry(name, in: fd, device: device, depth: depth) ? 1 : -1
                    }
                }
                if outcome > 0 { removed += 1 } else if outcome < 0 { left += 1 }
            }
            closedir(dir)
            if left == 0 && removed == 0 { return true }
            if removed == 0 { return false }
        }
        return false
    }

    private static func removeEntry(_ name: UnsafePointer<CChar>, in fd: Int32, device: dev_t, depth: Int) -> Bool {
        if unlinkat(fd, name, 0) == 0 || errno == ENOENT { return true }
        guard errno == EISDIR else { return false }
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else { return false }
        defer { close(child) }
        var st = stat()
        guard fstat(child, &st) == 0, st.st_dev == device else { return false }
        return removeContents(of: child, device: device, depth: depth + 1)
            && (unlinkat(fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
    }
}

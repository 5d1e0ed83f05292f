#if canImport(Glibc)
import Glibc
#endif

/// Resolution of host paths given for binds.
///
/// A bind source is resolved in the parent, component by component. A
/// symlink is followed only when root owns it and it sits in a directory
/// that only root can write (like /bin -> usr/bin); a symlink anybody else
/// could have planted — a user in /tmp, a jail in its workspace — is refused.
/// The child then opens the canonical path with RESOLVE_NO_SYMLINKS, so a
/// symlink planted between the two steps fails the run instead of
/// redirecting the bind.
public enum HostPath {
    public enum Failure: Error, Equatable, Sendable {
        case notFound(String)
        case untrustedSymlink(path: String, owner: UInt32)
        case tooManyLinks(String)
        case notAbsolute(String)
        case other(String, Int32)
    }

    public static func resolve(_ path: String) -> Result<String, Failure> {
        guard path.hasPrefix("/") else { return .failure(.notAbsolute(path)) }
        var pending = path.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let comp = pending.removeFirst()
            if comp == "." || comp.isEmpty { continue }
            if comp == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let parent = "/" + resolved.joined(separator: "/")
            let candidate = (resolved.isEmpty ? "" : parent) + "/" + comp
            var st = stat()
            if lstat(candidate, &st) != 0 {
                let e = errno
                return .failure(e == ENOENT || e == ENOTDIR ? .notFound(candidate) : .other(candidate, e))
            }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                hops += 1
                if hops > 40 { return .failure(.tooManyLinks(path)) }
                var parentStat = stat()
                _ = lstat(parent, &parentStat)
                let parentWritableByOthers = parentStat.st_uid != 0 || (parentStat.st_mode & 0o022) != 0
                if st.st_uid != 0 || parentWritableByOthers {
                    return .failure(.untrustedSymlink(path: candidate, owner: st.st_uid))
                }
                var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlink(candidate, &buf, buf.count - 1)
                if n < 0 { return .failure(.other(candidate, errno)) }
                let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let targetComps = target.split(separator: "/").map(String.init)
                if target.hasPrefix("/") { resolved = [] }
                pending = targetComps + pending
                continue
            }
            resolved.append(comp)
        }
        return .success("/" + resolved.joined(separator: "/"))
    }

    public static func describe(_ failure: Failure, for original: String) -> String {
        switch failure {
        case .notFound(let p):
            return p == original ? "\(original) does not exist" : "\(original) does not exist (\(p) is missing)"
        case .untrustedSymlink(let p, let owner):
            return "\(original): \(p) is a symlink that uid \(owner) could have planted (only symlinks root owns in root-only directories are followed); give the real path"
        case .tooManyLinks(let p):
            return "\(p): too many levels of symbolic links"
        case .notAbsolute(let p):
            return "\(p) is not an absolute path"
        case .other(let p, let e):
            return "\(p): \(String(cString: strerror(e)))"
        }
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The target of a symlink, or nil when path is not one.
    public static func symlinkTarget(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return nil }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}

extension HostPath {
    /// Why the jail's user (host `uid`/`gid`) cannot write the bind source
    /// `path`, or nil when it can (or `path` is gone or a symlink: the bind
    /// reports those).
    /// A read-write bind keeps the host's owners: a directory root owns with
    /// mode 0755 binds fine and refuses every write from the jail, which is
    /// better said before the run than as "Permission denied" inside it.
    public static func writeProblem(_ path: String, uid: UInt32, gid: UInt32) -> String? {
        var st = stat()
        // Gone, or a symlink: the bind's own resolution reports those.
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFLNK else { return nil }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        let need: mode_t = isDirectory ? 0o3 : 0o2  // write (and search, for a directory)
        let bits: mode_t
        if st.st_uid == uid {
            bits = (st.st_mode >> 6) & 0o7
        } else if st.st_gid == gid {
            bits = (st.st_mode >> 3) & 0o7
        } else {
            bits = st.st_mode & 0o7
        }
        guard bits & need != need else { return nil }
        let mode = String(st.st_mode & 0o7777, radix: 8)
        return """
            the jail's user is host uid \(uid) (0x\(String(uid, radix: 16, uppercase: true))), which cannot write \(path) \
            (owner uid \(st.st_uid), gid \(st.st_gid), mode 0\(mode)): give it to that uid \
            (chown -R \(uid):\(gid) \(path)), make it writable for others, or bind it read-only
            """
    }
}

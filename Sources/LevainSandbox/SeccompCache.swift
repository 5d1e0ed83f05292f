#if canImport(Glibc)
import Glibc
#endif
import LevainPolicy

/// Compiled seccomp programs kept on disk, so a run does not pay for
/// decoding and compiling the profile (about 4 ms for the default one) every
/// time. An entry stores the full key — the profile text and the compiler's
/// environment — and is used only when that key matches byte for byte; the
/// file name is just a hash for finding it. The cache lives in the state
/// directory (root's, 0700); a missing or unwritable cache only costs time.
public enum SeccompCache {
    static let magic = "LEVAIN-SECCOMP-CACHE 1\n"

    /// The compiled profile, from the cache or compiled now (and stored).
    public static func compiled(profile nameOrPath: String, cacheDirectory: String?) throws(PolicyError) -> CompiledSeccomp {
        let (text, file, builtinHash) = try SeccompProfile.source(nameOrPath)
        // A built-in profile is named by its hash, computed when it was
        // compiled in; a file by its whole text.
        let key = SeccompCompiler.environmentKey() + "\n" + (builtinHash.map { "builtin \(nameOrPath) \($0)" } ?? text)
        let path = cacheDirectory.map { "\($0)/seccomp-\(BuiltinCatalog.textHash(key)).bin" }
        if let path, let bytes = readAll(path), let hit = decode(bytes, key: key) {
            return hit
        }
        let compiled = try SeccompCompiler.compile(try SeccompProfile.decode(text, file: file), file: file)
        if let path, let dir = cacheDirectory {
            store(encode(compiled, key: key), at: path, directory: dir)
        }
        return compiled
    }

    // Format: magic, then length-prefixed fields (8-byte little-endian
    // lengths): key, metadata text, then each program.
    static func encode(_ c: CompiledSeccomp, key: String) -> [UInt8] {
        var out = Array(magic.utf8)
        func field(_ bytes: [UInt8]) {
            var n = UInt64(bytes.count).littleEndian
            withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
            out.append(contentsOf: bytes)
        }
        field(Array(key.utf8))
        let meta = [
            String(c.defaultAction.rawValue), String(c.allowedSyscalls), String(c.deniedSyscalls), String(c.skippedRules),
            c.architectures.joined(separator: ","), c.unknownNames.joined(separator: ","), String(c.programs.count),
        ].joined(separator: "\n")
        field(Array(meta.utf8))
        for p in c.programs { field(p.bytes) }
        return out
    }

    static func decode(_ bytes: [UInt8], key: String) -> CompiledSeccomp? {
        let m = Array(magic.utf8)
        guard bytes.count > m.count, Array(bytes[0..<m.count]) == m else { return nil }
        var pos = m.count
        func field() -> [UInt8]? {
            guard pos + 8 <= bytes.count else { return nil }
            var n: UInt64 = 0
            for i in 0..<8 { n |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
            pos += 8
            guard n <= UInt64(bytes.count - pos) else { return nil }
            let f = Array(bytes[pos..<pos + Int(n)])
            pos += Int(n)
            return f
        }
        guard let k = field(), k == Array(key.utf8), let metaBytes = field() else { return nil }
        let meta = String(decoding: metaBytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard meta.count == 7, let action = UInt32(meta[0]), let allowed = Int(meta[1]), let denied = Int(meta[2]),
              let skipped = Int(meta[3]), let count = Int(meta[6]), count >= 1, count <= 4 else { return nil }
        var programs: [BPFProgram] = []
        for _ in 0..<count {
            guard let p = field(), !p.isEmpty, p.count % 8 == 0, p.count / 8 <= SeccompCompiler.maxInstructions else { return nil }
            programs.append(BPFProgram(bytes: p))
        }
        guard pos == bytes.count else { return nil }
        return CompiledSeccomp(programs: programs, defaultAction: SeccompAction(rawValue: action),
                               architectures: meta[4].isEmpty ? [] : meta[4].split(separator: ",").map(String.init),
                               unknownNames: meta[5].isEmpty ? [] : meta[5].split(separator: ",").map(String.init),
                               allowedSyscalls: allowed, deniedSyscalls: denied, skippedRules: skipped)
    }

    static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    static func store(_ bytes: [UInt8], at path: String, directory: String) {
        guard (try? Directories.make(directory, mode: 0o700)) != nil else { return }
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return }
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        close(fd)
        if !ok || rename(tmp, path) != 0 { unlink(tmp) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// Reads a waiting caller's arguments and identity from /proc. Everything
/// read here is the jail's and hostile: every read is bounded, and the
/// notifier checks the notification is still pending before using any of it
/// (the pid cannot have been reused while its call waits).
struct SyscallDecoder {
    static let maxString = 4096
    static let maxArgs = 256
    static let maxArgvBytes = 32 << 10
    static let i386: UInt32 = 0x4000_0003
    static let x32Bit: Int32 = 0x4000_0000
    /// O_WRONLY, O_RDWR, O_CREAT, O_TRUNC.
    static let writeFlags: UInt64 = 0o1 | 0o2 | 0o100 | 0o1000

    let pid: Int32
    let mem: Int32
    /// Pointers are 4 bytes for i386 and x32 callers.
    let pointerSize: Int

    init?(pid: UInt32, arch: UInt32, nr: Int32) {
        self.pid = Int32(bitPattern: pid)
        mem = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        guard mem >= 0 else { return nil }
        pointerSize = arch == Self.i386 || nr & Self.x32Bit != 0 ? 4 : 8
    }

    func close() { _ = Glibc.close(mem) }

    /// Fills `call` from the arguments of `syscall`. False: a call not to
    /// record (an openat2 without a write flag).
    func decode(_ syscall: String, _ a: [UInt64], into call: inout AuditedCall) -> Bool {
        func path(_ dirfd: UInt64?, _ pointer: UInt64) {
            let (p, cut) = string(at: pointer)
            if cut { call.truncated = true }
            call.paths.append(resolve(p, dirfd: dirfd.map { Int32(truncatingIfNeeded: $0) }))
        }
        switch syscall {
        case "execve":
            path(nil, a[0])
            call.argv = strings(at: a[1], truncated: &call.truncated)
        case "execveat":
            path(a[0], a[1])
            call.argv = strings(at: a[2], truncated: &call.truncated)
            call.flags = a[4]
        case "open", "creat":
            path(nil, a[0])
            call.flags = syscall == "creat" ? 0o1101 : a[1] & 0xffff_ffff
        case "openat":
            path(a[0], a[1])
            call.flags = a[2] & 0xffff_ffff
        case "openat2":
            // struct open_how: flags is its first u64.
            guard let how = read(at: a[2], count: 8), how.count == 8 else { return true }
            let flags = how.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            guard flags & Self.writeFlags != 0 else { return false }
            path(a[0], a[1])
            call.flags = flags
        case "connect", "bind":
            call.fd = Int32(truncatingIfNeeded: a[0])
            call.address = sockaddr(at: a[1], length: a[2], into: &call)
        case "listen":
            call.fd = Int32(truncatingIfNeeded: a[0])
        case "unlink":
            path(nil, a[0])
        case "unlinkat":
            path(a[0], a[1])
            call.flags = a[2] & 0xffff_ffff
        case "rename":
            path(nil, a[0])
            path(nil, a[1])
        case "renameat", "renameat2":
            path(a[0], a[1])
            path(a[2], a[3])
            if syscall == "renameat2" { call.flags = a[4] & 0xffff_ffff }
        case "ptrace":
            call.request = Int64(bitPattern: a[0])
            call.target = Int64(Int32(truncatingIfNeeded: a[1]))
        case "kill":
            call.target = Int64(Int32(truncatingIfNeeded: a[0]))
            call.signal = Int32(truncatingIfNeeded: a[1])
        case "tgkill":
            call.target = Int64(Int32(truncatingIfNeeded: a[1]))
            call.signal = Int32(truncatingIfNeeded: a[2])
        default:
            break
        }
        return true
    }

    // MARK: memory

    func read(at address: UInt64, count: Int) -> [UInt8]? {
        guard address != 0, count > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        guard address <= UInt64(Int64.max) else { return nil }
        let n = buffer.withUnsafeMutableBytes { pread(mem, $0.baseAddress, count, off_t(Int64(address))) }
        guard n > 0 else { return nil }
        return Array(buffer.prefix(n))
    }

    /// A NUL-terminated string, read a page at a time (a string may end
    /// just before an unmapped page); cut at maxString.
    func string(at address: UInt64) -> (String, Bool) {
        guard address != 0 else { return ("", true) }
        var bytes: [UInt8] = []
        var at = address
        while bytes.count < Self.maxString {
            let toPage = 4096 - Int(at % 4096)
            guard let chunk = read(at: at, count: min(toPage, Self.maxString - bytes.count)) else { return (decode(bytes), true) }
            if let end = chunk.firstIndex(of: 0) {
                bytes += chunk[..<end]
                return (decode(bytes), false)
            }
            bytes += chunk
            at &+= UInt64(chunk.count)
        }
        return (decode(bytes), true)
    }

    func decode(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// A NULL-terminated array of string pointers (argv).
    func strings(at address: UInt64, truncated: inout Bool) -> [String] {
        var out: [String] = []
        var total = 0
        var at = address
        while out.count < Self.maxArgs {
            guard let raw = read(at: at, count: pointerSize), raw.count == pointerSize else {
                truncated = true
                return out
            }
            let pointer = pointerSize == 8 ? raw.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                                            : UInt64(raw.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
            if pointer == 0 { return out }
            let (s, cut) = string(at: pointer)
            if cut { truncated = true }
            total += s.utf8.count
            guard total <= Self.maxArgvBytes else {
                truncated = true
                return out
            }
            out.append(s)
            at &+= UInt64(pointerSize)
        }
        truncated = true
        return out
    }

    /// The address as text; an inet one's port (and IPv4 address) into `call`.
    func sockaddr(at address: UInt64, length: UInt64, into call: inout AuditedCall) -> String? {
        guard length >= 2, length <= 128, let b = read(at: address, count: Int(length)), b.count >= 2 else { return nil }
        let family = Int32(UInt16(b[0]) | UInt16(b[1]) << 8)
        func port(_ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
        switch family {
        case AF_INET where b.count >= 8:
            call.port = port(2)
            call.ipv4 = UInt32(b[4]) << 24 | UInt32(b[5]) << 16 | UInt32(b[6]) << 8 | UInt32(b[7])
            return "\(b[4]).\(b[5]).\(b[6]).\(b[7]):\(port(2))"
        case AF_INET6 where b.count >= 24:
            call.port = port(2)
            var groups: [String] = []
            for i in stride(from: 8, to: 24, by: 2) { groups.append(String(Int(b[i]) << 8 | Int(b[i + 1]), radix: 16)) }
            return "[\(groups.joined(separator: ":"))]:\(port(2))"
        case AF_UNIX:
            let rest = Array(b.dropFirst(2))
            if rest.first == 0 { return "unix:@" + decode(Array(rest.dropFirst().prefix { $0 != 0 })) }
            return "unix:" + decode(Array(rest.prefix { $0 != 0 }))
        default:
            return "family \(family)"
        }
    }

    // MARK: /proc

    /// An absolute path in the jail: `p` as given when absolute, else
    /// against the caller's cwd or the directory fd, normalised lexically.
    func resolve(_ p: String, dirfd: Int32?) -> String {
        if p.hasPrefix("/") { return Self.normalize(p) }
        let base = dirfd.flatMap { $0 == -100 ? nil : $0 }.map { Self.link("/proc/\(pid)/fd/\($0)") }
            ?? Self.link("/proc/\(pid)/cwd")
        guard let base else { return p }
        return Self.normalize(p.isEmpty ? base : base + "/" + p)
    }

    static func normalize(_ p: String) -> String {
        // Most paths need nothing: no "//", no "/./" or "/../", no trailing "/".
        let u = Array(p.utf8)
        var clean = u.first == 47 && (u.count == 1 || u.last != 47)
        if clean {
            for i in 0..<u.count where u[i] == 47 && i + 1 < u.count {
                let next = u[i + 1]
                if next == 47 { clean = false; break }
                if next == 46 && (i + 2 == u.count || u[i + 2] == 47 || (u[i + 2] == 46 && (i + 3 == u.count || u[i + 3] == 47))) {
                    clean = false
                    break
                }
            }
        }
        if clean { return p }
        var parts: [Substring] = []
        for c in p.split(separator: "/") {
            if c == "." { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buffer, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The pid in the innermost pid namespace (the last "NSpid:" field of
    /// status), how many namespaces deep, and the parent's host pid. Read
    /// as bytes: this runs for every gated call.
    static func identity(_ hostPID: Int32) -> (pid: Int32?, nsDepth: Int, ppid: Int32?) {
        guard let status = readSmallFileBytes("/proc/\(hostPID)/status", limit: 4096), !status.isEmpty else { return (nil, 0, nil) }
        return status.withUnsafeBufferPointer { b -> (Int32?, Int, Int32?) in
            var pid: Int32? = nil, depth = 0, ppid: Int32? = nil
            var i = 0
            // Line by line; only PPid and NSpid are looked at.
            while i < b.count {
                var end = i
                while end < b.count && b[end] != 10 { end += 1 }
                if b[i] == UInt8(ascii: "P"), Self.starts(b, i, end, Self.pPID) {
                    ppid = Self.fields(b, i + Self.pPID.count, end).first
                } else if b[i] == UInt8(ascii: "N"), Self.starts(b, i, end, Self.nsPID) {
                    let ids = Self.fields(b, i + Self.nsPID.count, end)
                    depth = ids.count
                    pid = ids.last
                    break  // NSpid comes after PPid
                }
                i = end + 1
            }
            return (pid, depth, ppid)
        }
    }

    static func starts(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ prefix: [UInt8]) -> Bool {
        guard end - i >= prefix.count else { return false }
        for k in 0..<prefix.count where b[i + k] != prefix[k] { return false }
        return true
    }

    /// The decimal numbers of b[i..<end], separated by tabs or spaces.
    static func fields(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> [Int32] {
        var out: [Int32] = []
        var v: Int32 = 0, digits = 0
        for k in start...end {
            let c = k < end ? b[k] : 32
            if c >= 48 && c <= 57, digits < 9 {
                v = v * 10 + Int32(c - 48)
                digits += 1
            } else {
                if digits > 0 { out.append(v) }
                v = 0
                digits = 0
            }
        }
        return out
    }

    static let nsPID = Array("NSpid:".utf8)
    static let pPID = Array("PPid:".utf8)

    /// The caller's run cgroup leaf ("run-3"), or the leaf of its first
    /// hierarchy (the harness's).
    static func cgroupLeaf(_ hostPID: Int32) -> String? {
        guard let text = readSmallFileBytes("/proc/\(hostPID)/cgroup", limit: 4096) else { return nil }
        var first: String? = nil
        for line in text.split(separator: UInt8(ascii: "\n")) {
            guard let slash = line.lastIndex(of: UInt8(ascii: "/")) else { continue }
            let leaf = line[(slash + 1)...]
            if leaf.starts(with: Self.runPrefix) { return String(decoding: leaf, as: UTF8.self) }
            if first == nil { first = String(decoding: leaf, as: UTF8.self) }
        }
        return first
    }

    static let runPrefix = Array("run-".utf8)
}

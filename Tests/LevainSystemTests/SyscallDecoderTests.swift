import Testing
@testable import LevainSystem
#if canImport(Glibc)
import Glibc
#endif

/// The audit layer's readers of a caller's /proc, on this test process
/// itself (the notifier reads a jail's the same way).
@Suite struct SyscallDecoderTests {
    @Test("paths are normalised lexically; clean ones are returned as they are")
    func normalize() {
        let cases = [
            ("/workspace/a", "/workspace/a"), ("/", "/"), ("/workspace//a", "/workspace/a"), ("/workspace/./a", "/workspace/a"),
            ("/workspace/d/../a", "/workspace/a"), ("/../../etc", "/etc"), ("/workspace/a/", "/workspace/a"),
            ("/workspace/.hidden", "/workspace/.hidden"), ("/workspace/..x", "/workspace/..x"), ("/a/..", "/"),
        ]
        for (p, want) in cases { #expect(SyscallDecoder.normalize(p) == want, "\(p)") }
    }

    @Test("identity: this process's pid, its depth in pid namespaces, its parent")
    func identity() {
        let me = SyscallDecoder.identity(getpid())
        #expect(me.pid != nil && me.nsDepth >= 1)
        if me.nsDepth == 1 { #expect(me.pid == getpid()) }
        #expect(me.ppid == getppid())
        #expect(SyscallDecoder.identity(-5).pid == nil)  // no such process: nothing invented
    }

    @Test("arguments read from memory: a string, argv, a sockaddr; bounds hold")
    func memory() throws {
        let decoder = try #require(SyscallDecoder(pid: UInt32(getpid()), arch: 0xC000_003E, nr: 59))
        defer { decoder.close() }
        let text = "/workspace/ünï"
        try text.withCString { p in
            let (s, cut) = decoder.string(at: UInt64(UInt(bitPattern: p)))
            #expect(s == text && !cut)
        }
        let long = String(repeating: "x", count: 10_000)
        try long.withCString { p in
            let (s, cut) = decoder.string(at: UInt64(UInt(bitPattern: p)))
            #expect(s.utf8.count == SyscallDecoder.maxString && cut)
        }
        #expect(decoder.string(at: 0) == ("", true))
        // argv: a NULL-terminated array of pointers.
        let args: [UnsafeMutablePointer<CChar>?] = ["cat", "a b", ""].map { (s: String) in strdup(s) } + [nil]
        defer { args.forEach { free($0) } }
        var truncated = false
        args.withUnsafeBufferPointer { b in
            let got = decoder.strings(at: UInt64(UInt(bitPattern: b.baseAddress!)), truncated: &truncated)
            #expect(got == ["cat", "a b", ""] && !truncated)
        }
        // sockaddr_in 127.0.0.1:8080.
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(8080).bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var call = AuditedCall(session: "s", microseconds: 0, syscall: "connect", hostPID: 1)
        withUnsafePointer(to: &sin) { p in
            #expect(decoder.sockaddr(at: UInt64(UInt(bitPattern: p)), length: UInt64(MemoryLayout<sockaddr_in>.size), into: &call) == "127.0.0.1:8080")
            #expect(call.port == 8080 && call.ipv4 == 0x7f00_0001)
            #expect(decoder.sockaddr(at: UInt64(UInt(bitPattern: p)), length: 4096, into: &call) == nil)  // a length no sockaddr has
        }
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sun.sun_path) { b in for (i, c) in "/run/x.sock".utf8.enumerated() { b[i] = c } }
        withUnsafePointer(to: &sun) { p in
            #expect(decoder.sockaddr(at: UInt64(UInt(bitPattern: p)), length: 2 + 12, into: &call) == "unix:/run/x.sock")
        }
    }

    @Test("the run cgroup leaf is found in /proc/PID/cgroup")
    func cgroupLeaf() {
        // This process is in no run cgroup: the leaf of its first hierarchy.
        #expect(SyscallDecoder.cgroupLeaf(getpid()) != nil)
        #expect(SyscallDecoder.cgroupLeaf(-5) == nil)
    }

    @Test("ignore_paths cover directories, not string prefixes")
    func ignores() {
        let w = AuditWatch(session: "s", names: [:], ignorePaths: ["/tmp", "/dev"], record: [])
        #expect(w.ignores(["/tmp/x"]) && w.ignores(["/tmp"]) && w.ignores(["/dev/null", "/tmp/y"]))
        #expect(!w.ignores(["/tmpx"]) && !w.ignores(["/tmp/x", "/workspace/y"]) && !w.ignores([]))
    }
}

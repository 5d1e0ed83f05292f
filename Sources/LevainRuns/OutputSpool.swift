#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Synchronization

/// One output stream of a run (stdout or stderr), kept in a file under the
/// state directory. The harness's DATA is appended as it arrives and its
/// credit returned once the bytes are in the page cache, so a run never
/// waits for a slow API client and the supervisor holds no more than one
/// window per stream in memory. Readers follow the file from any offset
/// (resumable) until the stream ends.
public final class OutputSpool: Sendable {
    struct State {
        var fd: Int32 = -1
        var length: UInt64 = 0
        var finished = false
        var truncated = false
        /// Bytes that arrived but could not be written (a full disk): the
        /// file ends where the first failed write began, and nothing after
        /// it is written (a gap would shift every later offset).
        var lostBytes: UInt64 = 0
        var writeError: Int32 = 0
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
    }

    struct Waiter {
        var offset: UInt64
        /// Woken when `length >= offset + threshold` (or at the end).
        var threshold: UInt64
        var continuation: CheckedContinuation<Void, Never>
    }

    public let path: String
    let limit: UInt64
    private let state = Mutex(State())

    /// The file is created when the first byte arrives: a run that prints
    /// nothing costs no file.
    public init(path: String, limit: UInt64) {
        self.path = path
        self.limit = limit
    }

    /// Appends what fits under the limit; the rest is dropped and the
    /// stream marked truncated. Returns false when the file cannot be written.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let waiters: [CheckedContinuation<Void, Never>]
        let ok: Bool = state.withLock { s in
            guard !s.finished else { return true }
            var n = bytes.count
            if s.length + UInt64(n) > limit {
                n = Int(limit - min(limit, s.length))
                s.truncated = true
            }
            guard n > 0 else { return true }
            if s.writeError != 0 {
                s.lostBytes += UInt64(n)
                s.truncated = true
                return false
            }
            if s.fd < 0 {
                s.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
                if s.fd < 0 && errno == ENOENT {
                    // The run's directory (and `runs/`) on the first output.
                    OutputSpool.makeParents(of: path)
                    s.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
                }
                if s.fd < 0 {
                    s.writeError = errno
                    s.lostBytes += UInt64(n)
                    s.truncated = true
                    return false
                }
            }
            var off = 0
            while off < n {
                let w = write(s.fd, bytes.baseAddress! + off, n - off)
                if w < 0 {
                    if errno == EINTR { continue }
                    s.writeError = errno
                    s.length += UInt64(off)
                    s.lostBytes += UInt64(n - off)
                    s.truncated = true
                    return false
                }
                off += w
            }
            s.length += UInt64(n)
            return true
        }
        waiters = state.withLock { s in
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, w) in s.waiters where s.length >= w.offset + w.threshold {
                ready.append(w.continuation)
                s.waiters[id] = nil
            }
            return ready
        }
        for w in waiters { w.resume() }
        return ok
    }

    public static func makeParents(of path: String) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let dir = String(path[..<slash])
        if mkdir(dir, 0o700) != 0 && errno == ENOENT, let up = dir.lastIndex(of: "/") {
            _ = mkdir(String(dir[..<up]), 0o700)
            _ = mkdir(dir, 0o700)
        }
    }

    /// For a run of an earlier supervisor: the file as it is, finished.
    public func adoptExisting() {
        var st = stat()
        let size: UInt64 = stat(path, &st) == 0 ? UInt64(st.st_size) : 0
        state.withLock { s in
            s.length = size
            s.finished = true
        }
    }

    /// The stream ended (an empty DATA, or the run ended).
    /// Ends the stream: readers following it stop at its end. `cut`: it
    /// had not ended by itself (the run's end did not wait longer for it),
    /// so what it holds may not be all, and it is marked truncated.
    public func finish(cut: Bool = false) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            if cut && !s.finished { s.truncated = true }
            s.finished = true
            if s.fd >= 0 {
                close(s.fd)
                s.fd = -1
            }
            let w = s.waiters.values.map(\.continuation)
            s.waiters = [:]
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Wakes every `wait(beyond:)` now, whatever the stream holds (the
    /// followers look again: at shutdown, they stop).
    public func wakeWaiters() {
        let waiters = state.withLock { s in
            let w = s.waiters.values.map(\.continuation)
            s.waiters = [:]
            return w
        }
        for w in waiters { w.resume() }
    }

    public var length: UInt64 { state.withLock { $0.length } }
    public var isFinished: Bool { state.withLock { $0.finished } }
    public var isTruncated: Bool { state.withLock { $0.truncated } }
    /// Bytes dropped because the file could not be written, and why.
    public var loss: (bytes: UInt64, errno: Int32)? {
        state.withLock { $0.writeError == 0 ? nil : ($0.lostBytes, $0.writeError) }
    }

    /// Waits until there is data beyond `offset` or the stream ended. With
    /// `batch` > 1, until `batch` bytes are there, or `maxDelay` seconds
    /// passed with at least one: a follower of bulk output wakes once per
    /// batch instead of once per frame, and small output still flows.
    public func wait(beyond offset: UInt64, batch: UInt64 = 1, maxDelay: Double = 0.005) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let id: Int? = state.withLock { s in
                if s.length >= offset + max(1, batch) || s.finished { return nil }
                let id = s.nextWaiter
                s.nextWaiter += 1
                s.waiters[id] = Waiter(offset: offset, threshold: max(1, batch), continuation: c)
                return id
            }
            guard let id else { c.resume(); return }
            guard batch > 1 else { return }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(maxDelay * 1e9))
                let ready: CheckedContinuation<Void, Never>? = self.state.withLock { s in
                    guard let w = s.waiters[id] else { return nil }
                    if s.length > w.offset {
                        s.waiters[id] = nil
                        return w.continuation
                    }
                    // Nothing yet: the next byte wakes it.
                    s.waiters[id]?.threshold = 1
                    return nil
                }
                ready?.resume()
            }
        }
    }

    /// A reader's own descriptor of the file, opened once.
    public final class Reader: @unchecked Sendable {
        let spool: OutputSpool
        private var fd: Int32 = -1

        init(_ spool: OutputSpool) { self.spool = spool }

        /// Up to `max` bytes from `offset` into a ByteBuffer; empty at the current end.
        public func read(from offset: UInt64, max: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
            let available = spool.length
            guard offset < available else { return allocator.buffer(capacity: 0) }
            if fd < 0 {
                fd = open(spool.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                if fd < 0 { return allocator.buffer(capacity: 0) }
            }
            let n = Int(min(UInt64(max), available - offset))
            var buffer = allocator.buffer(capacity: n)
            let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { raw in
                Swift.max(0, pread(fd, raw.baseAddress, n, off_t(offset)))
            }
            if got == 0 { buffer.clear() }
            return buffer
        }

        deinit { if fd >= 0 { close(fd) } }
    }

    public func reader() -> Reader { Reader(self) }

    /// Reads up to `max` bytes from `offset` (fewer at the current end).
    public func read(from offset: UInt64, max: Int) -> [UInt8] {
        let available = state.withLock { $0.length }
        guard offset < available else { return [] }
        let n = Int(min(UInt64(max), available - offset))
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: n)
        let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(offset)) }
        return got > 0 ? Array(buf[0..<got]) : []
    }
}

import LevainAPI
import LevainProtocol
import Synchronization

/// Reading and writing a session's workspace in memory, through its
/// harness (openat2 beneath the workspace, as the jail's user): what the
/// built-in file tools use. Bounded by `maxBytes` both ways.
extension Supervisor {
    /// The file's content; a file above `maxBytes` is refused, or with
    /// `truncate` its first `maxBytes` bytes are read (never more).
    public func readWorkspace(_ session: String, _ path: String, maxBytes: UInt64, truncate: Bool) async throws(SupervisorError) -> [UInt8] {
        let host = try await host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        let buffer = Mutex<[UInt8]>([])
        let done = AsyncStream<Void>.makeStream()
        connection.receive(stream: stream, sink: { bytes in
            buffer.withLock { b in if UInt64(b.count) < maxBytes { b.append(contentsOf: bytes.prefix(Int(maxBytes) - b.count)) } }
        }, end: { done.continuation.finish() })
        let r = try await host.fileRequest(.fileRead(FileRead(path: path, stream: stream, maxBytes: maxBytes, truncate: truncate)))
        guard r.ok else {
            done.continuation.finish()
            throw APIServer.fileError(r)
        }
        for await _ in done.stream {}
        return buffer.withLock { $0 }
    }

    public func writeWorkspace(_ session: String, _ path: String, _ bytes: [UInt8], mode: UInt32) async throws(SupervisorError) {
        let host = try await host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        let length = UInt64(bytes.count)
        let response = connection.start(.fileWrite(FileWrite(path: path, stream: stream, maxBytes: length, mode: mode, size: length)))
        do {
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + 256 << 10)
                try await connection.send(Array(bytes[offset..<end]), on: stream)
                offset = end
            }
            try await connection.end(stream: stream)
        } catch {
            throw SupervisorError(.unavailable, "the session's harness: \(error)", cause: error)
        }
        let r: LevainProtocol.Response
        do { r = try await response.get() } catch { throw SupervisorError(.unavailable, "the session's harness: \(error)", cause: error) }
        guard r.ok else { throw APIServer.fileError(r) }
    }

    public func statWorkspace(_ session: String, _ path: String) async throws(SupervisorError) -> FileInfo {
        let host = try await host(ready: session)
        let r = try await host.fileRequest(.fileStat(FileStat(path: path)))
        guard r.ok, let info = r.stat else { throw APIServer.fileError(r) }
        return info
    }

    public func listWorkspace(_ session: String, _ path: String) async throws(SupervisorError) -> [DirEntry] {
        let host = try await host(ready: session)
        let r = try await host.fileRequest(.fileList(FileList(path: path)))
        guard r.ok else { throw APIServer.fileError(r) }
        return r.entries ?? []
    }
}

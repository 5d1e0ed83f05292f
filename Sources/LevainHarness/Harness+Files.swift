#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainClock
import LevainProtocol

/// The workspace's file operations (file.read, file.write, file.list,
/// file.stat, file.delete): beneath the workspace only (WorkspaceFiles).
extension Harness {
    // MARK: files

    func pumpFileReads() {
        for (stream, var job) in reads {
            guard let credit = state.credit(forOutbound: stream), credit > 0 else { continue }
            // Never past the size announced (a truncated read stops there).
            let want = min(UInt64(min(Int(credit), maxChunk)), max(1, job.size - job.sent))
            var buf = [UInt8](repeating: 0, count: Int(want))
            let n = buf.withUnsafeMutableBytes { read(job.fd, $0.baseAddress, $0.count) }
            if n > 0 && job.sent + UInt64(n) <= job.size {
                job.sent += UInt64(n)
                reads[stream] = job
                send(.data(stream: stream, bytes: Array(buf[0..<n])))
                if job.sent < job.size { continue }
            } else if n < 0 && errno == EINTR {
                continue
            }
            // Done (or the file shrank, grew past its size, or failed).
            close(job.fd)
            reads[stream] = nil
            send(.data(stream: stream, bytes: []))
            send(.response(Response(id: job.requestID, ok: true, size: job.sent)))
        }
    }

    func writeFileData(_ stream: StreamID, _ bytes: [UInt8]) {
        guard var job = writes[stream] else { return }
        if job.failed == nil {
            if job.pending.size + UInt64(bytes.count) > job.maxBytes {
                job.failed = WorkspaceFiles.Failure(code: "EFBIG", message: "\(job.pending.path): more than \(job.maxBytes) bytes")
            } else {
                let pending = job.pending
                let result: Result<Void, WorkspaceFiles.Failure> = bytes.withUnsafeBytes { raw in
                    do throws(WorkspaceFiles.Failure) {
                        try pending.write(raw)
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
                if case .failure(let e) = result { job.failed = e }
            }
        }
        writes[stream] = job
        if let w = state.consumed(stream: stream, bytes: bytes.count) { send(w) }
    }

    func finishFileWrite(_ stream: StreamID) {
        guard var job = writes.removeValue(forKey: stream) else { return }
        if job.failed == nil, let size = job.size, job.pending.size != size {
            job.failed = WorkspaceFiles.Failure(code: "EIO", message: "\(job.pending.path): \(job.pending.size) of \(size) bytes arrived; nothing was written")
        }
        if let failure = job.failed {
            job.pending.abort()
            send(.response(.failure(id: job.requestID, code: failure.code, message: failure.message)))
            return
        }
        do {
            try job.pending.commit()
            send(.response(Response(id: job.requestID, ok: true, size: job.pending.size)))
        } catch {
            job.pending.abort()
            send(.response(.failure(id: job.requestID, code: error.code, message: error.message)))
        }
    }

    // MARK: file requests

    func handleFile(_ request: Request) {
        switch request.operation {
        case .runStart, .runSignal, .runResize:
            preconditionFailure("not a file operation")
        case .fileRead(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            do {
                let (fd, size) = try files.openForReading(path, maxBytes: op.maxBytes, truncate: op.truncate)
                reads[op.stream] = FileReadJob(requestID: request.id, fd: fd, stream: op.stream, size: size)
                pumpFileReads()
            } catch {
                send(.data(stream: op.stream, bytes: []))
                send(.response(.failure(id: request.id, code: error.code, message: error.message)))
            }
        case .fileWrite(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            do {
                let pending = try files.beginWrite(path, mode: op.mode == 0 ? 0o644 : op.mode)
                writes[op.stream] = FileWriteJob(requestID: request.id, pending: pending, maxBytes: op.size ?? op.maxBytes, size: op.size)
            } catch {
                // Its data will be ignored; answer now.
                state.abandonInbound(stream: op.stream)
                send(.response(.failure(id: request.id, code: error.code, message: error.message)))
            }
        case .fileList(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            answer(request.id) { () throws(WorkspaceFiles.Failure) in
                let entries = try files.list(path).map {
                    DirEntry(name: $0.name, type: FileKind(rawValue: $0.type) ?? .other, size: $0.size, mode: $0.mode, mtime: $0.mtime)
                }
                return Response(id: request.id, ok: true, entries: entries)
            }
        case .fileStat(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            answer(request.id) { () throws(WorkspaceFiles.Failure) in
                let e = try files.stat(path)
                return Response(id: request.id, ok: true,
                                stat: FileInfo(type: FileKind(rawValue: e.type) ?? .other, size: e.size, mode: e.mode, mtime: e.mtime))
            }
        case .fileDelete(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            answer(request.id) { () throws(WorkspaceFiles.Failure) in
                try files.delete(path, recursive: op.recursive)
                return .success(id: request.id)
            }
        case .fileMkdir(let op):
            guard let (files, path) = locate(op.path, request.id) else { return }
            answer(request.id) { () throws(WorkspaceFiles.Failure) in
                try files.mkdir(path, parents: op.parents, mode: op.mode)
                return .success(id: request.id)
            }
        case .fileRename(let op):
            guard let (files, path) = locate(op.path, request.id), let (toFiles, to) = locate(op.to, request.id) else { return }
            answer(request.id) { () throws(WorkspaceFiles.Failure) in
                guard files.root == toFiles.root else {
                    throw WorkspaceFiles.Failure(code: "EXDEV", message: "\(op.path) -> \(op.to): not on one file system")
                }
                try files.rename(path, to: to)
                return .success(id: request.id)
            }
        }
    }

    /// Sends what `body` answers, or its failure.
    func answer(_ id: UInt64, _ body: () throws(WorkspaceFiles.Failure) -> Response) {
        do {
            send(.response(try body()))
        } catch {
            send(.response(.failure(id: id, code: error.code, message: error.message)))
        }
    }

    func noWorkspace(_ id: UInt64) {
        send(.response(.failure(id: id, code: "ENOENT", message: "this session has no /workspace")))
    }

    /// The root a file operation's path is beneath and the path relative to
    /// it: "/tmp" and "/tmp/..." the jail's /tmp, the rest /workspace. Nil
    /// (answered with ENOENT) when the jail has no such directory.
    func locate(_ path: String, _ id: UInt64) -> (WorkspaceFiles, String)? {
        if FilePaths.isTmp(path) {
            guard let tmpFiles else {
                send(.response(.failure(id: id, code: "ENOENT", message: "this jail has no /tmp")))
                return nil
            }
            let rest = path.dropFirst(5)
            return (tmpFiles, rest.isEmpty ? "." : String(rest))
        }
        guard let files else { noWorkspace(id); return nil }
        return (files, path)
    }

    func fatal(_ message: String) -> Never {
        let line = "levain-harness: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(70)
    }
}

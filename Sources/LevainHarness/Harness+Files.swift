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

    func fatal(_ message: String) -> Never {
        let line = "levain-harness: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(70)
    }
}

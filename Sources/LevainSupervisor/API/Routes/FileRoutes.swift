#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainJSON
import LevainProtocol
import LevainRuns
import LevainSessionLog
import NIOCore

extension APIServer {
    /// Files in a session's workspace.
    func addFileRoutes(_ router: Router<BasicRequestContext>, _ s: some FilesBackend) {
        let api = self
        router.get("/v1/sessions/:id/files") { request, context in
            await api.respond {
                let path = request.uri.queryParameters["path"].map(String.init) ?? "."
                let r = try await api.fileRequest(try api.param(context, "id"), .fileList(FileList(path: try WorkspacePath.jailPath(path, allowRoot: true))), s)
                return .json(.ok, ["path": .string(path), "entries": .array((r.entries ?? []).map(APIServer.json))])
            }
        }
        // The same operations with the path in the query, which may also be
        // absolute: under /workspace, or under /tmp.
        router.get("/v1/sessions/:id/stat") { request, context in
            await api.respond {
                let path = try WorkspacePath.jailPath(try api.queryPath(request), allowRoot: true)
                return try await api.stat(try api.param(context, "id"), path, s)
            }
        }
        router.get("/v1/sessions/:id/file") { request, context in
            await api.respond {
                try await api.readFile(try api.param(context, "id"), try WorkspacePath.jailPath(try api.queryPath(request)), s)
            }
        }
        router.put("/v1/sessions/:id/file") { request, context in
            await api.respond {
                let path = try WorkspacePath.jailPath(try api.queryPath(request))
                let mode = try api.intQuery(request, "mode", max: 0o7777).map { UInt32($0) } ?? 0o644
                return try await api.writeFile(try api.param(context, "id"), path, request: request, mode: mode, s)
            }
        }
        router.delete("/v1/sessions/:id/file") { request, context in
            await api.respond {
                try await api.delete(try api.param(context, "id"), try WorkspacePath.jailPath(try api.queryPath(request)), request: request, s)
            }
        }
        router.get("/v1/sessions/:id/stat/**") { _, context in
            await api.respond {
                let path = try WorkspacePath.check(APIServer.workspacePath(context), allowRoot: true)
                return try await api.stat(try api.param(context, "id"), path, s)
            }
        }
        router.get("/v1/sessions/:id/files/**") { _, context in
            await api.respond {
                let path = try WorkspacePath.check(APIServer.workspacePath(context))
                return try await api.readFile(try api.param(context, "id"), path, s)
            }
        }
        router.put("/v1/sessions/:id/files/**") { request, context in
            await api.respond {
                let path = try WorkspacePath.check(APIServer.workspacePath(context))
                let mode = try api.intQuery(request, "mode", max: 0o7777).map { UInt32($0) } ?? 0o644
                return try await api.writeFile(try api.param(context, "id"), path, request: request, mode: mode, s)
            }
        }
        router.delete("/v1/sessions/:id/files/**") { request, context in
            await api.respond {
                try await api.delete(try api.param(context, "id"), try WorkspacePath.check(APIServer.workspacePath(context)), request: request, s)
            }
        }
        router.post("/v1/sessions/:id/mkdir") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let r = try MkdirRequest(json: try await api.jsonBody(request))
                _ = try await api.fileRequest(id, .fileMkdir(FileMkdir(path: r.path, parents: r.parents, mode: r.mode)), s)
                await s.recordFileEvent(session: id, type: EventType.directoryMade, payload: ["path": .string(r.path)])
                return .json(.created, ["path": .string(r.path)])
            }
        }
        router.post("/v1/sessions/:id/rename") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let r = try RenameRequest(json: try await api.jsonBody(request))
                _ = try await api.fileRequest(id, .fileRename(FileRename(path: r.path, to: r.to)), s)
                await s.recordFileEvent(session: id, type: EventType.fileRenamed, payload: ["path": .string(r.path), "to": .string(r.to)])
                return .json(.ok, ["path": .string(r.to), "from": .string(r.path)])
            }
        }
    }

    /// The `path` query parameter of the query-path routes (400 when missing).
    func queryPath(_ request: Request) throws -> String {
        guard let path = request.uri.queryParameters["path"].map(String.init), !path.isEmpty else {
            throw SupervisorError(.invalid, "the query parameter path is missing: ?path=/tmp/x or ?path=src/app.py (relative to /workspace)", field: "path")
        }
        return path
    }

    func stat(_ session: String, _ path: String, _ s: some FilesBackend) async throws -> Response {
        let r = try await fileRequest(session, .fileStat(FileStat(path: path)), s)
        guard let st = r.stat else { throw SupervisorError(.internalError, "the harness sent no stat") }
        var o = APIServer.json(DirEntry(name: path, type: st.type, size: st.size, mode: st.mode, mtime: st.mtime)).objectValue ?? [:]
        o["path"] = .string(path)
        return .json(.ok, .object(o))
    }

    func delete(_ session: String, _ path: String, request: Request, _ s: some FilesBackend) async throws -> Response {
        let recursive = ["true", "1"].contains(request.uri.queryParameters["recursive"] ?? "")
        _ = try await fileRequest(session, .fileDelete(FileDelete(path: path, recursive: recursive)), s)
        await s.recordFileEvent(session: session, type: EventType.fileDeleted, payload: ["path": .string(path)])
        return Response(status: .noContent)
    }

    /// The workspace path of a file route: the catch-all's segments,
    /// percent-decoded (a file named "a b.txt" is "a%20b.txt" in the URL).
    static func workspacePath(_ context: BasicRequestContext) throws -> String {
        var parts: [String] = []
        for segment in context.parameters.getCatchAll() {
            guard let decoded = percentDecode(String(segment)) else {
                throw SupervisorError(.invalid, "the path segment \(segment) has a bad percent escape or is not UTF-8", field: "path")
            }
            parts.append(decoded)
        }
        return parts.joined(separator: "/")
    }

    static func percentDecode(_ s: String) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            it = it.dropFirst(2)
            bytes.append(v)
        }
        guard !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    func fileRequest(_ session: String, _ operation: LevainProtocol.Operation, _ s: some FilesBackend) async throws -> LevainProtocol.Response {
        let host = try await s.host(ready: session)
        let r = try await host.fileRequest(operation)
        guard r.ok else { throw Self.fileError(r) }
        return r
    }

    static func fileError(_ r: LevainProtocol.Response) -> SupervisorError {
        let code = r.error?.code ?? "EIO"
        let message = r.error?.message ?? "failed"
        switch code {
        case "ENOENT", "ENOTDIR": return SupervisorError(.notFound, message, field: "path", errno: code)
        case "EXDEV": return SupervisorError(.invalid, "\(message) (the path leaves the workspace)", field: "path", errno: code)
        case "ELOOP": return SupervisorError(.invalid, "\(message) (a symlink: it leads out of the workspace, or it is where the file would go)", field: "path", errno: code)
        case "EFBIG": return SupervisorError(.tooLarge, message, field: "body", errno: code)
        case "EISDIR", "ENOTEMPTY", "EEXIST": return SupervisorError(.conflict, message, field: "path", errno: code)
        case "EACCES", "EPERM", "EROFS": return SupervisorError(.conflict, message, field: "path", errno: code)
        default: return SupervisorError(.invalid, "\(code): \(message)", field: "path", errno: code)
        }
    }

    func readFile(_ session: String, _ path: String, _ s: some FilesBackend) async throws -> Response {
        let host = try await s.host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        // Through a spool file: the harness is never held by a slow client.
        var name = [UInt8](repeating: 0, count: 6)
        _ = name.withUnsafeMutableBytes { lv_random_fill($0) }
        let tmp = config.stateDirectory + "/tmp"
        _ = mkdir(tmp, 0o700)
        let spool = OutputSpool(path: tmp + "/read-" + name.map { String($0, radix: 16) }.joined(), limit: config.maxFileBytes)
        connection.receive(stream: stream, sink: { bytes in _ = bytes.withUnsafeBytes { spool.append($0) } }, end: { spool.finish() })
        let r = try await host.fileRequest(.fileRead(FileRead(path: path, stream: stream, maxBytes: config.maxFileBytes)))
        guard r.ok else {
            unlink(spool.path)
            throw Self.fileError(r)
        }
        await spool.wait(beyond: UInt64.max - 1)
        let size = spool.length
        let path = spool.path
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentLength: String(size)],
                        body: ResponseBody(contentLength: Int(size)) { writer in
                            defer { unlink(path) }
                            var offset: UInt64 = 0
                            while offset < size {
                                let chunk = spool.read(from: offset, max: 256 << 10)
                                if chunk.isEmpty { break }
                                offset += UInt64(chunk.count)
                                try await writer.write(ByteBuffer(bytes: chunk))
                            }
                            try await writer.finish(nil)
                        })
    }

    func writeFile(_ session: String, _ path: String, request: Request, mode: UInt32, _ s: some FilesBackend) async throws -> Response {
        guard let lengthText = request.headers[.contentLength], let length = UInt64(lengthText) else {
            throw SupervisorError(.invalid, "a file upload needs a Content-Length header", field: "Content-Length")
        }
        guard length <= config.maxFileBytes else {
            throw SupervisorError(.tooLarge, "\(length) bytes is more than the \(config.maxFileBytes) bytes a file may have", field: "body")
        }
        let host = try await s.host(ready: session)
        guard let connection = await host.harnessConnection else { throw SupervisorError(.unavailable, "the session's harness is gone") }
        let stream = await host.newStream()
        // The harness renames the file into place only when exactly
        // `length` bytes arrived (file.write's size): a client that stops
        // early, or sends more, leaves nothing.
        // Queued before any of its DATA (one event loop, in order).
        let response = connection.start(.fileWrite(FileWrite(path: path, stream: stream, maxBytes: length, mode: mode, size: length)))
        var sent: UInt64 = 0
        var bodyError: (any Error)? = nil
        do {
            for try await buffer in request.body {
                guard sent + UInt64(buffer.readableBytes) <= length else { sent += UInt64(buffer.readableBytes); break }
                sent += UInt64(buffer.readableBytes)
                try await connection.send(Array(buffer.readableBytesView), on: stream)
            }
        } catch {
            bodyError = error
        }
        try? await connection.end(stream: stream)
        let r: LevainProtocol.Response
        do { r = try await response.get() } catch { throw SupervisorError(.unavailable, "the session's harness: \(error)", cause: error) }
        guard r.ok, sent == length, bodyError == nil else {
            if !r.ok, sent == length, bodyError == nil { throw Self.fileError(r) }
            throw SupervisorError(.invalid, "the upload stopped at \(sent) of \(length) bytes (Content-Length); nothing was written", field: "body")
        }
        await s.recordFileEvent(session: session, type: EventType.fileWritten, payload: ["path": .string(path), "size": .int(Int64(length))])
        return .json(.created, ["path": .string(path), "size": .int(Int64(r.size ?? length))])
    }

    static func json(_ e: DirEntry) -> JSONValue {
        ["name": .string(e.name), "type": .string(e.type.rawValue), "size": .int(Int64(e.size)),
         "mode": .int(Int64(e.mode)), "mtime": .int(e.mtime)]
    }
}

private func lv_random_fill(_ buf: UnsafeMutableRawBufferPointer) -> Int32 {
    guard let base = buf.baseAddress else { return 0 }
    return lv_random_bytes(base, buf.count)
}

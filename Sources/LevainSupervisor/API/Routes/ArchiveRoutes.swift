#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainJSON
import LevainProtocol
import LevainRuns
import LevainSessionLog
import NIOCore

extension APIServer {
    /// A directory of the workspace (or /tmp) as a tar archive, out and in.
    /// Each is a run of GNU tar inside the jail as the jail user, so it is in
    /// the log as a run and can reach nothing the jail's own processes could
    /// not; the supervisor never reads or writes the workspace itself.
    func addArchiveRoutes(_ router: Router<BasicRequestContext>, _ s: some RunsBackend & FilesBackend) {
        let api = self
        router.get("/v1/sessions/:id/archive") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                let root = try await api.archiveRoot(id, request, s, create: false)
                let excludes = try Self.archiveExcludes(request)
                // An import's staging directory (if one is under way) is not
                // part of the workspace.
                let skip = excludes.map { "--exclude=./\($0)" } + ["--exclude=./.levain-import.*"]
                var spec = RunSpec(argv: ["tar", "-C", root.absolute, "--numeric-owner"] + skip + ["-cf", "-", "."])
                spec.cwd = "/"
                let (record, _) = try await s.submitRun(session: id, spec, arrival: nil, durability: .durable)
                let state = try await s.runState(record.id)
                let done = await state.wait(timeout: nil)
                guard done.status == .succeeded else { throw Self.archiveFailure(done, state, importing: false, "exporting \(root.absolute)") }
                guard !state.stdout.isTruncated, state.stdout.loss == nil else {
                    throw SupervisorError(.tooLarge, "the archive of \(root.absolute) is larger than the supervisor keeps of a run's output (limits.max_output, \(api.config.maxOutputBytes) bytes); exclude more, or export a directory beneath it", field: "path")
                }
                return Self.spoolResponse(state.stdout, run: record.id)
            }
        }
        router.put("/v1/sessions/:id/archive") { request, context in
            await api.respond {
                let id = try api.param(context, "id")
                // Refused before anything is made.
                if let declared = request.headers[.contentLength].flatMap({ UInt64($0) }), declared > api.config.maxOutputBytes {
                    throw SupervisorError(.tooLarge, "\(declared) bytes is more than an archive may have (limits.max_output, \(api.config.maxOutputBytes) bytes)", field: "body")
                }
                let root = try await api.archiveRoot(id, request, s, create: true)
                var spec = RunSpec(argv: ["sh", "-c", Self.importScript, "levain-import", root.absolute])
                spec.cwd = "/"
                spec.stdinStream = true
                let (record, _) = try await s.submitRun(session: id, spec, arrival: nil, durability: .durable)
                let state = try await s.runState(record.id)
                guard let sink = await state.stdinSink() else {
                    let done = await state.wait(timeout: nil)
                    throw Self.archiveFailure(done, state, importing: true, "importing into \(root.absolute)")
                }
                let received = try await api.feed(request.body, to: sink, run: record.id, s)
                let done = await state.wait(timeout: nil)
                guard done.status == .succeeded else {
                    // tar's complaint about the archive, or the jail's
                    // (no space, a file where the archive has a directory).
                    throw Self.archiveFailure(done, state, importing: true, "importing into \(root.absolute)")
                }
                return .json(.ok, ["path": .string(root.absolute), "bytes": .int(Int64(received)), "run": .string(record.id)])
            }
        }
    }

    /// Unpacks stdin into a fresh directory beside the target, then links
    /// what it holds into place: an archive tar refuses (a member with '..',
    /// a link whose target is missing, a cut archive) or an upload the
    /// supervisor ends with SIGTERM leaves nothing behind. Hard links within
    /// one file system, so nothing is copied twice.
    ///
    /// A staging directory an import killed outright left (SIGKILL, a
    /// cancelled run) is swept by a later import once an hour old; exports
    /// leave them out. chmod first: the archive may have made directories
    /// the jail user cannot write, whose contents rm could not remove.
    static let importScript = """
        set -u
        r=$1
        s=
        clean() { chmod -R u+rwx -- "$1" 2>/dev/null; rm -rf -- "$1"; }
        trap '[ -z "$s" ] || clean "$s"' EXIT
        trap 'exit 143' TERM
        find "$r" -mindepth 1 -maxdepth 1 -name '.levain-import.*' -type d -mmin +60 -exec sh -c 'chmod -R u+rwx -- "$@"; rm -rf -- "$@"' sh {} + 2>/dev/null
        s=$(mktemp -d "$r/.levain-import.XXXXXX") || exit 70
        tar -C "$s" --no-same-owner -xf - || exit
        find "$s" -mindepth 1 -maxdepth 1 -exec cp -al --remove-destination -t "$r" -- {} + || exit 71
        """

    /// Sends the request body to the run's stdin, bounded by
    /// limits.max_output. An upload that breaks off or runs over ends the
    /// run with SIGTERM before its stdin closes, so tar never sees a clean
    /// end of a partial archive and unpacks nothing.
    func feed(_ body: RequestBody, to sink: @Sendable ([UInt8]?) async throws -> Void, run: String, _ s: some RunsBackend) async throws -> UInt64 {
        var total: UInt64 = 0
        var failure: SupervisorError?
        do {
            for try await buffer in body {
                total += UInt64(buffer.readableBytes)
                guard total <= config.maxOutputBytes else {
                    failure = SupervisorError(.tooLarge, "the archive is larger than limits.max_output (\(config.maxOutputBytes) bytes); nothing was unpacked", field: "body")
                    break
                }
                do { try await sink(Array(buffer.readableBytesView)) } catch { break }  // tar stopped reading: its status says why
            }
        } catch {
            failure = SupervisorError(.invalid, "the archive upload broke off after \(total) bytes; nothing was unpacked", field: "body", cause: error)
        }
        if let failure {
            // Never END on this path: tar would take a clean end of what
            // came as the whole archive. A run not yet marked running
            // cannot be signalled; it is cancelled (its cgroup killed).
            do { _ = try await s.signalRun(run, signal: SIGTERM) } catch { _ = try? await s.cancelRun(run) }
            _ = await (try? await s.runState(run))?.wait(timeout: nil)
            throw failure
        }
        try? await sink(nil)
        return total
    }

    struct ArchiveRoot {
        /// As the files API names it: relative to /workspace, or under /tmp.
        var path: String
        var absolute: String
    }

    /// `?path=` (default the workspace): a directory the jail user reaches
    /// beneath /workspace or /tmp, checked by the harness (a symlink leading
    /// out is 400). For an import it is made when missing.
    func archiveRoot(_ session: String, _ request: Request, _ s: some FilesBackend, create: Bool) async throws -> ArchiveRoot {
        let raw = request.uri.queryParameters["path"].map(String.init) ?? "/workspace"
        let path = try WorkspacePath.jailPath(raw.isEmpty ? "/workspace" : raw, allowRoot: true)
        let absolute = path.hasPrefix("/") ? path : path == "." ? "/workspace" : "/workspace/" + path
        if create, path != ".", path != "/tmp" {
            _ = try await fileRequest(session, .fileMkdir(FileMkdir(path: path, parents: true)), s)
        }
        let r = try await fileRequest(session, .fileStat(FileStat(path: path)), s)
        guard r.stat?.type == .dir else {
            throw SupervisorError(.conflict, "\(absolute) is not a directory; an archive is of a directory", field: "path")
        }
        return ArchiveRoot(path: path, absolute: absolute)
    }

    /// `?exclude=` (repeatable): tar patterns relative to the archive's
    /// directory ("node_modules", "build/*.o").
    static func archiveExcludes(_ request: Request) throws -> [String] {
        let all = request.uri.queryParameters.getAll("exclude")
        guard all.count <= 256 else { throw SupervisorError(.invalid, "at most 256 exclude patterns", field: "exclude") }
        return try all.map { (e: String) throws(APIError) -> String in
            var p = Substring(e)
            while p.hasPrefix("./") { p = p.dropFirst(2) }
            guard !p.isEmpty, p.utf8.count <= 4096, !p.utf8.contains(0), !p.hasPrefix("/") else {
                throw SupervisorError(.invalid, "exclude \(e) must be a pattern relative to the archive's directory (node_modules, build/*.o)", field: "exclude")
            }
            return String(p)
        }
    }

    /// What a failed archive run said: tar's own complaint, the first KiB
    /// of it, named with the run (in the log with all of it). Status by
    /// whose fault: the jail's or the supervisor's (503), the run's end
    /// (timed out, cancelled: 409), the archive tar refused (tar's fatal
    /// exit 2 on an import: 400), the directory's contents (409).
    static func archiveFailure(_ done: RunRecord, _ state: RunState, importing: Bool, _ what: String) -> SupervisorError {
        let head = state.stderr.read(from: 0, max: 1024)
        let said = String(decoding: head, as: UTF8.self).split(whereSeparator: { $0 == "\n" }).joined(separator: "; ")
        let how = done.exitCode.map { "exited \($0)" } ?? done.status.rawValue
        let code: APIError.Code
        switch (done.status, done.exitCode) {
        case (.error, _), (.interrupted, _): code = .unavailable
        case (.failed, 2?) where importing: code = .invalid
        default: code = .conflict
        }
        let message = said.isEmpty ? "no message" : said
        return SupervisorError(code, "\(what) failed (run \(done.id) \(how)): \(message)", field: code == .invalid ? "body" : "path")
    }

    /// A finished run's stdout as the answer, with its length.
    static func spoolResponse(_ spool: OutputSpool, run: String) -> Response {
        let size = spool.length
        var headers: HTTPFields = [.contentType: "application/x-tar", .contentLength: String(size)]
        headers[HTTPField.Name("X-Levain-Run")!] = run
        return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: Int(size)) { writer in
            let reader = spool.reader()
            let allocator = ByteBufferAllocator()
            var offset: UInt64 = 0
            while offset < size {
                let chunk = reader.read(from: offset, max: 1 << 20, allocator: allocator)
                if chunk.readableBytes == 0 { break }
                offset += UInt64(chunk.readableBytes)
                try await writer.write(chunk)
            }
            try await writer.finish(nil)
        })
    }
}

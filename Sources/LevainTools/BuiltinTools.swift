#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainAgent
import LevainJSON
import LevainPolicy
import LevainProtocol
import LevainRuns
import LevainSessionLog

/// The built-in sandbox tools. Each runs inside the session's jail: `exec`,
/// `grep` and `glob` as runs of the session (processes of the jail's user,
/// in a cgroup of the session's, under its limits), the file tools through
/// the harness (openat2 beneath the workspace). Paths are
/// workspace-relative.
///
/// What stays in the supervisor is bounded whatever the jail does: a
/// `read_file` holds at most its output cap + 1 bytes of the file (a
/// truncated read: the rest is never sent), an `edit_file` a file of at
/// most `maxEditBytes`, twice, and at most `editsPerSession` of them at
/// once per session; `list_files` one directory (the harness sends at most
/// 10,000 entries); a run's output is read up to the cap from its spool.
public enum BuiltinTools {
    /// The largest file `edit_file` edits (it is held in the supervisor).
    static let maxEditBytes: UInt64 = 8 << 20
    /// `edit_file` calls of one session held in memory at once; the others wait.
    static let editsPerSession = 2
    static let edits = KeyedSemaphore(limit: editsPerSession)
    /// What a `glob` answers at most.
    static let maxGlobMatches = 2_000

    static func schema(_ properties: JSONObject, required: [String]) -> JSONValue {
        ["type": "object", "properties": .object(properties), "required": JSONValue(required), "additionalProperties": false]
    }
    static let path: JSONValue = ["type": "string", "description": "a path relative to the workspace", "minLength": 1]

    public static let definitions: [ToolDefinition] = [
        ToolDefinition(name: "exec", description: "Run a shell command (/bin/sh -c) in the workspace; returns its exit code, stdout and stderr.",
                       inputSchema: schema(["command": ["type": "string", "minLength": 1],
                                            "timeout": ["type": "number", "exclusiveMinimum": 0, "description": "seconds (capped by policy)"]],
                                           required: ["command"])),
        ToolDefinition(name: "read_file", description: "Read a text file of the workspace.",
                       inputSchema: schema(["path": path], required: ["path"])),
        ToolDefinition(name: "write_file", description: "Create or replace a file of the workspace with the given content.",
                       inputSchema: schema(["path": path, "content": ["type": "string"]], required: ["path", "content"])),
        ToolDefinition(name: "edit_file", description: "Replace one unique occurrence of old_string by new_string in a file of the workspace.",
                       inputSchema: schema(["path": path, "old_string": ["type": "string", "minLength": 1], "new_string": ["type": "string"]],
                                           required: ["path", "old_string", "new_string"])),
        ToolDefinition(name: "list_files", description: "List a directory of the workspace (name, type, size).",
                       inputSchema: schema(["path": ["type": "string", "description": "relative to the workspace; \".\" for its root"]], required: [])),
        ToolDefinition(name: "glob", description: "Find workspace files whose path matches a pattern (*, ? and [...] within a name, ** across directories).",
                       inputSchema: schema(["pattern": ["type": "string", "minLength": 1]], required: ["pattern"])),
        ToolDefinition(name: "grep", description: "Search workspace files for lines matching an extended regular expression; returns path:line:text.",
                       inputSchema: schema(["pattern": ["type": "string", "minLength": 1], "path": ["type": "string"],
                                            "include": ["type": "string", "description": "only files whose name matches this glob"]],
                                           required: ["pattern"])),
    ]

    /// A tool call that did not succeed; `status` is what tool.finished says.
    struct Failure: Error {
        enum Status: String { case error, timeout, cancelled }
        var message: String
        var status: Status
        init(_ m: String, _ status: Status = .error) {
            message = m
            self.status = status
        }
    }

    static func checkPath(_ p: String, allowRoot: Bool = false) throws(Failure) -> String {
        do { return try WorkspacePath.check(p, allowRoot: allowRoot) } catch {
            throw Failure(error.message)
        }
    }

    /// Runs a built-in; the text is what the model gets back.
    static func call(_ name: String, _ args: JSONObject, session: String, supervisor: any ToolHost, timeout: Double,
                     maxOutput: UInt64) async throws(Failure) -> String {
        func str(_ k: String) -> String? { args[k]?.stringValue }
        func io<T>(_ body: () async throws(APIError) -> T) async throws(Failure) -> T {
            do { return try await body() } catch { throw Failure(error.message) }
        }
        switch name {
        case "exec":
            let t = min(timeout, args["timeout"]?.doubleValue ?? timeout)
            return try await exec(["/bin/sh", "-c", str("command") ?? ""], session: session, supervisor: supervisor, timeout: t, maxOutput: maxOutput)
        case "read_file":
            let p = try checkPath(str("path") ?? "")
            // One byte past the cap tells whether there is more; the rest
            // of the file is never read.
            let cap = min(maxOutput, 64 << 20)
            let bytes = try await io { () async throws(APIError) in
                try await supervisor.readWorkspace(session, p, maxBytes: cap + 1, truncate: true)
            }
            var text = String(decoding: bytes.prefix(Int(cap)), as: UTF8.self)
            if UInt64(bytes.count) > cap {
                let size = (try? await supervisor.statWorkspace(session, p)).map { "\($0.size)" } ?? "more than \(cap)"
                text += "\n[truncated: \(size) bytes, the first \(cap) shown]"
            }
            return text
        case "write_file":
            let p = try checkPath(str("path") ?? "")
            let content = Array((str("content") ?? "").utf8)
            try await io { () async throws(APIError) in try await supervisor.writeWorkspace(session, p, content) }
            return "wrote \(content.count) bytes to \(p)"
        case "edit_file":
            let p = try checkPath(str("path") ?? "")
            guard await edits.acquire(session) else { throw Failure("cancelled", .cancelled) }
            let result = await edit(p, str("old_string") ?? "", str("new_string") ?? "", session: session, supervisor: supervisor)
            await edits.release(session)
            return try result.get()
        case "list_files":
            let p = try checkPath(str("path") ?? ".", allowRoot: true)
            let entries = try await io { () async throws(APIError) in try await supervisor.listWorkspace(session, p) }
            let lines = entries.sorted { $0.name < $1.name }.map { "\($0.name)\($0.type == .dir ? "/" : "")\t\($0.type.rawValue)\t\($0.size)" }
            return clip(lines.isEmpty ? "(empty)" : lines.joined(separator: "\n"), maxOutput)
        case "glob":
            guard let g = try GlobPattern.compile(str("pattern") ?? "") else { return "(no match)" }
            return try await glob(g, session: session, supervisor: supervisor, timeout: timeout, maxOutput: maxOutput)
        case "grep":
            let p = try checkPath(str("path") ?? ".", allowRoot: true)
            var argv = ["grep", "-rnIE", "--max-count=200"]
            if let inc = str("include") { argv.append("--include=" + inc) }
            argv += ["-e", str("pattern") ?? "", "--", p]
            return try await exec(argv, session: session, supervisor: supervisor, timeout: timeout, maxOutput: maxOutput,
                                  explain: { code in code == 1 ? "(no match)" : nil })
        default:
            throw Failure("no built-in tool \(name)")
        }
    }

    static func clip(_ s: String, _ max: UInt64) -> String {
        let b = Array(s.utf8)
        guard UInt64(b.count) > max else { return s }
        return String(decoding: b.prefix(Int(max)), as: UTF8.self) + "\n[truncated at \(max) bytes of \(b.count)]"
    }

    /// A finished run of a tool: its exit code and the start of its output.
    struct Finished {
        var code: Int32
        var out: [UInt8]
        var err: [UInt8]
        var state: RunState
    }

    /// A run of the session (its cgroup, its limits); at most `maxOutput`
    /// bytes of each stream are read from its spool; cancelled with the
    /// caller.
    static func run(_ argv: [String], env: [String: String] = [:], session: String, supervisor: any ToolHost, timeout: Double,
                    maxOutput: UInt64) async throws(Failure) -> Finished {
        var spec = RunSpec(argv: argv)
        spec.timeout = timeout
        spec.cwd = nil
        spec.env = env
        let runID: String
        let state: RunState
        do {
            runID = try await supervisor.submitRun(session: session, spec).0.id
            state = try await supervisor.runState(runID)
        } catch {
            throw Failure(error.message)
        }
        let record = await withTaskCancellationHandler {
            await state.wait(timeout: nil)
        } onCancel: {
            Task { _ = try? await supervisor.cancelRun(runID) }
        }
        let out = state.stdout.read(from: 0, max: Int(maxOutput))
        let err = state.stderr.read(from: 0, max: Int(maxOutput))
        switch record.status {
        case .timedOut: throw Failure("timed out after \(timeout)s (run \(runID)); output so far:\n\(String(decoding: out, as: UTF8.self))", .timeout)
        case .cancelled: throw Failure("cancelled (run \(runID))", .cancelled)
        case .error: throw Failure("could not run: \(record.error ?? "?") (run \(runID))")
        default: break
        }
        return Finished(code: record.exitCode ?? -1, out: out, err: err, state: state)
    }

    /// A command as a run of the session: its exit code and output, capped.
    static func exec(_ argv: [String], session: String, supervisor: any ToolHost, timeout: Double, maxOutput: UInt64,
                     explain: (Int32) -> String? = { _ in nil }) async throws(Failure) -> String {
        let f = try await run(argv, session: session, supervisor: supervisor, timeout: timeout, maxOutput: maxOutput)
        let (code, out, err, state) = (f.code, f.out, f.err, f.state)
        if let text = explain(code) { return text }
        var s = "exit_code: \(code)\n"
        if !out.isEmpty { s += "stdout:\n" + String(decoding: out, as: UTF8.self) }
        if state.stdout.length > UInt64(out.count) { s += "\n[stdout truncated at \(out.count) of \(state.stdout.length) bytes]" }
        if !err.isEmpty { s += (s.hasSuffix("\n") ? "" : "\n") + "stderr:\n" + String(decoding: err, as: UTF8.self) }
        if state.stderr.length > UInt64(err.count) { s += "\n[stderr truncated at \(err.count) of \(state.stderr.length) bytes]" }
        return s
    }
}

extension BuiltinTools {
    /// The walk and the matching run in the jail: GNU find with the
    /// pattern as a regular expression (GlobPattern), as a run of the
    /// session, stopped after `maxGlobMatches` + 1 paths. The supervisor
    /// reads at most `maxOutput` + 4 KiB of its output and sorts it.
    static func glob(_ g: GlobPattern, session: String, supervisor: any ToolHost, timeout: Double, maxOutput: UInt64) async throws(Failure) -> String {
        var find = "find \"$1\" -mindepth \(g.minDepth)"
        if let d = g.maxDepth { find += " -maxdepth \(d)" }
        find += " -regextype posix-extended -regex \"$2\" ! -name '.levain-write-*' -print0 2>/dev/null | head -z -n \(maxGlobMatches + 1)"
        let f = try await run(["/bin/sh", "-c", find, "glob", g.start, g.regex], env: ["LC_ALL": "C"], session: session,
                              supervisor: supervisor, timeout: timeout, maxOutput: maxOutput + 4096)
        var paths = f.out.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        // A path cut by the read's end is not shown.
        if f.state.stdout.length > UInt64(f.out.count), !paths.isEmpty { paths.removeLast() }
        let more = paths.count > maxGlobMatches
        paths = paths.prefix(maxGlobMatches).map { $0.hasPrefix("./") ? String($0.dropFirst(2)) : $0 }.sorted()
        guard !paths.isEmpty else { return "(no match)" }
        var text = paths.joined(separator: "\n")
        if more { text += "\n[more than \(maxGlobMatches) matches: the first \(maxGlobMatches) found are shown]" }
        return clip(text, maxOutput)
    }

    /// Replaces the one occurrence of `old` in the file (at most
    /// `maxEditBytes`, held twice: read and written).
    static func edit(_ p: String, _ oldString: String, _ newString: String, session: String, supervisor: any ToolHost) async -> Result<String, Failure> {
        let old = Array(oldString.utf8), new = Array(newString.utf8)
        let bytes: [UInt8]
        do { bytes = try await supervisor.readWorkspace(session, p, maxBytes: maxEditBytes) } catch {
            return .failure(Failure(error.message))
        }
        let found = occurrences(of: old, in: bytes, upTo: 2)
        guard found.count == 1 else {
            return .failure(Failure(found.isEmpty ? "old_string does not occur in \(p)" : "old_string occurs more than once in \(p); give more context so it is unique"))
        }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count - old.count + new.count)
        out += bytes[..<found[0]]
        out += new
        out += bytes[(found[0] + old.count)...]
        do { try await supervisor.writeWorkspace(session, p, out) } catch {
            return .failure(Failure(error.message))
        }
        return .success("replaced 1 occurrence in \(p) (\(out.count) bytes now)")
    }

    /// Where `needle` starts in `haystack`, not overlapping, at most
    /// `limit` times (Knuth-Morris-Pratt: linear whatever the bytes).
    static func occurrences(of needle: [UInt8], in haystack: [UInt8], upTo limit: Int) -> [Int] {
        guard !needle.isEmpty, needle.count <= haystack.count, needle.count < Int(Int32.max) else { return [] }
        var fail = [Int32](repeating: 0, count: needle.count)
        var k = 0
        if needle.count > 1 {
            for i in 1..<needle.count {
                while k > 0 && needle[i] != needle[k] { k = Int(fail[k - 1]) }
                if needle[i] == needle[k] { k += 1 }
                fail[i] = Int32(k)
            }
        }
        var found: [Int] = []
        k = 0
        for (i, b) in haystack.enumerated() {
            while k > 0 && b != needle[k] { k = Int(fail[k - 1]) }
            if b == needle[k] { k += 1 }
            if k == needle.count {
                found.append(i - k + 1)
                if found.count >= limit { break }
                k = 0
            }
        }
        return found
    }
}

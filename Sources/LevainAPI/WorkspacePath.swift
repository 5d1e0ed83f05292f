import LevainJSON

/// A path in a session's workspace, as the API and the tools take it:
/// relative, no "..", no NUL, at most 4096 bytes. Checked here before
/// anything reaches the harness (which resolves it beneath the workspace
/// with openat2 whatever it is given).
public enum WorkspacePath {
    /// `path` checked; "" is "."; "." itself only with `allowRoot`.
    public static func check(_ path: String, allowRoot: Bool = false, field: String = "path") throws(APIError) -> String {
        let p = path.isEmpty ? "." : path
        if p == "." && allowRoot { return p }
        guard p != ".", !p.hasPrefix("/"), !p.utf8.contains(0), p.utf8.count <= 4096 else {
            throw APIError(.invalid, "\(field) \(p) must be relative to the workspace", field: field)
        }
        guard !p.split(separator: "/").contains("..") else {
            throw APIError(.invalid, "\(field) \(p) leaves the workspace", field: field)
        }
        return p
    }

    /// A path as the jail sees it, for the routes that take one in a query
    /// or a body: relative (beneath /workspace, checked as `check`), or
    /// absolute under /workspace (made relative: "/workspace" is ".") or
    /// under /tmp (kept: the harness resolves it beneath the jail's /tmp).
    /// Other absolute paths are refused: the files API reaches the two
    /// directories a jail user may write, no more.
    public static func jailPath(_ path: String, allowRoot: Bool = false, field: String = "path") throws(APIError) -> String {
        guard path.hasPrefix("/") else { return try check(path, allowRoot: allowRoot, field: field) }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard !path.utf8.contains(0), path.utf8.count <= 4096,
              !segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw APIError(.invalid, "\(field) \(path) has an empty, '.' or '..' segment", field: field)
        }
        if path == "/workspace" {
            guard allowRoot else { throw APIError(.invalid, "\(field) /workspace is the workspace itself", field: field) }
            return "."
        }
        if path.hasPrefix("/workspace/") { return String(path.dropFirst("/workspace/".count)) }
        if path == "/tmp" || path.hasPrefix("/tmp/") { return path }
        throw APIError(.invalid, "\(field) \(path): the files API reaches /workspace and /tmp (absolute, or relative to /workspace); read other paths with a command (cat)", field: field)
    }

    /// A path given in a JSON body (`mkdir`, `rename`): as `jailPath`, and a
    /// relative one also without empty or `.` segments, the rule URL paths
    /// follow (`jailPath` holds absolute ones to it already).
    public static func checkStrict(_ value: JSONValue?, field: String) throws(APIError) -> String {
        guard let path = value?.stringValue else {
            throw APIError(.invalid, "\(field) must be a path (a string): relative to /workspace, or absolute under /workspace or /tmp", field: field)
        }
        guard !path.isEmpty, path.hasPrefix("/") || !path.split(separator: "/", omittingEmptySubsequences: false)
            .contains(where: { $0.isEmpty || $0 == "." }) else {
            throw APIError(.invalid, "\(field) \"\(path)\" has an empty or '.' segment", field: field)
        }
        return try jailPath(path, field: field)
    }
}

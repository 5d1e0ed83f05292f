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

    /// A path given in a JSON body (`mkdir`, `rename`): as `check`, and
    /// also without empty or `.` segments, the rule URL paths follow.
    public static func checkStrict(_ value: JSONValue?, field: String) throws(APIError) -> String {
        guard let path = value?.stringValue else {
            throw APIError(.invalid, "\(field) must be a path relative to the workspace (a string)", field: field)
        }
        guard !path.isEmpty, !path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." }) else {
            throw APIError(.invalid, "\(field) \"\(path)\" has an empty or '.' segment", field: field)
        }
        return try check(path, field: field)
    }
}

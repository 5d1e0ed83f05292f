/// A path in a session's workspace, as the API and the tools take it:
/// relative, no "..", no NUL, at most 4096 bytes. Checked here before
/// anything reaches the harness (which resolves it beneath the workspace
/// with openat2 whatever it is given).
public enum WorkspacePath {
    /// `path` checked; "" is "."; "." itself only with `allowRoot`.
    public static func check(_ path: String, allowRoot: Bool = false) throws(APIError) -> String {
        let p = path.isEmpty ? "." : path
        if p == "." && allowRoot { return p }
        guard p != ".", !p.hasPrefix("/"), !p.utf8.contains(0), p.utf8.count <= 4096 else {
            throw APIError(.invalid, "path \(p) must be relative to the workspace", field: "path")
        }
        guard !p.split(separator: "/").contains("..") else {
            throw APIError(.invalid, "path \(p) leaves the workspace", field: "path")
        }
        return p
    }
}

import HTTPTypes
import Hummingbird
import LevainAPI

/// Refuses request paths with dot segments or empty segments (raw or
/// percent-encoded) before routing: a workspace path is relative and plain,
/// and the answer names the field instead of a bare 404.
struct PathGuard: RouterMiddleware {
    typealias Context = BasicRequestContext

    static func isClean(_ rawPath: String) -> Bool {
        let path = rawPath.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? rawPath
        let decoded = path.replacingPercentDots()
        let segments = decoded.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        return !segments.contains { $0 == ".." || $0 == "." || $0.isEmpty } || decoded == "/"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.isClean(request.uri.string) else {
            return APIServer.error(SupervisorError(.invalid, "the path \(request.uri.path) has a '..', '.' or empty segment: workspace paths are relative to the workspace and stay inside it", field: "path"))
        }
        do {
            return try await next(request, context)
        } catch let e as HTTPError where e.status == .notFound || e.status == .methodNotAllowed {
            // No such route: a JSON error like every other answer.
            return APIServer.error(SupervisorError(.notFound, "no route \(request.method.rawValue) \(request.uri.path) (see docs/API.md)", field: "path"))
        }
    }
}

extension String {
    /// "%2e" and "%2E" as ".", "%2f"/"%2F" as "/" (what a router would decode).
    func replacingPercentDots() -> String {
        var out = ""
        var it = self.makeIterator()
        var pending: [Character] = []
        while let c = it.next() {
            if c == "%" || !pending.isEmpty {
                pending.append(c)
                if pending.count == 3 {
                    let code = String(pending[1...]).lowercased()
                    if code == "2e" { out.append(".") } else if code == "2f" { out.append("/") } else { out.append(contentsOf: pending) }
                    pending = []
                }
                continue
            }
            out.append(c)
        }
        out.append(contentsOf: pending)
        return out
    }
}

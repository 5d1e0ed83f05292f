#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import LevainAPI
import LevainClock
import LevainSandbox
import LevainSessionLog
import Synchronization

/// `Authorization: Bearer TOKEN` on every request (the TCP listener).
struct BearerAuth: RouterMiddleware {
    typealias Context = BasicRequestContext
    let tokens: TokenStore

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let header = request.headers[.authorization] ?? ""
        let given = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : ""
        let message: String
        switch tokens.check(given) {
        case .valid:
            return try await next(request, context)
        case .missing: message = "missing bearer token (Authorization: Bearer TOKEN)"
        case .expired: message = "the bearer token has expired"
        case .unknown: message = "wrong bearer token"
        }
        var r = APIServer.error(SupervisorError(.unauthorized, message, field: "Authorization"))
        r.headers[.wwwAuthenticate] = "Bearer"
        return r
    }
}

/// The bearer tokens of the TCP listener, from `tcp.token_file`: one token
/// per line (at least 16 characters), optionally `TOKEN not_after=RFC3339`;
/// `#` starts a comment. The file is read again when it changes (checked
/// at most once a second), so tokens can be rotated without a restart.
public final class TokenStore: Sendable {
    public enum Verdict: Equatable, Sendable { case valid, missing, expired, unknown }

    struct Entry: Sendable {
        var token: [UInt8]
        var notAfter: Int64?
    }

    private struct State: Sendable {
        var entries: [Entry] = []
        var mtime: Int64 = -1
        var checkedAt: UInt64 = 0
    }

    let path: String
    private let state = Mutex(State())

    public init(path: String) throws(SupervisorError) {
        self.path = path
        guard reload(force: true), !state.withLock({ $0.entries.isEmpty }) else {
            throw SupervisorError(.invalid, "tcp.token_file \(path) holds no token of at least 16 characters")
        }
    }

    /// Parses a token file's text.
    static func parse(_ text: String) -> [Entry] {
        var out: [Entry] = []
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = words.first, first.utf8.count >= 16 else { continue }
            var entry = Entry(token: Array(first.utf8), notAfter: nil)
            for w in words.dropFirst() where w.hasPrefix("not_after=") {
                entry.notAfter = LogTimestamp(rfc3339: String(w.dropFirst(10)))?.microsecondsSinceEpoch ?? 0
            }
            out.append(entry)
        }
        return out
    }

    @discardableResult
    func reload(force: Bool = false) -> Bool {
        let now = Monotonic.nanos()
        let due = state.withLock { s in force || now &- s.checkedAt > 1_000_000_000 }
        guard due else { return true }
        var st = stat()
        guard stat(path, &st) == 0 else {
            // The file is gone: no token is valid any more (fail closed).
            state.withLock { s in
                s.entries = []
                s.mtime = -1
            }
            return false
        }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let changed = state.withLock { s in
            s.checkedAt = now
            return s.mtime != mtime
        }
        guard changed || force, let text = SupervisorServer.readSmallText(path, limit: 1 << 20) else { return true }
        let entries = Self.parse(text)
        state.withLock { s in
            s.entries = entries
            s.mtime = mtime
        }
        return true
    }

    public func check(_ given: String) -> Verdict {
        guard !given.isEmpty else { return .missing }
        reload()
        let g = Array(given.utf8)
        let entries = state.withLock { $0.entries }
        let now = LogTimestamp.now().microsecondsSinceEpoch
        var verdict = Verdict.unknown
        for e in entries {
            // Constant time over each token's length.
            var diff = UInt8(g.count == e.token.count ? 0 : 1)
            for i in 0..<e.token.count { diff |= e.token[i] ^ (i < g.count ? g[i] : 0) }
            if diff == 0 {
                if let na = e.notAfter, now > na { verdict = .expired } else { return .valid }
            }
        }
        return verdict
    }
}

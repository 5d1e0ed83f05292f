#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainCLI
import LevainJSON
import LevainSessionLog

/// Where `levain sessions`, `runs` and `log` read from: a supervisor
/// (`--connect`) or the session log file in a state directory, opened
/// read-only (no daemon needed; the daemon may be running too: SQLite's WAL
/// lets a reader in beside the writer).
///
/// Both give the API's JSON shapes (APIJSON), so every command prints the
/// same thing either way.
enum LogSource {
    case daemon(APIClient)
    case file(SessionLog)

    /// The daemon when --connect (or LEVAIN_CONNECT) names one, else the
    /// log under `state`.
    static func open(state: String) throws -> LogSource {
        if let client = Connection.client { return .daemon(client) }
        let path = absolutePath(state) + "/log.sqlite"
        do {
            return .file(try SessionLog(path: path, readOnly: true))
        } catch let e where e.code == .logNotFound {
            throw UserError("no session log at \(path): nothing has run with --state \(state) yet (or give --connect ADDRESS for a supervisor elsewhere)")
        } catch {
            throw UserError("\(error)")
        }
    }

    func get(_ path: String) throws -> JSONObject {
        guard case .daemon(let client) = self else { fatalError("get on a file source") }
        let reply = try blocking { try await client.request("GET", path) }
        guard reply.status == 200, let json = reply.json else {
            throw APIFailure(reply)
        }
        return json
    }

    func sessions(tenant: String?, status: String?) throws -> [JSONValue] {
        switch self {
        case .daemon:
            var q: [String] = []
            if let tenant { q.append("tenant=" + percentEncode(tenant)) }
            if let status { q.append("status=" + percentEncode(status)) }
            return try get("/v1/sessions" + (q.isEmpty ? "" : "?" + q.joined(separator: "&")))["sessions"]?.arrayValue ?? []
        case .file(let log):
            let s = try status.map { v -> SessionStatus in
                guard let st = SessionStatus(rawValue: v) else {
                    throw UserError("--status \(v): one of \(SessionStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return st
            }
            return try wrap { try log.sessions(tenant: tenant, status: s).map(APIJSON.session) }
        }
    }

    func session(_ id: String) throws -> JSONValue? {
        switch self {
        case .daemon:
            do { return .object(try get("/v1/sessions/" + percentEncode(id))) } catch let e as APIFailure where e.status == 404 { return nil }
        case .file(let log):
            return try wrap { try log.session(id: id).map(APIJSON.session) }
        }
    }

    func runs(session: String?, status: String?) throws -> [JSONValue] {
        switch self {
        case .daemon:
            var q: [String] = []
            if let session { q.append("session=" + percentEncode(session)) }
            if let status { q.append("status=" + percentEncode(status)) }
            return try get("/v1/runs" + (q.isEmpty ? "" : "?" + q.joined(separator: "&")))["runs"]?.arrayValue ?? []
        case .file(let log):
            let s = try status.map { v -> RunStatus in
                guard let st = RunStatus(rawValue: v) else {
                    throw UserError("--status \(v): one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return st
            }
            return try wrap { try log.runs(session: session, status: s).map(APIJSON.run) }
        }
    }

    func run(_ id: String) throws -> JSONValue? {
        switch self {
        case .daemon:
            do { return .object(try get("/v1/runs/" + percentEncode(id))) } catch let e as APIFailure where e.status == 404 { return nil }
        case .file(let log):
            return try wrap { try log.run(id: id).map(APIJSON.run) }
        }
    }

    /// The events of a session (after `afterSeq`), of a run, or of the
    /// whole log (after event id `afterID`).
    func events(session: String? = nil, run: String? = nil, afterSeq: Int64 = 0, afterID: Int64 = 0, limit: Int = 1000) throws -> [JSONValue] {
        switch self {
        case .daemon:
            var q = ["limit=\(limit)"]
            if let run { q.append("run=" + percentEncode(run)) } else if let session {
                q.append("session=" + percentEncode(session))
                q.append("after_seq=\(afterSeq)")
            } else {
                q.append("after_id=\(afterID)")
            }
            return try get("/v1/log/events?" + q.joined(separator: "&"))["events"]?.arrayValue ?? []
        case .file(let log):
            return try wrap {
                if let run { return try log.events(run: run).map(APIJSON.event) }
                if let session { return try log.events(session: session, afterSeq: afterSeq, limit: limit).map(APIJSON.event) }
                return try log.events(afterID: afterID, limit: limit).map(APIJSON.event)
            }
        }
    }

    func verify(session: String?) throws -> JSONObject {
        switch self {
        case .daemon:
            return try get("/v1/log/verify" + (session.map { "?session=" + percentEncode($0) } ?? ""))
        case .file(let log):
            return try wrap { APIJSON.verify(try log.verify(session: session)).objectValue ?? [:] }
        }
    }

    func export(session: String?, to write: @escaping (String) throws -> Void) throws {
        switch self {
        case .daemon(let client):
            let path = "/v1/log/export" + (session.map { "?session=" + percentEncode($0) } ?? "")
            let reply = try blocking { try await client.request("GET", path) }
            guard reply.status == 200 else { throw APIFailure(reply) }
            for line in reply.text.split(separator: "\n", omittingEmptySubsequences: true) { try write(String(line)) }
        case .file(let log):
            try wrap { try log.exportJSONL(session: session, to: write) }
        }
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as UserError { throw e } catch { throw UserError("\(error)") }
    }
}

/// A non-2xx answer from the supervisor.
struct APIFailure: Error, CustomStringConvertible {
    var status: Int
    var message: String
    var field: String?

    init(_ reply: APIClient.Reply) {
        status = reply.status
        message = reply.errorMessage
        field = reply.json?["error"]?.objectValue?["field"]?.stringValue
    }

    var description: String { "the supervisor answered \(status): \(message)" + (field.map { " (field \($0))" } ?? "") }
}

func percentEncode(_ s: String) -> String { URLQuery.encode(s) }

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : currentDirectory() + "/" + path
}

/// Formats a table: a header row and rows, columns padded to their widest cell.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            s += i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count + 2)
        }
        return s
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Pretty JSON for `--json` output: one key per line, sorted.
func prettyJSON(_ value: JSONValue, indent: String = "") -> String {
    switch value {
    case .object(let o):
        if o.isEmpty { return "{}" }
        let inner = indent + "  "
        let items = o.keys.sorted().map { k in inner + JSONValue.string(k).encoded() + ": " + prettyJSON(o[k]!, indent: inner) }
        return "{\n" + items.joined(separator: ",\n") + "\n" + indent + "}"
    case .array(let a):
        if a.isEmpty { return "[]" }
        let inner = indent + "  "
        return "[\n" + a.map { inner + prettyJSON($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
    default:
        return value.encoded()
    }
}

extension JSONValue {
    /// A cell for a table: strings bare, null as "-".
    var cell: String {
        if isNull { return "-" }
        if let s = stringValue { return s }
        return encoded()
    }
}

/// Writes a string to stdout without buffering surprises (a closed pipe
/// ends the command quietly, like other Unix tools).
func writeStdout(_ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 && errno == EPIPE { exit(0) }
        if n <= 0 { return }
        off += n
    }
}

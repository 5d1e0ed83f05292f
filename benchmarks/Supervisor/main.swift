// levain-bench-supervisor: the supervisor against plain references, measured
// in the same invocation (docs in benchmarks/README.md).
//
//   levain-bench-supervisor [--levain PATH] [--runs N] [--bytes N] [--sessions N] [--json FILE]
//
// It starts its own `levain serve` (PATH, default .build/release/levain) on
// a temporary socket and state directory, and measures:
//   exec     /bin/true through the API (POST a run with wait) in an open
//            session, against posix_spawn + waitpid of /bin/true; p50/p95.
//   cancel   POST cancel of a run that ignores SIGTERM, to its answer.
//   stdout   `head -c BYTES /dev/zero` in a session read through the API,
//            against `head -c BYTES /dev/zero | cat > /dev/null`.
//   idle     supervisor RSS with SESSIONS idle sessions open, per session.
// Interleaved where it makes sense; the reference is measured in the same run.

#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainJSON
import LevainSessionLog
import LevainSupervisor

var levain = ".build/release/levain"
var runs = 300
var bytes: UInt64 = 1 << 30
var sessionCount = 200
var jsonPath: String?
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--levain": levain = value
    case "--runs": runs = Int(value) ?? runs
    case "--bytes": bytes = UInt64(value) ?? bytes
    case "--sessions": sessionCount = Int(value) ?? sessionCount
    case "--json": jsonPath = value
    default: fatalError("unknown option \(flag)")
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
}

func fmt(_ x: Double, _ digits: Int = 2) -> String {
    if digits == 0 { return String(Int(x.rounded())) }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((x * scale).rounded())
    let whole = n / Int(scale), frac = abs(n % Int(scale))
    let f = String(frac)
    return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
}

/// posix_spawn + waitpid, the plain reference.
func spawnAndWait(_ argv: [String]) -> Int32 {
    var pid = pid_t()
    var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    let rc = posix_spawn(&pid, argv[0], nil, nil, &cargs, environ)
    guard rc == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status
}

/// Reads a (chunked or Content-Length) HTTP response body from the Unix
/// socket with plain read(2)s of 1 MiB, counting its bytes: the reader a
/// bulk consumer would write (no HTTP library in the way).
func rawBodyBytes(socketPath: String, path: String) -> UInt64? {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in socketPath.utf8.enumerated() { raw[i] = b } }
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard ok == 0 else { return nil }
    let request = "GET \(path) HTTP/1.1\r\nHost: levain\r\nConnection: close\r\n\r\n"
    _ = request.withCString { write(fd, $0, strlen($0)) }
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    // Headers.
    var head: [UInt8] = []
    var rest: ArraySlice<UInt8> = []
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        head += buf[0..<n]
        if let end = head.indices.dropLast(3).first(where: { head[$0] == 13 && head[$0 + 1] == 10 && head[$0 + 2] == 13 && head[$0 + 3] == 10 }) {
            rest = head[(end + 4)...]
            head = Array(head[..<end])
            break
        }
    }
    let headers = String(decoding: head, as: UTF8.self).lowercased()
    guard headers.hasPrefix("http/1.1 200") else { return nil }
    let chunked = headers.contains("transfer-encoding: chunked")
    var body: UInt64 = 0
    if !chunked {
        body = UInt64(rest.count)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            body += UInt64(n)
        }
        return body
    }
    // Chunked: size line (hex) CRLF, data, CRLF; a 0 size ends it.
    var sizeLine: [UInt8] = []
    var remaining: UInt64 = 0     // data bytes left in the current chunk
    var skipCRLF = 0              // CRLF bytes left after a chunk's data
    var done = false
    func consume(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        while i < bytes.count && !done {
            if remaining > 0 {
                let k = Int(min(remaining, UInt64(bytes.count - i)))
                body += UInt64(k)
                remaining -= UInt64(k)
                i += k
                if remaining == 0 { skipCRLF = 2 }
            } else if skipCRLF > 0 {
                skipCRLF -= 1
                i += 1
            } else {
                let b = bytes[i]
                i += 1
                if b == 10 {
                    let text = String(decoding: sizeLine, as: UTF8.self).trimmingCharacters(in: [" ", "\r"])
                    sizeLine = []
                    let size = UInt64(text.split(separator: ";").first ?? "", radix: 16) ?? 0
                    if size == 0 { done = true } else { remaining = size }
                } else {
                    sizeLine.append(b)
                }
            }
        }
    }
    rest.withUnsafeBytes { consume($0) }
    while !done {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        buf.withUnsafeBytes { consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    return body
}

func residentKiB(_ pid: Int32) -> Int {
    let fd = open("/proc/\(pid)/status", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 8192)
    let n = read(fd, &buf, buf.count)
    guard n > 0 else { return 0 }
    for line in String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

// The supervisor under test.
var template = Array("/tmp/levain-bench-sv-XXXXXX".utf8CString)
guard let made = mkdtemp(&template) else { fatalError("mkdtemp") }
let dir = String(cString: made)
let socketPath = dir + "/sock"
let config = """
    [supervisor]
    socket = "\(socketPath)"
    state = "\(dir)/state"
    concurrency = 8
    max_sessions = \(sessionCount + 8)
    shutdown_grace = "2s"

    [limits]
    max_output = "\(bytes + 1)"
    """
_ = config.withCString { c in
    let fd = open(dir + "/levain.toml", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    _ = write(fd, c, strlen(c))
    close(fd)
}
let serverPID: pid_t = {
    var pid = pid_t()
    let configPath: String = dir + "/levain.toml"
    let serveArgv: [String] = [levain, "serve", "--config", configPath]
    var cargs: [UnsafeMutablePointer<CChar>?] = serveArgv.map { strdup($0) } + [nil]
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, dir + "/serve.log", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    guard posix_spawn(&pid, levain, &actions, nil, &cargs, environ) == 0 else { fatalError("cannot start \(levain)") }
    return pid
}()
let client = APIClient(address: .unix(socketPath))

func shutdown() {
    kill(serverPID, SIGTERM)
    var status: Int32 = 0
    waitpid(serverPID, &status, 0)
    _ = spawnAndWait(["/bin/rm", "-rf", dir])
}

func post(_ path: String, _ body: JSONObject = [:]) async throws -> JSONObject {
    let r = try await client.request("POST", path, json: .object(body))
    guard r.status < 300, let o = r.json else { throw BenchError("POST \(path): \(r.status) \(r.text)") }
    return o
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

var results: JSONObject = [:]
do {
    var up = false
    for _ in 0..<200 {
        if let r = try? await client.request("GET", "/v1/health"), r.status == 200 { up = true; break }
        usleep(50_000)
    }
    guard up else { throw BenchError("levain serve did not come up; see \(dir)/serve.log") }
    let session = try await post("/v1/sessions")["id"]!.stringValue!

    // (a) exec latency, interleaved with the reference.
    var api: [Double] = [], plain: [Double] = []
    for i in 0..<(runs + 20) {
        let t0 = now()
        let r = try await post("/v1/sessions/\(session)/runs", ["argv": ["/bin/true"], "wait": true])
        let t1 = now()
        guard r["exit_status"]?.intValue == 0 else { throw BenchError("/bin/true through the API: \(r)") }
        let t2 = now()
        guard spawnAndWait(["/bin/true"]) == 0 else { throw BenchError("/bin/true failed") }
        let t3 = now()
        if i >= 20 { api.append((t1 - t0) * 1e3); plain.append((t3 - t2) * 1e3) }
    }
    print("exec /bin/true, \(runs) runs each, interleaved (ms):")
    print("  through the API   p50 \(fmt(percentile(api, 0.5), 3))  p95 \(fmt(percentile(api, 0.95), 3))")
    print("  fork+exec         p50 \(fmt(percentile(plain, 0.5), 3))  p95 \(fmt(percentile(plain, 0.95), 3))")
    let added = percentile(api, 0.5) - percentile(plain, 0.5)
    print("  added at p50: \(fmt(added, 3)) ms (target: within 1 ms)")
    results["exec"] = ["api_p50_ms": .double(percentile(api, 0.5)), "api_p95_ms": .double(percentile(api, 0.95)),
                       "plain_p50_ms": .double(percentile(plain, 0.5)), "plain_p95_ms": .double(percentile(plain, 0.95)),
                       "added_p50_ms": .double(added)]

    // (e) cancel latency: a run that ignores SIGTERM, killed through its cgroup.
    var cancels: [Double] = []
    for _ in 0..<20 {
        let run = try await post("/v1/sessions/\(session)/runs", ["command": "trap '' TERM INT; sleep 1000 & sleep 1000"])
        let id = run["id"]!.stringValue!
        while try await client.request("GET", "/v1/runs/\(id)").json?["status"]?.stringValue != "running" { usleep(2000) }
        usleep(20_000)
        let t0 = now()
        let done = try await post("/v1/runs/\(id)/cancel")
        let t1 = now()
        guard done["status"]?.stringValue == "cancelled" else { throw BenchError("cancel: \(done)") }
        cancels.append((t1 - t0) * 1e3)
    }
    print("cancel of a SIGTERM-ignoring run, 20 runs (ms): p50 \(fmt(percentile(cancels, 0.5))) p95 \(fmt(percentile(cancels, 0.95))) max \(fmt(cancels.max()!)) (target: within 100 ms)")
    results["cancel"] = ["p50_ms": .double(percentile(cancels, 0.5)), "max_ms": .double(cancels.max()!)]

    // (b) stdout throughput against a plain pipe, alternating, 3 rounds.
    var apiRates: [Double] = [], pipeRates: [Double] = []
    for _ in 0..<3 {
        let t0 = now()
        let run = try await post("/v1/sessions/\(session)/runs", ["argv": ["head", "-c", .string(String(bytes)), "/dev/zero"]])
        let id = run["id"]!.stringValue!
        let received = rawBodyBytes(socketPath: socketPath, path: "/v1/runs/\(id)/output/stdout") ?? 0
        let t1 = now()
        guard received == bytes else { throw BenchError("stdout: \(received) of \(bytes) bytes") }
        apiRates.append(Double(bytes) / (t1 - t0) / 1e6)
        let t2 = now()
        _ = spawnAndWait(["/bin/sh", "-c", "head -c \(bytes) /dev/zero | cat > /dev/null"])
        let t3 = now()
        pipeRates.append(Double(bytes) / (t3 - t2) / 1e6)
    }
    let apiRate = percentile(apiRates, 0.5), pipeRate = percentile(pipeRates, 0.5)
    print("stdout, \(bytes) bytes, 3 rounds each (MB/s, median): through harness + supervisor + API \(fmt(apiRate, 0)), plain pipe \(fmt(pipeRate, 0)), ratio \(fmt(apiRate / pipeRate)) (target: >= 0.25)")
    results["stdout"] = ["bytes": .int(Int64(bytes)), "api_mb_s": .double(apiRate), "pipe_mb_s": .double(pipeRate),
                         "ratio": .double(apiRate / pipeRate)]

    // (d) supervisor memory with idle sessions.
    _ = try await client.request("DELETE", "/v1/sessions/\(session)")
    usleep(500_000)
    let before = residentKiB(serverPID)
    for i in 0..<sessionCount {
        _ = try await post("/v1/sessions", ["labels": ["n": .string(String(i))]])
    }
    usleep(2_000_000)
    let after = residentKiB(serverPID)
    let perSession = Double(after - before) / Double(sessionCount)
    print("idle sessions: supervisor RSS \(before) KiB with none, \(after) KiB with \(sessionCount): \(fmt(perSession, 1)) KiB per session (target: < 1024)")
    results["idle_sessions"] = ["count": JSONValue(sessionCount), "rss_before_kib": JSONValue(before), "rss_after_kib": JSONValue(after),
                                "per_session_kib": .double(perSession)]
} catch {
    print("benchmark failed: \(error)")
    shutdown()
    exit(1)
}
shutdown()
if let jsonPath {
    let text = JSONValue.object(results).encoded() + "\n"
    let fd = open(jsonPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainCLI
import LevainJSON
import LevainPolicy
import CLevainSpawn
import Dispatch
import LevainSessionLog
import Synchronization

/// `levain --connect ADDRESS run ...`: the same run through a supervisor.
///
/// Without --session it opens a session with the run's policy, limits and
/// binds, runs the command in it, and closes it; with --session it runs in
/// that (open) session. stdin is streamed to the run, stdout and stderr
/// stream back as they are written, signals are forwarded, and the exit
/// status is the one the standalone `levain run` would give.
extension RunOptions {
    func executeRemote(_ client: APIClient, signalFD: Int32) throws -> Never {
        for (name, value) in [("--memory", memory), ("--cpus", cpus), ("--pids", pids), ("--timeout", timeout),
                              ("--cpu-time", cpuTime), ("--file-size", fileSize)] where value == "off" {
            throw UserError("\(name) off is not available through --connect: a session's limits start from its policy; use a policy without that limit")
        }
        if session != nil {
            let sessionOnly = [("--memory", memory), ("--cpus", cpus), ("--pids", pids)].filter { $0.1 != nil }.map(\.0)
                + (readOnlyBinds.isEmpty ? [] : ["--ro"]) + (readWriteBinds.isEmpty ? [] : ["--rw"]) + (policy != "default" ? ["--policy"] : [])
            if let first = sessionOnly.first {
                throw UserError("\(first) applies to the jail of a new session; it cannot change session \(session!) (drop --session to get a new one)")
            }
        }
        // The run as the API's value: checked here with the same bounds the
        // supervisor applies, and sent as RunRequest writes it.
        var spec = RunSpec(argv: argv)
        for item in self.env {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { throw UserError("--env \(item): expected KEY=VALUE") }
            spec.env[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        if let cwd {
            guard cwd.hasPrefix("/") else { throw UserError("--cwd \(cwd): give an absolute path inside the jail (e.g. /workspace/src)") }
            spec.cwd = cwd
        }
        if let timeout {
            guard let v = Quantity.parseDuration(timeout), v > 0, v < 1e7 else {
                throw UserError("--timeout \(timeout): expected seconds (e.g. 30, 1.5) or a duration (30s, 5m, 1h)")
            }
            spec.timeout = v
        }
        if let cpuTime {
            guard let v = Quantity.parseDuration(cpuTime), v >= 1, v < 1e9 else {
                throw UserError("--cpu-time \(cpuTime): expected at least 1 second (e.g. 10, 10s, 2m)")
            }
            spec.cpuTime = UInt64(v.rounded(.up))
        }
        if let fileSize {
            guard let v = Quantity.parseSize(fileSize) else {
                throw UserError("--file-size \(fileSize): invalid size; expected a number with an optional K, M, G or T suffix (e.g. 100M)")
            }
            spec.fileSize = v
        }
        do throws(APIError) {
            try RunSpec.checkArgv(spec.argv)
            try RunSpec.checkEnv(spec.env)
        } catch {
            throw UserError("\(error.field ?? "run"): \(error.message)")
        }
        let streamStdin = Self.stdinHasData()
        spec.stdinStream = streamStdin
        let runBody = RunRequest(spec: spec).json

        let sessionBody = try sessionSpec(policy: policyArgument(policy), labels: ["levain.cli=run"], memory: memory, cpus: cpus, pids: pids,
                                          readOnly: readOnlyBinds, readWrite: readWriteBinds).request

        let existing = session
        let quiet = self.quiet
        let reportPath = jsonReport.map(absolutePath)
        let body = runBody, sBody = sessionBody
        let status: Int32 = try blocking {
            try await RemoteRun(client: client, signalFD: signalFD, quiet: quiet)
                .run(session: existing, sessionBody: sBody, runBody: body, streamStdin: streamStdin, reportPath: reportPath)
        }
        exit(status)
    }

    /// Whether stdin is worth streaming: anything but /dev/null or a closed fd.
    static func stdinHasData() -> Bool {
        var st = stat()
        guard fstat(0, &st) == 0 else { return false }
        if (st.st_mode & S_IFMT) == S_IFCHR {
            var null = stat()
            if stat("/dev/null", &null) == 0 && null.st_rdev == st.st_rdev { return false }
        }
        return true
    }
}

struct RemoteRun: Sendable {
    let client: APIClient
    let signalFD: Int32
    let quiet: Bool

    func run(session existing: String?, sessionBody: JSONObject, runBody: JSONObject, streamStdin: Bool, reportPath: String?) async throws -> Int32 {
        let session: String
        if let existing {
            session = existing
        } else {
            let reply = try await client.request("POST", "/v1/sessions", json: .object(sessionBody))
            guard reply.status == 201, let id = reply.json?["id"]?.stringValue else { throw UserError("opening a session: " + APIFailure(reply).description) }
            session = id
        }
        do {
            let status = try await runIn(session: session, runBody: runBody, streamStdin: streamStdin, reportPath: reportPath)
            if existing == nil { _ = try? await client.request("DELETE", "/v1/sessions/" + session) }
            return status
        } catch {
            if existing == nil { _ = try? await client.request("DELETE", "/v1/sessions/" + session) }
            throw error
        }
    }

    private func runIn(session: String, runBody: JSONObject, streamStdin: Bool, reportPath: String?) async throws -> Int32 {
        let reply = try await client.request("POST", "/v1/sessions/\(session)/runs", json: .object(runBody))
        guard reply.status == 201 || reply.status == 200, let run = reply.json?["id"]?.stringValue else {
            throw UserError("starting the run: " + APIFailure(reply).description)
        }
        let client = self.client
        // Signals to us go to the run (SIGKILL is the supervisor's business).
        let forwarding = Thread.detach { [signalFD] in
            guard signalFD >= 0 else { return }
            while true {
                let sig = lv_read_signal(signalFD)
                if sig <= 0 { return }
                let reply = try? blocking { try await client.request("POST", "/v1/runs/\(run)/signal", json: ["signal": .int(Int64(sig))]) }
                // Not running yet (queued) or already ending: cancel it.
                if let reply, reply.status == 409, sig == SIGINT || sig == SIGTERM {
                    _ = try? blocking { try await client.request("POST", "/v1/runs/\(run)/cancel") }
                }
            }
        }
        _ = forwarding
        if streamStdin {
            // A blocking reader of fd 0 on its own thread; the upload ends at
            // EOF. A run that ends first answers 409, which is fine.
            Task.detached {
                let reader = StdinReader()
                _ = try? await client.upload("PUT", "/v1/runs/\(run)/stdin") { await reader.next() }
            }
        }
        async let out: Void = pump(run: run, stream: "stdout", fd: 1)
        async let err: Void = pump(run: run, stream: "stderr", fd: 2)
        _ = try await (out, err)
        let waited = try await client.request("POST", "/v1/runs/\(run)/wait")
        guard waited.status == 200, let record = waited.json else { throw UserError("waiting for the run: " + APIFailure(waited).description) }
        let exitStatus = Int32(truncatingIfNeeded: record["exit_status"]?.intValue ?? 125)
        let events = (try? await client.request("GET", "/v1/log/events?run=\(run)"))?.json?["events"]?.arrayValue ?? []
        if !quiet {
            for e in events where e["type"]?.stringValue == EventType.limitHit {
                printError("run \(run): \(e["payload"]?["limit"]?.cell ?? "a") limit reached")
            }
            if record["status"]?.stringValue == "timed_out" { printError("run \(run): wall-clock timeout reached: the run was killed") }
        }
        if let message = record["error"]?.stringValue, exitStatus >= 125 || exitStatus == 126 || exitStatus == 127 {
            printError(message)
        }
        if let reportPath { try writeRemoteReport(record: record, events: events, to: reportPath) }
        return exitStatus
    }

    /// Copies a run's stdout or stderr to our fd, following it to the end.
    private func pump(run: String, stream: String, fd: Int32) async throws {
        var status = 0
        try await client.stream("GET", "/v1/runs/\(run)/output/\(stream)?follow=true", onHead: { s, _ in status = s }, onChunk: { chunk in
            guard status == 200 else { return true }
            return writeAll(fd, chunk)
        })
    }

    /// The --json-report of a run through a supervisor: the run's record and
    /// what its events say (exit, times, peak memory, limits hit).
    private func writeRemoteReport(record: JSONObject, events: [JSONValue], to path: String) throws {
        var o: JSONObject = ["id": record["id"] ?? .null, "session": record["session"] ?? .null,
                             "command": record["request"]?["argv"] ?? .null, "status": record["status"] ?? .null,
                             "started_at": record["started_at"] ?? .null, "through": "supervisor"]
        o["exit"] = ["code": record["exit_code"] ?? .null, "signal": record["signal"] ?? .null, "status": record["exit_status"] ?? .null]
        var limitsHit: [JSONValue] = []
        for e in events {
            let p = e["payload"]?.objectValue ?? [:]
            switch e["type"]?.stringValue {
            case EventType.processExited:
                o["cpu"] = ["user_ms": .double(Double(p["user_us"]?.intValue ?? 0) / 1000), "system_ms": .double(Double(p["system_us"]?.intValue ?? 0) / 1000)]
                o["memory"] = ["peak_bytes": p["max_rss_kb"]?.intValue.map { .int($0 * 1024) } ?? .null]
            case EventType.limitHit:
                limitsHit.append(p["limit"] ?? .null)
            case EventType.runFinished:
                o["wall_time_ms"] = p["duration_ms"] ?? .null
            default:
                break
            }
        }
        if record["status"]?.stringValue == "timed_out" { limitsHit.append("timeout") }
        o["limits"] = ["hit": .bool(!limitsHit.isEmpty), "which": .array(limitsHit)]
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UserError("--json-report \(path): \(String(cString: strerror(errno)))") }
        let ok = writeAll(fd, Array((prettyJSON(.object(o)) + "\n").utf8))
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw UserError("--json-report \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Reads fd 0 on a thread of its own (a terminal or a pipe blocks), handing
/// chunks to the upload; nil at EOF.
final class StdinReader: Sendable {
    private let chunks = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingOldest(4))

    init() {
        let continuation = chunks.continuation
        _ = Thread.detach {
            while true {
                var buf = [UInt8](repeating: 0, count: 64 << 10)
                let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { continuation.finish(); return }
                // Bounded: wait while the upload is behind.
                var chunk = Array(buf.prefix(n))
                while true {
                    switch continuation.yield(chunk) {
                    case .dropped(let d): chunk = d; usleep(2000); continue
                    default: break
                    }
                    break
                }
            }
        }
    }

    func next() async -> [UInt8]? {
        var it = chunks.stream.makeAsyncIterator()
        return await it.next()
    }
}

/// A detached OS thread (for blocking reads).
enum Thread {
    @discardableResult
    static func detach(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
        final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        var t = pthread_t()
        let rc = pthread_create(&t, &attr, { arg in
            let box = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue()
            (box as! Box).body()
            return nil
        }, box)
        pthread_attr_destroy(&attr)
        return rc == 0 ? t : nil
    }
}

import LevainAPI
import Foundation
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Control API connections: open-files limit, per-listener cap", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct ConnectionTests {
    @Test("2,000 idle connections to the Unix socket of a serve started at the usual 1024 open files: all accepted, no spinning, and another client runs `true`")
    func twoThousandConnections() async throws {
        try raiseOwnOpenFiles(atLeast: 2_400)
        // idle_timeout: held connections must stay however slow the machine is.
        let sv = try await TestSupervisor.start("conn2000", config: "idle_timeout = \"10m\"\n", launcher: TestSupervisor.openFiles(soft: 1024))
        defer { sv.cleanUp() }
        let before = openFileCount(sv.pid)
        let fds = openUnixConnections(sv.socket, count: 2_000, within: 60)
        // Each closed once: a number closed twice may be another test's socket by then.
        var open = fds
        defer { for fd in open { close(fd) } }
        #expect(fds.count == 2_000, "connected \(fds.count) of 2000")
        // The supervisor accepted them all (each is a descriptor of its own).
        let accepted = await eventually(within: 60) { openFileCount(sv.pid) >= before + 2_000 }
        #expect(accepted, "serve holds \(openFileCount(sv.pid)) descriptors, \(before) before the connections; serve.log: \(sv.serveLog.suffix(2000))")
        // While they are held: another client makes a session and runs `true`.
        let run = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "--", "true"], timeout: 120)
        #expect(run.status == 0, "levain run true: \(run.status) \(run.stderr)")
        // And the supervisor is idle, not spinning on accept(2).
        let cpu = cpuFraction(sv.pid, over: 3)
        print("serve CPU with 2,000 idle connections held: \(Int(cpu * 100))% of a core")
        #expect(cpu < 0.5, "serve used \(Int(cpu * 100))% of a core with 2,000 idle connections")
        for fd in open { close(fd) }
        open = []
        #expect(await eventually(within: 60) { openFileCount(sv.pid) <= before + 10 }, "the closed connections are released")
        #expect(try await sv.request("GET", "/v1/health").status == 200)
    }

    @Test("past max_connections a listener answers 503 and closes at once; the other listener (TCP) serves meanwhile; freed slots are used again")
    func perListenerCap() async throws {
        let port = Int.random(in: 20_000..<60_000)
        let dir = "/tmp/levain-sv-tests/cap-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "cap-token-0123456789abcdef"
        try "\(token)\n".write(toFile: dir + "/tokens", atomically: true, encoding: .utf8)
        // A long header_timeout: the held connections send only part of a head.
        let sv = try await TestSupervisor.start("cap", config: "max_connections = 50\nheader_timeout = \"10m\"\n\n[tcp]\naddress = \"127.0.0.1:\(port)\"\ntoken_file = \"\(dir)/tokens\"\n")
        defer { sv.cleanUp() }
        let fds = openUnixConnections(sv.socket, count: 120, within: 60)
        var open = Set(fds)
        defer { for fd in open { close(fd) } }
        #expect(fds.count == 120)
        // Each starts a request (its head is never finished).
        for fd in fds { sendAll(fd, "GET /v1/health HTTP/1.1\r\nHost: x\r\n") }
        // 50 are held; the other 70 get a 503 naming the limit, then the end.
        var refused: [Int32: String] = [:]
        var received: [Int32: [UInt8]] = [:]
        let settled = await eventually(within: 60) {
            for fd in fds where refused[fd] == nil {
                var bytes = received[fd] ?? []
                if drain(fd, into: &bytes) { refused[fd] = String(decoding: bytes, as: UTF8.self) }
                received[fd] = bytes
            }
            return refused.count >= 70
        }
        #expect(settled && refused.count == 70, "\(refused.count) of 120 refused")
        for answer in refused.values.prefix(3) {
            #expect(answer.hasPrefix("HTTP/1.1 503"), "\(answer)")
            #expect(answer.contains("max_connections"), "\(answer)")
        }
        let held = fds.filter { refused[$0] == nil }
        #expect(held.count == 50)
        // The held ones are open and unanswered.
        #expect(held.allSatisfy { isOpenAndSilent($0) })
        // The control: the TCP listener has its own 50 and serves a session and a run.
        let tcp = APIClient(address: .tcp(host: "127.0.0.1", port: port), token: token)
        let created = try await tcp.request("POST", "/v1/sessions", json: [:])
        #expect(created.status == 201, "\(created.text)")
        let s = try #require(created.json?["id"]?.stringValue)
        let ran = try await tcp.request("POST", "/v1/sessions/\(s)/runs", json: ["argv": ["true"], "wait": true])
        #expect(ran.status == 201 && ran.json?["exit_status"]?.intValue == 0, "\(ran.text)")
        // A Unix client now is refused too, with the same 503.
        let full = try await sv.request("GET", "/v1/health")
        #expect(full.status == 503 && full.json?["error"]?["field"]?.stringValue == "connection", "\(full.status) \(full.text)")
        // Slots come back when connections close.
        for fd in held.prefix(10) {
            close(fd)
            open.remove(fd)
        }
        #expect(await eventually(within: 60) { (try? await sv.request("GET", "/v1/health").status) == 200 })
    }

    @Test("when accept(2) runs out of descriptors (EMFILE) the listener pauses instead of spinning, and serves again once descriptors are free")
    func acceptPausesOnEMFILE() async throws {
        try raiseOwnOpenFiles(atLeast: 1_800)
        // 1024 open files at most (soft and hard), and a cap above what they
        // allow (serve says so).
        let sv = try await TestSupervisor.start("emfile", config: "max_connections = 5000\n",
                                                launcher: TestSupervisor.openFiles(soft: 1024, hard: 1024))
        defer { sv.cleanUp() }
        let fds = openUnixConnections(sv.socket, count: 1_400, within: 20)
        var open = fds
        defer { for fd in open { close(fd) } }
        #expect(fds.count >= 1_100, "connected \(fds.count)")
        #expect(await eventually(within: 60) { sv.serveLog.contains("Too many open files") }, "\(sv.serveLog)")
        let cpu = cpuFraction(sv.pid, over: 3)
        print("serve CPU while accept(2) fails with EMFILE: \(Int(cpu * 100))% of a core")
        #expect(cpu < 0.5, "serve used \(Int(cpu * 100))% of a core while out of descriptors")
        #expect(sv.serveLog.contains("does not fit"), "the cap above the limit is reported: \(sv.serveLog)")
        for fd in open { close(fd) }
        open = []
        // The control: with the descriptors back, a client is served.
        let run = try runProcess([levainBinary, "--connect", "unix:" + sv.socket, "run", "--", "true"], timeout: 120)
        #expect(run.status == 0, "levain run true: \(run.status) \(run.stderr)")
    }
}

/// Raises this test process's open-files soft limit to its hard limit,
/// which must allow `atLeast`.
func raiseOwnOpenFiles(atLeast: Int) throws {
    var r = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r)
    guard r.rlim_max >= rlim_t(atLeast) else { throw TestFailure("the open-files hard limit \(r.rlim_max) is below \(atLeast)") }
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r)
    }
}

/// Opens up to `count` non-blocking connections to a Unix socket; a full
/// backlog (EAGAIN) is retried until `within` seconds have passed.
func openUnixConnections(_ path: String, count: Int, within seconds: Double) -> [Int32] {
    var fds: [Int32] = []
    let deadline = Date().addingTimeInterval(seconds)
    while fds.count < count && Date() < deadline {
        let fd = connectUnix(path, nonBlocking: true)
        if fd >= 0 { fds.append(fd) } else { usleep(10_000) }
    }
    return fds
}

/// Writes all of `text` (no SIGPIPE).
func sendAll(_ fd: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return }
        off += n
    }
}

/// Descriptors a process holds.
func openFileCount(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
}

/// User and system CPU time of a process (all its threads), in seconds.
func cpuSeconds(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The share of one core a process used over `seconds` (a blocking sleep).
func cpuFraction(_ pid: Int32, over seconds: Double) -> Double {
    let start = cpuSeconds(pid)
    let t0 = Date()
    usleep(UInt32(seconds * 1_000_000))
    return (cpuSeconds(pid) - start) / Date().timeIntervalSince(t0)
}

/// Reads what a non-blocking socket has into `into`; true once the
/// server has closed it (end of file, or a reset).
func drain(_ fd: Int32, into out: inout [UInt8]) -> Bool {
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { out += buf[0..<n]; continue }
        if n == 0 { return true }
        return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    }
}

/// Open, with nothing to read.
func isOpenAndSilent(_ fd: Int32) -> Bool {
    var b: UInt8 = 0
    let n = recv(fd, &b, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
}

import LevainAPI
import Foundation
import LevainJSON
import LevainTestSupport
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// These tests run the real `levain serve` (the built binary) as root on a
/// socket of their own, and talk to it over HTTP on that socket.
let runningAsRoot = getuid() == 0

let packageRoot: String = String(#filePath).components(separatedBy: "/Tests/")[0]

/// $LEVAIN_BIN (the Makefile sets it), else the debug build.
let levainBinary: String = ProcessInfo.processInfo.environment["LEVAIN_BIN"] ?? packageRoot + "/.build/debug/levain"

/// The first host uid of a jail.
let jailHostIDBase: UInt32 = 0x7000_0000

/// A `levain serve` of one test: its own socket, state directory and config.
final class TestSupervisor: @unchecked Sendable {
    let directory: String
    let socket: String
    let state: String
    let configPath: String
    private(set) var process: Process?
    let logPath: String

    var client: APIClient { APIClient(address: .unix(socket)) }
    var pid: Int32 { process?.processIdentifier ?? -1 }

    /// `config` is extra TOML appended to the [supervisor] table's file.
    /// `launcher` runs before `levain serve ...` (it must exec it, so the
    /// pid stays serve's): `TestSupervisor.openFiles(1024)` starts serve
    /// with that open-files limit.
    static func start(_ name: String, config: String = "", environment: [String: String] = [:],
                      launcher: [String] = []) async throws -> TestSupervisor {
        let sv = try TestSupervisor(name, config: config)
        try await sv.start(environment: environment, launcher: launcher)
        return sv
    }

    /// A launcher that sets the open-files limit (the soft one, and the
    /// hard one when given) and execs serve.
    static func openFiles(soft: Int, hard: Int? = nil) -> [String] {
        // The soft limit first: a hard limit below the soft one is EINVAL.
        let hardPart = hard.map { " && ulimit -H -n \($0)" } ?? ""
        return ["/bin/sh", "-c", "ulimit -S -n \(soft)" + hardPart + " && exec \"$@\"", "levain-serve"]
    }

    init(_ name: String, config: String = "") throws {
        directory = "/tmp/levain-sv-tests/\(name)-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/sock"
        state = directory + "/state"
        configPath = directory + "/levain.toml"
        logPath = directory + "/serve.log"
        let text = """
            [supervisor]
            socket = "\(socket)"
            state = "\(state)"

            """ + (config.contains("shutdown_grace") ? "" : "shutdown_grace = \"5s\"\n") + config
            // No warm jails unless a test asks (WarmPoolTests): the other
            // tests count the supervisor's jails and processes.
            + (config.contains("[warm_pool]") ? "" : "\n[warm_pool]\ndefault = 0\n")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func start(environment: [String: String] = [:], launcher: [String] = []) async throws {
        let p = Process()
        let argv = launcher + [levainBinary, "serve", "--config", configPath]
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if !p.isRunning { throw TestFailure("levain serve exited: \(serveLog)") }
            if let r = try? await APIClient(address: .unix(socket)).request("GET", "/v1/health"), r.status == 200 { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw TestFailure("levain serve did not answer within 60 s: \(serveLog)")
    }

    var serveLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait (the graceful path); returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Double = 60) -> Int32 {
        guard let p = process else { return -1 }
        if p.isRunning { kill(p.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
        return p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
    }

    /// Stops (if running) and removes the directory.
    func cleanUp() {
        stop()
        // The workspaces belong to jail uids; root removes them all.
        // LEVAIN_KEEP_TEST_DIRS=1 keeps them (and serve.log) for a look.
        if ProcessInfo.processInfo.environment["LEVAIN_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    // MARK: API helpers

    func request(_ method: String, _ path: String, _ body: JSONValue? = nil) async throws -> APIClient.Reply {
        try await client.request(method, path, json: body)
    }

    func raw(_ method: String, _ path: String, body: [UInt8]?, contentType: String? = nil) async throws -> APIClient.Reply {
        try await client.request(method, path, body: body, contentType: contentType)
    }

    /// POST /v1/sessions; the new session's id.
    func openSession(_ body: JSONObject = [:]) async throws -> String {
        let r = try await request("POST", "/v1/sessions", .object(body))
        guard r.status == 201, let id = r.json?["id"]?.stringValue else { throw TestFailure("opening a session: \(r.status) \(r.text)") }
        return id
    }

    /// Starts a run; its record.
    func startRun(_ session: String, _ body: JSONObject) async throws -> JSONObject {
        let r = try await request("POST", "/v1/sessions/\(session)/runs", .object(body))
        guard r.status == 201 || r.status == 200, let o = r.json else { throw TestFailure("starting a run: \(r.status) \(r.text)") }
        return o
    }

    /// Waits for a run's end; its record.
    func wait(_ run: String, timeout: Double = 120) async throws -> JSONObject {
        let r = try await request("POST", "/v1/runs/\(run)/wait?timeout=\(timeout)")
        guard r.status == 200, let o = r.json else { throw TestFailure("waiting: \(r.status) \(r.text)") }
        return o
    }

    func output(_ run: String, _ stream: String = "stdout") async throws -> String {
        try await request("GET", "/v1/runs/\(run)/output/\(stream)?follow=false").text
    }

    /// Its jails now (children running levain-harness).
    var harnessPIDs: Set<Int32> { RecoveryTests.harnesses(of: pid) }

    /// The run's events from the log, in order.
    func events(run: String) async throws -> [JSONValue] {
        try await request("GET", "/v1/log/events?run=\(run)").json?["events"]?.arrayValue ?? []
    }

    func events(session: String) async throws -> [JSONValue] {
        try await request("GET", "/v1/log/events?session=\(session)&limit=10000").json?["events"]?.arrayValue ?? []
    }

    /// Opens the log read-only (as `levain log` does without a daemon).
    func openLog() throws -> SessionLog { try SessionLog(path: state + "/log.sqlite", readOnly: true) }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
    private var result: Result<T, any Error>?
    private let lock = NSLock()
    func set(_ r: Result<T, any Error>) { lock.lock(); result = r; lock.unlock() }
    func get() throws -> T { lock.lock(); defer { lock.unlock() }; return try result!.get() }
}

/// Host processes running as a jail uid (the default id base).
func jailProcessCount() -> Int {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
    var n = 0
    for pid in entries where pid.allSatisfy(\.isNumber) {
        var st = stat()
        guard stat("/proc/\(pid)", &st) == 0, st.st_uid >= jailHostIDBase, st.st_uid < jailHostIDBase + 65536 else { continue }
        n += 1
    }
    return n
}

/// Pids of processes whose command line contains `marker`.
func processes(containing marker: String) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [Int32] = []
    for pid in entries where pid.allSatisfy(\.isNumber) {
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
        let args = String(decoding: cmdline.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        if args.contains(marker), let p = Int32(pid), p != getpid() { found.append(p) }
    }
    return found
}

/// Resident memory of a process, in KiB.
func residentKiB(_ pid: Int32) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

func eventually(within seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return await condition()
}

extension Array where Element == JSONValue {
    var types: [String] { compactMap { $0["type"]?.stringValue } }
}

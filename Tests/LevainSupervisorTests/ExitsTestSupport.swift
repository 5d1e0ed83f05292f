import Foundation
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The tests' Python virtual environment with the official openai and
/// anthropic SDKs, requests and mcp (Tools/python-venv.sh; `make test` makes
/// it first). Bound read-only into the jails at the same path.
let testVenv: String = {
    let r = try? runProcess([packageRoot + "/Tools/python-venv.sh"], timeout: 600)
    return r?.stdout.split(separator: "\n").last.map(String.init) ?? "/var/cache/levain/pyvenv"
}()

let fixturesDirectory = packageRoot + "/Tests/Fixtures"

/// The scripted provider (Tests/Fixtures/scripted_provider.py): a real HTTP
/// server on loopback speaking the OpenAI and Anthropic wire formats, also
/// the egress tests' upstream (/echo, /bytes).
final class ScriptedProvider: @unchecked Sendable {
    let process: Process
    let port: Int
    let key: String

    init(key: String = "sk-real-" + UUID().uuidString.replacingOccurrences(of: "-", with: "")) throws {
        self.key = key
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lvsp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let portFile = dir.appendingPathComponent("port").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [fixturesDirectory + "/scripted_provider.py", "--port", "0", "--port-file", portFile]
        var env = ProcessInfo.processInfo.environment
        env["SCRIPTED_PROVIDER_KEY"] = key
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        // Not the test process's stderr: a provider must never hold the
        // test runner's pipe (its stderr goes to a file beside its port).
        FileManager.default.createFile(atPath: dir.appendingPathComponent("stderr").path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: dir.appendingPathComponent("stderr"))
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        var found: Int? = nil
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                found = n
                break
            }
            usleep(20_000)
        }
        try? FileManager.default.removeItem(at: dir)
        guard let found else {
            p.terminate()
            throw TestFailure("the scripted provider did not start")
        }
        port = found
    }

    /// SIGKILL: a child of the test process inherits its blocked signals,
    /// so a SIGTERM would wait forever (the fixture keeps no state).
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// What the provider received (GET /_requests).
    func requests() throws -> [[String: Any]] {
        let r = try runProcess(["/usr/bin/curl", "-sS", "http://127.0.0.1:\(port)/_requests"])
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
    }

    /// The supervisor's config naming this provider for both APIs.
    var config: String {
        """

        [gateway]
        max_body = "64K"

        [providers.openai]
        kind = "openai"
        base_url = "http://127.0.0.1:\(port)/v1"
        api_key_env = "LEVAIN_TEST_PROVIDER_KEY"

        [providers.anthropic]
        kind = "anthropic"
        base_url = "http://127.0.0.1:\(port)"
        api_key_env = "LEVAIN_TEST_PROVIDER_KEY"

        [models."gpt-4o-mini"]
        provider = "openai"
        input_price = 0.15
        output_price = 0.60

        [models."gpt-4o"]
        provider = "openai"
        input_price = 2.5
        output_price = 10

        [models."text-embedding-3-small"]
        provider = "openai"
        input_price = 0.02

        [models."claude-3-5-haiku-latest"]
        provider = "anthropic"
        input_price = 0.8
        output_price = 4

        """
    }

    var environment: [String: String] { ["LEVAIN_TEST_PROVIDER_KEY": key] }
}

/// A policy file: the built-in default without its [network] and [models]
/// tables, then `[network]` + `network`, then `extra` (which may hold a
/// [models] table).
func writePolicy(_ directory: String, name: String, network: String = "mode = \"loopback\"", extra: String) throws -> String {
    var text = try String(contentsOfFile: packageRoot + "/policies/default.toml", encoding: .utf8)
    for table in ["[network]\n", "[models]\n"] {
        guard let range = text.range(of: table) else { throw TestFailure("policies/default.toml has no \(table)") }
        let end = text[range.upperBound...].range(of: "\n[")?.lowerBound ?? text.endIndex
        text.removeSubrange(range.lowerBound..<end)
    }
    text = text.replacingOccurrences(of: "name = \"default\"", with: "name = \"\(name)\"")
    text += "\n[network]\n" + network + "\n\n" + extra + "\n"
    let path = directory + "/\(name).toml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Runs argv in a session and returns (exit code, stdout, stderr).
func runInSession(_ sv: TestSupervisor, _ session: String, _ argv: [String], timeout: Double = 180) async throws -> (Int, String, String, String) {
    let run = try await sv.startRun(session, ["argv": .array(argv.map { .string($0) }), "timeout": .double(timeout)])
    guard let id = run["id"]?.stringValue else { throw TestFailure("no run id") }
    let done = try await sv.wait(id, timeout: timeout + 30)
    let code = Int(done["exit_code"]?.intValue ?? -1)
    return (code, try await sv.output(id), try await sv.output(id, "stderr"), id)
}

/// The JSON object `text` is, or the one on its last line.
func jsonObject(_ text: String) throws -> [String: Any] {
    if let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] { return o }
    let line = text.split(separator: "\n").last.map(String.init) ?? ""
    guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
        throw TestFailure("not JSON: \(text)")
    }
    return o
}

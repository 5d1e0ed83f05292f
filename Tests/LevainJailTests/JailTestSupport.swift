import Foundation
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// These tests need root and a real kernel: they run the built `levain`
/// binary, which creates namespaces, cgroups and mounts.
let runningAsRoot = getuid() == 0

/// The package root, from this file's path.
let packageRoot: String = String(#filePath).components(separatedBy: "/Tests/")[0]

/// The levain binary under test: $LEVAIN_BIN (the Makefile sets it), else
/// the debug build.
let levainBinary: String = ProcessInfo.processInfo.environment["LEVAIN_BIN"] ?? packageRoot + "/.build/debug/levain"

/// A state directory of this test process: workspaces of its runs go there.
let testState: String = {
    let dir = "/tmp/levain-tests/\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}()

/// The first host uid of a jail (RunRequest.defaultHostIDBase).
let jailHostIDBase: UInt32 = 0x7000_0000

struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var report: [String: Any]?

    var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }

    /// The RESULT line a payload printed.
    var result: String? {
        stdout.split(separator: "\n").first { $0.hasPrefix("RESULT ") }.map { String($0.dropFirst(7)) }
    }

    func reportValue(_ path: String) -> Any? {
        var cur: Any? = report
        for key in path.split(separator: ".") {
            cur = (cur as? [String: Any])?[String(key)]
        }
        return cur
    }

    var limitsHit: [String] { reportValue("limits.which") as? [String] ?? [] }
}

/// A program's result, with the report `jail` reads back.
func runCommand(_ argv: [String], stdin: String? = nil, environment: [String: String]? = nil,
                timeout: Double = 120) throws -> CommandResult {
    let r = try runProcess(argv, stdin: stdin, environment: environment, timeout: timeout)
    return CommandResult(status: r.status, stdout: r.stdout, stderr: r.stderr)
}

/// `levain run [options] -- command`, with a JSON report read back.
func jail(_ command: [String], _ options: [String] = [], stdin: String? = nil,
          environment: [String: String]? = nil, timeout: Double = 120) throws -> CommandResult {
    let reportPath = "\(testState)/report-\(UUID().uuidString).json"
    defer { unlink(reportPath) }
    var argv = [levainBinary, "run", "--state", testState, "--json-report", reportPath]
    argv += options
    argv += ["--"] + command
    var r = try runCommand(argv, stdin: stdin, environment: environment, timeout: timeout)
    if let data = FileManager.default.contents(atPath: reportPath) {
        r.report = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    }
    return r
}

/// `levain ARGS...` (any subcommand).
func levain(_ args: [String], stdin: String? = nil) throws -> CommandResult {
    try runCommand([levainBinary] + args, stdin: stdin)
}

/// The C payloads (Payloads/payloads.c), compiled once per test process
/// into a directory that tests bind read-only at /t.
enum Payloads {
    static let directory: String = {
        let dir = "/tmp/levain-tests/payloads-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let r = try? runProcess(["/usr/bin/gcc", "-O1", "-o", dir + "/payloads",
                                 packageRoot + "/Tests/LevainJailTests/Payloads/payloads.c"])
        precondition(r?.status == 0, "compiling payloads.c failed: \(r?.description ?? "gcc did not run")")
        return dir
    }()

    static var bind: [String] { ["--ro", "\(directory):/t"] }

    /// Runs `payloads NAME attack|control` in a jail under the default policy.
    static func run(_ name: String, control: Bool, options: [String] = []) throws -> CommandResult {
        try jail(["/t/payloads", name, control ? "control" : "attack"], bind + options)
    }
}

/// Host processes whose uid is a jail's (the tests' runs only ever use the
/// default id base), whose command line contains `marker`.
func jailProcesses(containing marker: String) -> [String] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [String] = []
    for pid in entries where pid.allSatisfy(\.isNumber) {
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
        let args = String(decoding: cmdline.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        guard args.contains(marker) else { continue }
        var st = stat()
        guard stat("/proc/\(pid)", &st) == 0, st.st_uid >= jailHostIDBase, st.st_uid < jailHostIDBase + 65536 else { continue }
        found.append("\(pid): \(args)")
    }
    return found
}

/// Every cgroup directory of a run, on any hierarchy.
func cgroupDirectories(ofRun id: String) -> [String] {
    let roots = ["memory", "cpu", "cpuacct", "pids", "freezer"].map { "/sys/fs/cgroup/\($0)/levain/\(id)" } + ["/sys/fs/cgroup/levain/\(id)"]
    return roots.filter { FileManager.default.fileExists(atPath: $0) }
}

/// Polls until `condition` holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// What a workspace image holds, read on the host without mounting it
/// (debugfs, from e2fsprogs): a file's content, or nil when it is missing.
func workspaceImageFile(_ image: String, _ path: String) -> String? {
    guard let r = try? runProcess(["/sbin/debugfs", "-R", "cat \(path)", image]), r.status == 0,
          !r.stderr.contains("File not found") else { return nil }
    return r.stdout
}

/// A file's owner (host uid) in a workspace image, from debugfs's stat.
func workspaceImageOwner(_ image: String, _ path: String) -> UInt32? {
    guard let r = try? runProcess(["/sbin/debugfs", "-R", "stat \(path)", image]), r.status == 0,
          let range = r.stdout.range(of: "User:") else { return nil }
    return UInt32(r.stdout[range.upperBound...].drop { $0 == " " }.prefix { $0.isNumber })
}

/// The loop devices that have `image` attached now (losetup -j).
func loopDevices(attachedTo image: String) -> [String] {
    guard let r = try? runProcess(["/sbin/losetup", "-j", image]), r.status == 0 else { return [] }
    return r.stdout.split(separator: "\n").map { String($0.prefix { $0 != ":" }) }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a program printed and how it ended.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }

    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// Runs a program to completion with stdout/stderr to files (no pipe
/// deadlocks) and a watchdog that kills it after `timeout` seconds (a bound
/// for a hung program, not a speed check). The exit status is the shell's:
/// 128 + the signal for a killed program. Shared by the jail and the
/// supervisor test targets.
public func runProcess(_ argv: [String], stdin: String? = nil, environment: [String: String]? = nil,
                       timeout: Double = 120) throws -> ProcessResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lvt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    if let environment { p.environment = environment }
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    p.standardOutput = out
    p.standardError = err
    if let stdin {
        let inURL = dir.appendingPathComponent("in")
        try stdin.write(to: inURL, atomically: true, encoding: .utf8)
        p.standardInput = try FileHandle(forReadingFrom: inURL)
    } else {
        p.standardInput = FileHandle.nullDevice
    }
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning {
        if Date() > deadline { kill(p.processIdentifier, SIGKILL); break }
        usleep(5000)
    }
    p.waitUntilExit()
    try out.close()
    try err.close()
    var status = p.terminationStatus
    if p.terminationReason == .uncaughtSignal { status = 128 + status }
    return ProcessResult(status: status, stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

import Foundation
import LevainSessionLog
import LevainSupervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A session's workspace with a policy's `workspace_size`: one ext4 image for
/// the session's life, mounted by each of its jails in turn.
@Suite("Workspace quota (sessions)", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct WorkspaceQuotaSessionTests {
    /// Loop devices that have `image` attached (losetup -j).
    func loops(_ image: String) -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/sbin/losetup")
        p.arguments = ["-j", image]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return [] }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0.prefix { $0 != ":" }) }
    }

    @Test("a session's 32M workspace: writing past it gets ENOSPC, the host gives at most the quota; its files survive a killed harness and a restart; one loop device at a time, none once the supervisor is gone")
    func sessionQuota() async throws {
        let sv = try TestSupervisor("wsquota")
        defer { sv.cleanUp() }
        try FileManager.default.createDirectory(atPath: sv.directory, withIntermediateDirectories: true)
        var text = try String(contentsOfFile: packageRoot + "/policies/default.toml", encoding: .utf8)
        text = text.replacingOccurrences(of: "name = \"default\"", with: "name = \"small-workspace\"")
        text = text.replacingOccurrences(of: "workspace_size = \"1G\"", with: "workspace_size = \"32M\"")
        let policy = sv.directory + "/small-workspace.toml"
        try text.write(toFile: policy, atomically: true, encoding: .utf8)
        try await sv.start()

        let session = try await sv.openSession(["policy": .string(policy)])
        let record = try #require(try await sv.request("GET", "/v1/sessions/\(session)").json)
        let image = try #require(record["workspace"]?.stringValue)
        #expect(image == sv.state + "/workspaces/\(session).img", "\(image)")

        // Attack: 256 MiB into a 32 MiB workspace.
        let (code, out, err, _) = try await runInSession(sv, session, ["/bin/sh", "-c", "head -c 256M /dev/zero > /workspace/big; echo status=$?; rm -f /workspace/big"])
        #expect(code == 0 && out.contains("status=1"), "\(code) \(out) \(err)")
        #expect(err.contains("No space left on device"), "\(err)")
        var st = stat()
        #expect(stat(image, &st) == 0 && st.st_size == 32 << 20)
        #expect(Int64(st.st_blocks) * 512 <= 32 << 20, "the image takes \(Int64(st.st_blocks) * 512) bytes")
        #expect(loops(image).count == 1, "the session's jail holds one loop device: \(loops(image))")

        // Control: 8 MiB fits, through a run and through the files API.
        let (okCode, okOut, okErr, _) = try await runInSession(sv, session, ["/bin/sh", "-c", "head -c 8M /dev/zero > /workspace/ok && wc -c < /workspace/ok"])
        #expect(okCode == 0 && okOut.trimmingCharacters(in: .whitespacesAndNewlines) == "8388608", "\(okCode) \(okOut) \(okErr)")
        let put = try await sv.raw("PUT", "/v1/sessions/\(session)/files/note.txt", body: Array("kept\n".utf8))
        #expect(put.status == 200 || put.status == 201, "\(put.status) \(put.text)")

        // The harness is killed: the next run reopens the session with a new
        // jail, which waits for the old one's loop device to go.
        let harness = try #require(harnessPIDs(session: session).first, "no harness")
        kill(harness, SIGKILL)
        var again: (Int, String, String, String) = (-1, "", "", "")
        for _ in 0..<20 {
            again = (try? await runInSession(sv, session, ["/bin/cat", "/workspace/note.txt"])) ?? (-1, "", "", "")
            if again.0 == 0 { break }
            _ = try? await sv.request("POST", "/v1/sessions/\(session)/reopen")
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        #expect(again.0 == 0 && again.1 == "kept\n", "\(again)")
        #expect(loops(image).count == 1, "one loop device after the reopen: \(loops(image))")

        // A restart: the files are still there.
        sv.stop(signal: SIGKILL)
        #expect(await eventually(within: 15) { loops(image).isEmpty }, "no loop device once the supervisor and its jails are gone: \(loops(image))")
        try await sv.start()
        let reopened = try await sv.request("POST", "/v1/sessions/\(session)/reopen")
        #expect(reopened.status == 200, "\(reopened.status) \(reopened.text)")
        let (afterCode, afterOut, afterErr, _) = try await runInSession(sv, session, ["/bin/sh", "-c", "cat /workspace/note.txt; wc -c < /workspace/ok"])
        #expect(afterCode == 0 && afterOut == "kept\n8388608\n", "\(afterCode) \(afterOut) \(afterErr)")
        let files = try await sv.request("GET", "/v1/sessions/\(session)/files/note.txt")
        #expect(files.status == 200 && files.text == "kept\n", "\(files.status) \(files.text)")
        #expect(loops(image).count == 1)
        sv.stop()
        #expect(await eventually(within: 15) { loops(image).isEmpty }, "\(loops(image))")
    }
}

import Foundation
import LevainSessionLog
import LevainSupervisor
import LevainTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Output streams", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct StreamTests {
    @Test("a run writing small pieces fast is not taken for a frame flood: the harness paces its DATA frames")
    func smallWritesFast() async throws {
        let sv = try await TestSupervisor.start("smallwrites")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        // head writes 8 KiB at a time and dd one byte at a time, far more
        // writes a second than the 10,000 frames a second the supervisor
        // allows would carry at one frame per write.
        let total = 400_000_000
        let bytes = 1_000_000
        let run = try await sv.startRun(s, ["argv": ["/bin/sh", "-c", .string("head -c \(total) /dev/zero; dd if=/dev/zero bs=1 count=\(bytes) status=none")]])
        let id = try #require(run["id"]?.stringValue)
        var count = 0
        var status = 0
        try await sv.client.stream("GET", "/v1/runs/\(id)/output/stdout", onHead: { st, _ in status = st }, onChunk: { chunk in
            guard status == 200 else { return false }
            count += chunk.count
            return true
        })
        let done = try await sv.wait(id)
        #expect(done["exit_status"]?.intValue == 0, "\(done)")
        #expect(done["error"] == nil || done["error"] == .null)
        #expect(count == total + bytes)
        let violations = try await sv.events(session: s).filter { $0.objectValue?["type"]?.stringValue == "protocol.violation" }
        #expect(violations.isEmpty)
    }

    @Test("100 MB of stdout arrives intact while the client reads slowly; the supervisor's memory stays bounded")
    func largeOutputSlowReader() async throws {
        let sv = try await TestSupervisor.start("bigout")
        defer { sv.cleanUp() }
        let s = try await sv.openSession()
        let total = 100_000_000
        // The run streams random bytes and prints their SHA-256 on stderr.
        let program = """
            import hashlib, os, sys
            h = hashlib.sha256(); left = \(total)
            while left:
                b = os.urandom(min(left, 1 << 20)); h.update(b); sys.stdout.buffer.write(b); left -= len(b)
            sys.stdout.flush(); sys.stderr.write(h.hexdigest())
            """
        let run = try await sv.startRun(s, ["argv": ["python3", "-c", .string(program)]])
        let id = try #require(run["id"]?.stringValue)
        let baseline = residentKiB(sv.pid)
        let received = sv.directory + "/received"
        FileManager.default.createFile(atPath: received, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: received))
        let client = sv.client
        let pid = sv.pid
        let peak = ResultBox<Int>()
        peak.set(.success(baseline))
        // About 25 MB/s: slower than the run writes.
        let count = try await {
            var n = 0
            var status = 0
            try await client.stream("GET", "/v1/runs/\(id)/output/stdout", onHead: { st, _ in status = st }, onChunk: { chunk in
                guard status == 200 else { return false }
                out.write(Data(chunk))
                n += chunk.count
                try await Task.sleep(nanoseconds: UInt64(chunk.count) * 40)
                if n % (8 << 20) < chunk.count { peak.set(.success(max(try peak.get(), residentKiB(pid)))) }
                return true
            })
            return n
        }()
        try out.close()
        let done = try await sv.wait(id)
        #expect(done["exit_status"]?.intValue == 0)
        #expect(count == total)
        let expected = try await sv.output(id, "stderr")
        let sum = try runProcess(["/usr/bin/sha256sum", received])
        #expect(sum.stdout.split(separator: " ").first.map(String.init) == expected, "checksum")
        // Bounded: the stream goes through a window and a spool file, never
        // whole into memory (100 MB would show).
        let growth = try peak.get() - baseline
        #expect(growth < 48 * 1024, "supervisor RSS grew by \(growth) KiB while streaming 100 MB")
    }
}

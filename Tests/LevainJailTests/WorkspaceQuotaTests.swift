import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The workspace's size, enforced by the kernel: an ext4 image of the
/// policy's `workspace_size`, loop-mounted inside the jail.
@Suite("Workspace quota (one-shot)", .enabled(if: runningAsRoot, "needs root"), .serialized)
struct WorkspaceQuotaTests {
    /// Free bytes of the filesystem that holds `path`.
    func freeBytes(_ path: String) -> Int64 {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return -1 }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }

    /// Bytes the file takes on the host's disk (not its apparent size).
    func allocatedBytes(_ path: String) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return -1 }
        return Int64(st.st_blocks) * 512
    }

    @Test("a run that writes 256 MiB into a 32M workspace gets ENOSPC; the host gives at most the quota; no loop device stays; 8 MiB fits (control)")
    func writingPastTheQuota() throws {
        let quota: Int64 = 32 << 20
        let before = freeBytes(testState)
        let r = try jail(["/bin/sh", "-c", "head -c 256M /dev/zero > /workspace/big; echo status=$?; df -k /workspace | tail -1"],
                         ["--workspace-size", "32M"])
        let after = freeBytes(testState)
        #expect(r.stderr.contains("No space left on device"), "\(r)")
        #expect(r.stdout.contains("status=1"), "\(r)")
        #expect(r.reportValue("limits.workspace_bytes") as? Int == Int(quota))
        let image = try #require(r.reportValue("workspace") as? String)
        #expect(image.hasSuffix(".img"))
        // The image's apparent size is the quota; what it takes is less.
        var st = stat()
        #expect(stat(image, &st) == 0 && Int64(st.st_size) == quota)
        #expect(allocatedBytes(image) <= quota, "the image takes \(allocatedBytes(image)) bytes of the host's disk")
        // The host's free space went down by at most the quota (other tests
        // may write meanwhile: the bound is loose, but far below 256 MiB).
        #expect(before - after < 2 * quota, "the host lost \((before - after) >> 20) MiB to a 32 MiB workspace")
        #expect(loopDevices(attachedTo: image).isEmpty, "\(loopDevices(attachedTo: image))")
        unlink(image)

        // Control: a write within the quota works, and is in the image.
        let control = try jail(["/bin/sh", "-c", "head -c 8M /dev/zero > /workspace/ok && wc -c < /workspace/ok"],
                               ["--workspace-size", "32M"])
        #expect(control.status == 0, "\(control)")
        #expect(control.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "8388608", "\(control)")
        if let ws = control.reportValue("workspace") as? String {
            #expect(loopDevices(attachedTo: ws).isEmpty)
            unlink(ws)
        }
    }

    @Test("/workspace is an ext4 mount of the image inside the jail, nosuid and nodev; the host's mount table does not have it")
    func theMountIsTheJails() throws {
        let r = try jail(["/bin/sh", "-c", "grep ' /workspace ' /proc/self/mounts"], ["--workspace-size", "64M"])
        #expect(r.status == 0, "\(r)")
        let line = r.stdout
        #expect(line.contains(" ext4 ") && line.contains("nosuid") && line.contains("nodev"), "\(line)")
        let ws = try #require(r.reportValue("workspace") as? String)
        let hostMounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        #expect(!hostMounts.contains(ws) && !hostMounts.contains(String(ws.dropLast(4))), "the host sees no workspace mount")
        // Control: off gives the host directory, bound (no ext4 of its own).
        let off = try jail(["/bin/sh", "-c", "grep ' /workspace ' /proc/self/mounts"], ["--workspace-size", "off"])
        #expect(off.status == 0 && !off.stdout.contains("/dev/loop"), "\(off)")
        unlink(ws)
    }

    @Test("bad --workspace-size values and a bad workspace_size in a policy file are refused naming the option, or the file, line and key")
    func badValues() throws {
        for value in ["1K", "lots", "0", "17T"] {
            let r = try jail(["/bin/true"], ["--workspace-size", value])
            #expect(r.status == 125, "\(value): \(r)")
            #expect(r.stderr.contains("--workspace-size \(value)"), "\(value): \(r)")
        }
        let path = "\(testState)/bad-workspace-\(getpid()).toml"
        defer { unlink(path) }
        let base = try String(contentsOfFile: packageRoot + "/policies/default.toml", encoding: .utf8)
        let line = base.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix("workspace_size") }.map { $0 + 1 }
        let lineNumber = try #require(line, "policies/default.toml sets workspace_size")
        try base.replacingOccurrences(of: "workspace_size = \"1G\"", with: "workspace_size = \"4K\"").write(toFile: path, atomically: true, encoding: .utf8)
        let r = try jail(["/bin/true"], ["--policy", path])
        #expect(r.status == 125, "\(r)")
        #expect(r.stderr.contains("\(path):\(lineNumber): filesystem.workspace_size"), "\(r)")
        // Control: a good value in the same place works.
        try base.replacingOccurrences(of: "workspace_size = \"1G\"", with: "workspace_size = \"16M\"").write(toFile: path, atomically: true, encoding: .utf8)
        let good = try jail(["/bin/true"], ["--policy", path])
        #expect(good.status == 0, "\(good)")
        #expect(good.reportValue("limits.workspace_bytes") as? Int == 16 << 20)
        if let ws = good.reportValue("workspace") as? String { unlink(ws) }
    }
}

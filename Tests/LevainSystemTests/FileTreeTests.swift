import Foundation
import Testing
@testable import LevainSystem

/// FileTree.remove: what a jail wrote into a host directory goes; what its
/// links point at outside does not.
@Suite struct FileTreeTests {
    @Test("a nested tree goes; a link's target outside it stays; a name that is not UTF-8 goes too")
    func removesTreeNotLinkTargets() throws {
        let base = "/tmp/levain-filetree-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        let tree = base + "/tree", outside = base + "/outside"
        try FileManager.default.createDirectory(atPath: tree + "/a/b/c", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        try "keep".write(toFile: outside + "/keep.txt", atomically: true, encoding: .utf8)
        for i in 0..<50 { try "x".write(toFile: tree + "/a/b/f\(i)", atomically: false, encoding: .utf8) }
        try "deep".write(toFile: tree + "/a/b/c/deep", atomically: false, encoding: .utf8)
        // Links to a directory and a file outside: removed, never followed.
        #expect(symlink(outside, tree + "/a/dirlink") == 0)
        #expect(symlink(outside + "/keep.txt", tree + "/filelink") == 0)
        // A name of bytes that do not decode as UTF-8.
        let raw: [UInt8] = Array((tree + "/").utf8) + [0x66, 0xff, 0xfe, 0x00]
        let fd = raw.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_CREAT | O_WRONLY, 0o600) }
        #expect(fd >= 0)
        close(fd)

        #expect(FileTree.remove(tree))
        #expect(!FileManager.default.fileExists(atPath: tree))
        // Control: what the links pointed at is untouched.
        #expect((try? String(contentsOfFile: outside + "/keep.txt", encoding: .utf8)) == "keep")
        // A missing path counts as removed; a plain file is unlinked.
        #expect(FileTree.remove(tree))
        #expect(FileTree.remove(outside + "/keep.txt"))
        #expect(!FileManager.default.fileExists(atPath: outside + "/keep.txt"))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainSystem
import Testing

/// A helper program the supervisor starts (mkfs.ext4 for a workspace image)
/// gets none of the supervisor's descriptors: a socket NIO made without
/// close-on-exec, inherited by a child, kept a client's connection open
/// after the client closed it (an egress test saw its record never come).
@Suite struct QuietProcessTests {
    @Test("a helper program sees only its stdio, whatever the supervisor holds without close-on-exec")
    func noInheritedDescriptors() throws {
        // Control: a descriptor of ours that exec would pass on.
        let leaky = open("/dev/null", O_RDONLY)
        #expect(leaky > 2)
        defer { close(leaky) }
        #expect(fcntl(leaky, F_GETFD) & FD_CLOEXEC == 0)
        let output = "/tmp/levain-quiet-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        // ls opens /proc/self/fd itself (as 3): 0, 1, 2 and that one, nothing else.
        let (status, text) = QuietProcess.run(["/bin/ls", "/proc/self/fd"], outputPath: output)
        #expect(status == 0, "\(text)")
        let fds = Set(text.split(separator: ";").compactMap { Int($0.filter { !$0.isWhitespace }) })
        #expect(fds.isSuperset(of: [0, 1, 2]), "\(text)")
        #expect(fds.isSubset(of: [0, 1, 2, 3]), "inherited: \(fds.subtracting([0, 1, 2, 3]).sorted()) (\(text))")
        #expect(!fds.contains(Int(leaky)))
        #expect(access(output, F_OK) != 0)
    }

    @Test("its exit status and output come back; a program that is not there is an error, not a hang")
    func statusAndOutput() {
        let output = "/tmp/levain-quiet-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let (status, text) = QuietProcess.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], outputPath: output)
        #expect(status == 3)
        #expect(text == "out; err")
        let (missing, message) = QuietProcess.run(["/nonexistent/program"], outputPath: output)
        #expect(missing == -1 && message.contains("cannot start"))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn

/// A helper program the supervisor runs on the host (mkfs.ext4 for a
/// workspace image), with nothing of the supervisor's open in it.
public enum QuietProcess {
    /// Runs a program with no input and no descriptor of ours but its
    /// output: both streams, the first 4 KiB, through a file at
    /// `outputPath` (no pipe another thread's fork could inherit), returned
    /// with its exit status (128 + the signal for a killed program).
    public static func run(_ argv: [String], outputPath: String) -> (Int32, String) {
        unlink(outputPath)
        let out = open(outputPath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard out >= 0 else { return (-1, "cannot create \(outputPath): \(String(cString: strerror(errno)))") }
        defer { close(out); unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out, 1)
        posix_spawn_file_actions_adddup2(&actions, out, 2)
        // Nothing else of ours: NIO makes its sockets without close-on-exec,
        // and a program that held a copy of a client's socket would keep
        // that connection open after the client closed it.
        let closing = Self.closeInherited(&actions)
        guard closing == 0 else { return (-1, "cannot start \(argv[0]) without our descriptors: \(String(cString: strerror(closing)))") }
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, argv[0], &actions, nil, cArgs, env)
        guard r == 0 else { return (-1, "cannot start \(argv[0]): \(String(cString: strerror(r)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = pread(out, &buffer, buffer.count, 0)
        let text = String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self).split(whereSeparator: \.isNewline).joined(separator: "; ")
        return (exit, text)
    }

    /// Adds "close every descriptor from 3 up" to a spawn's file actions
    /// (after its stdio actions): 0, or the error number (then the program
    /// must not be started, it would inherit them).
    public static func closeInherited(_ actions: inout posix_spawn_file_actions_t) -> Int32 {
        lv_spawn_actions_closefrom(&actions, 3)
    }
}

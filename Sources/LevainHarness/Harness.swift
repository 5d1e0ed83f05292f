#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
import LevainClock
import LevainProtocol

/// levain-harness: PID 1 of a session's jail. It speaks docs/PROTOCOL.md on
/// fd 3, takes cgroup descriptors on fd 4, starts each run's process as the
/// jail user, streams its stdio within the supervisor's credit, serves file
/// operations in /workspace, reaps everything and reports exits.
///
/// One thread and a poll loop: no frameworks, fast to start, nothing to
/// share. Everything the supervisor sends is checked by
/// HarnessConnectionState; a violation ends the harness (and the session).
public final class Harness {
    static let protocolFD: Int32 = 3
    static let descriptorFD: Int32 = 4
    static let version = "levain-harness 0.2.0"

    struct RunProcess {
        var id: LevainProtocol.RunID
        var pid: pid_t
        var stdout: StreamID
        var stderr: StreamID
        var stdin: StreamID?
        var stdoutFD: Int32
        var stderrFD: Int32
        var stdinFD: Int32
        var stdinQueue: [UInt8] = []
        var stdinEnded = false
        /// A terminal run: stdoutFD is the terminal's master.
        var pty = false
    }

    struct FileReadJob {
        var requestID: UInt64
        var fd: Int32
        var stream: StreamID
        var size: UInt64
        var sent: UInt64 = 0
    }

    struct FileWriteJob {
        var requestID: UInt64
        var pending: PendingWrite
        var maxBytes: UInt64
        /// The exact size announced, if any: anything else is not committed.
        var size: UInt64?
        var failed: WorkspaceFiles.Failure?
    }

    private var decoder = FrameDecoder()
    var state = HarnessConnectionState()
    private var outbox: [UInt8] = []
    private var outboxStart = 0
    private var runs: [LevainProtocol.RunID: RunProcess] = [:]
    private var runByPID: [pid_t: LevainProtocol.RunID] = [:]
    /// Descriptors that arrived on fd 4 for runs whose run.start has not
    /// been handled yet, oldest first. The supervisor sends them before the
    /// run.start frame, but two runs' frames may reach us in the other
    /// order than their descriptors; kept, not discarded, and bounded.
    private var arrivedDescriptors: [(run: String, fds: [Int32])] = []
    var reads: [StreamID: FileReadJob] = [:]
    var writes: [StreamID: FileWriteJob] = [:]
    private let signalFD: Int32
    var files: WorkspaceFiles?
    /// The jail's /tmp, for file operations on absolute /tmp paths (version 2).
    var tmpFiles: WorkspaceFiles?
    private let runUID: UInt32
    private let runGID: UInt32
    private let capsEmpty: UnsafeMutableRawPointer?
    var maxChunk = 16 * 1024
    /// Output read from runs goes through this buffer (one allocation).
    private var readBuffer = [UInt8](repeating: 0, count: 16 * 1024)
    /// Unsent protocol bytes the harness holds at most before it stops
    /// reading its runs' output (the supervisor's credit bounds it too).
    private static let outboxLimit = 2 << 20
    /// DATA frames of run output per second, at most (with a burst of a
    /// tenth of it). The supervisor ends a session whose harness sends more
    /// than ProtocolLimits.maxFramesPerSecond frames a second; a program
    /// writing small pieces fast would otherwise make one frame per piece.
    /// Paced, the pipe fills while the harness waits and the next read takes
    /// a bigger piece: fewer frames, more bytes per second.
    static let dataFramesPerSecond = 4000.0
    private var dataTokens = Harness.dataFramesPerSecond / 10
    private var tokensRefilledAt = Monotonic.nanos()

    public init() {
        var sigs: [Int32] = [SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE]
        signalFD = sigs.withUnsafeMutableBufferPointer { lv_block_signals_fd($0.baseAddress, $0.count) }
        // Drained until EAGAIN after each poll wake-up: it must not block.
        _ = fcntl(signalFD, F_SETFL, fcntl(signalFD, F_GETFL) | O_NONBLOCK)
        runUID = getenv("LEVAIN_RUN_UID").flatMap { UInt32(String(cString: $0)) } ?? 1000
        runGID = getenv("LEVAIN_RUN_GID").flatMap { UInt32(String(cString: $0)) } ?? 1000
        capsEmpty = lv_caps_empty()
        files = try? WorkspaceFiles(uid: runUID, gid: runGID)
        tmpFiles = try? WorkspaceFiles(path: "/tmp", uid: runUID, gid: runGID)
        // Nobody in the jail may trace or read the harness.
        _ = prctl_set_dumpable_zero()
        _ = fcntl(Self.protocolFD, F_SETFL, fcntl(Self.protocolFD, F_GETFL) | O_NONBLOCK)
        _ = fcntl(Self.descriptorFD, F_SETFL, fcntl(Self.descriptorFD, F_GETFL) | O_NONBLOCK)
        _ = fcntl(Self.protocolFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(Self.descriptorFD, F_SETFD, FD_CLOEXEC)
    }

    public func run() -> Never {
        // HELLO opens the connection; the state machine starts by awaiting
        // WELCOME, so it goes out without willSend.
        MessageCodec.encode(.hello(Hello(harness: Self.version, pid: getpid())), into: &outbox)
        while true {
            flush()
            var fds: [pollfd] = []
            var kinds: [PollKind] = []
            func watch(_ fd: Int32, _ events: Int32, _ kind: PollKind) {
                fds.append(pollfd(fd: fd, events: Int16(events), revents: 0))
                kinds.append(kind)
            }
            watch(Self.protocolFD, POLLIN | (pendingOutput > 0 ? POLLOUT : 0), .socket)
            watch(signalFD, POLLIN, .signals)
            refillDataTokens()
            let roomForOutput = pendingOutput < Self.outboxLimit && dataTokens >= 1
            for (id, r) in runs {
                if r.stdoutFD >= 0 && roomForOutput && (state.credit(forOutbound: r.stdout) ?? 0) > 0 {
                    watch(r.stdoutFD, POLLIN, .output(id, r.stdout))
                }
                if r.stderrFD >= 0 && roomForOutput && (state.credit(forOutbound: r.stderr) ?? 0) > 0 {
                    watch(r.stderrFD, POLLIN, .output(id, r.stderr))
                }
                if r.stdinFD >= 0 && !r.stdinQueue.isEmpty {
                    watch(r.stdinFD, POLLOUT, .input(id))
                }
            }
            // File reads need no poll: regular files are always readable.
            let pumping = !reads.isEmpty && pendingOutput < Self.outboxLimit
                && reads.values.contains { (state.credit(forOutbound: $0.stream) ?? 0) > 0 }
            // Out of DATA tokens with output to read: sleep until one is
            // back (a fraction of a millisecond), then look at everything.
            let paced = dataTokens < 1 && runs.values.contains { $0.stdoutFD >= 0 || $0.stderrFD >= 0 }
            if paced {
                var ts = timespec(tv_sec: 0, tv_nsec: Int((1 - dataTokens) / Self.dataFramesPerSecond * 1e9) + 1000)
                nanosleep(&ts, nil)
            }
            let r = poll(&fds, nfds_t(fds.count), pumping || paced ? 0 : -1)
            if r < 0 && errno != EINTR { fatal("poll: \(String(cString: strerror(errno)))") }
            if pumping { pumpFileReads() }
            if r <= 0 { continue }
            for (i, p) in fds.enumerated() where p.revents != 0 {
                switch kinds[i] {
                case .socket:
                    if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readSocket() }
                case .signals:
                    handleSignals()
                case .output(let id, let stream):
                    pumpOutput(id, stream)
                case .input(let id):
                    drainStdin(id)
                }
            }
        }
    }

    private func refillDataTokens() {
        let now = Monotonic.nanos()
        let burst = Self.dataFramesPerSecond / 10
        dataTokens = min(burst, dataTokens + Double(now &- tokensRefilledAt) * Self.dataFramesPerSecond / 1e9)
        tokensRefilledAt = now
    }

    enum PollKind {
        case socket
        case signals
        case output(LevainProtocol.RunID, StreamID)
        case input(LevainProtocol.RunID)
    }

    // MARK: the socket

    private var pendingOutput: Int { outbox.count - outboxStart }

    func send(_ message: Message) {
        do {
            try state.willSend(message)
        } catch {
            // A bug of ours, not the supervisor's: say so and stop.
            fatal("refusing to send \(message.frameType): \(error)")
        }
        MessageCodec.encode(message, into: &outbox)
    }

    func flush() {
        while pendingOutput > 0 {
            let n = outbox.withUnsafeBytes { write(Self.protocolFD, $0.baseAddress! + outboxStart, pendingOutput) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { break }
                exit(0)  // the supervisor is gone
            }
            outboxStart += n
        }
        if outboxStart > 0 && (outboxStart == outbox.count || outboxStart > 1 << 20) {
            outbox.removeFirst(outboxStart)
            outboxStart = 0
        }
    }

    private func readSocket() {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(Self.protocolFD, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return }
                exit(0)
            }
            if n == 0 { exit(0) }  // the supervisor closed the session
            buf.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            while true {
                let frame: Frame?
                do { frame = try decoder.next() } catch { fatal("from the supervisor: \(error)") }
                guard let frame else { break }
                let message: Message
                let action: HarnessConnectionState.Action?
                do {
                    message = try MessageCodec.decode(frame, sentBy: .supervisor)
                    action = try state.receive(message)
                } catch {
                    fatal("from the supervisor: \(error)")
                }
                if let action { handle(action) }
            }
        }
    }

    private func handle(_ action: HarnessConnectionState.Action) {
        switch action {
        case .established(let welcome):
            decoder.maxFrame = welcome.maxFrame
            // Chunks of at most a quarter of the window keep several DATA
            // frames in flight while credit comes back (one frame of the
            // whole window would make every frame wait for a WINDOW).
            maxChunk = max(1024, min(welcome.maxFrame - 16, Int(welcome.window) / 4, 256 << 10))
            readBuffer = [UInt8](repeating: 0, count: maxChunk)
        case .deliverRequest(let request):
            handle(request)
        case .deliverData(let stream, let bytes):
            if let id = runs.first(where: { $0.value.stdin == stream })?.key {
                runs[id]?.stdinQueue.append(contentsOf: bytes)
                drainStdin(id)
            } else if writes[stream] != nil {
                writeFileData(stream, bytes)
            }
        case .endOfStream(let stream):
            if let id = runs.first(where: { $0.value.stdin == stream })?.key {
                runs[id]?.stdinEnded = true
                drainStdin(id)
            } else if writes[stream] != nil {
                finishFileWrite(stream)
            }
        case .creditAvailable:
            break  // the poll loop reads state.credit
        case .sendPong(let nonce):
            send(.pong(nonce: nonce))
        }
    }

    // MARK: requests

    private func handle(_ request: Request) {
        switch request.operation {
        case .runStart(let start):
            startRun(request.id, start)
        case .runSignal(let sig):
            if let r = runs[sig.run] {
                _ = kill(-r.pid, sig.signal)
                send(.response(.success(id: request.id)))
            } else {
                send(.response(.failure(id: request.id, code: "ESRCH", message: "run \(sig.run) has no live process")))
            }
        case .runResize(let resize):
            guard let r = runs[resize.run], r.stdoutFD >= 0 else {
                send(.response(.failure(id: request.id, code: "ESRCH", message: "run \(resize.run) has no live terminal")))
                return
            }
            guard r.pty else {
                send(.response(.failure(id: request.id, code: "ENOTTY", message: "run \(resize.run) has no terminal (it was not started with one)")))
                return
            }
            if lv_pty_resize(r.stdoutFD, UInt16(resize.size.rows), UInt16(resize.size.cols)) == 0 {
                send(.response(.success(id: request.id)))
            } else {
                let e = errno
                send(.response(.failure(id: request.id, code: errnoName(e), message: "resize: \(String(cString: strerror(e)))")))
            }
        case .fileRead, .fileWrite, .fileList, .fileStat, .fileDelete, .fileMkdir, .fileRename:
            handleFile(request)
        }
    }

    // MARK: runs

    private func startRun(_ requestID: UInt64, _ start: RunStart) {
        var cgroupFDs: [Int32] = []
        if start.cgroup {
            cgroupFDs = receiveDescriptors(for: start.run)
            guard !cgroupFDs.isEmpty else {
                send(.response(.failure(id: requestID, code: "EBADF", message: "no cgroup descriptor arrived for \(start.run)")))
                return
            }
        }
        defer { for fd in cgroupFDs { close(fd) } }

        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1], inPipe: [Int32] = [-1, -1]
        // The run's ends: [read side for the harness, the child's side].
        if let size = start.pty {
            // A terminal: the child gets the slave as stdin, stdout and
            // stderr; the harness reads and types on the master (stdout's
            // read side; stdin's write side a duplicate of it).
            var master: Int32 = -1, slave: Int32 = -1
            guard lv_pty_open(UInt16(size.rows), UInt16(size.cols), &master, &slave) == 0 else {
                let e = errno
                send(.response(.failure(id: requestID, code: errnoName(e), message: "a terminal for the run: \(String(cString: strerror(e)))")))
                return
            }
            let input = start.stdin == nil ? -1 : fcntl(master, F_DUPFD_CLOEXEC, 3)
            outPipe = [master, slave]
            errPipe = [-1, slave]
            inPipe = [slave, input]
        } else {
            guard pipe2_cloexec(&outPipe), pipe2_cloexec(&errPipe), start.stdin == nil || pipe2_cloexec(&inPipe) else {
                let e = errno
                for fd in outPipe + errPipe + inPipe where fd >= 0 { close(fd) }
                send(.response(.failure(id: requestID, code: errnoName(e), message: "pipe: \(String(cString: strerror(e)))")))
                return
            }
        }

        let path = start.env.first(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        var limits: [lv_rlimit] = []
        func add(_ resource: __rlimit_resource, _ l: ResourceLimit?) {
            guard let l else { return }
            let inf = UInt64.max  // RLIM_INFINITY
            limits.append(lv_rlimit(resource: Int32(resource.rawValue), soft: l.soft ?? inf, hard: l.hard ?? inf))
        }
        add(RLIMIT_CPU, start.rlimits.cpu)
        add(RLIMIT_FSIZE, start.rlimits.fsize)
        add(RLIMIT_NOFILE, start.rlimits.nofile)
        add(RLIMIT_CORE, start.rlimits.core)
        add(RLIMIT_STACK, start.rlimits.stack)

        var pid: pid_t = -1
        var err = lv_error_record()
        let rc = withCStrings(start.argv) { argv in
            withCStrings(start.env) { envp in
                path.withCString { searchPath in
                    start.cwd.withCString { cwd in
                        cgroupFDs.withUnsafeBufferPointer { cg in
                            limits.withUnsafeBufferPointer { rl in
                                var spec = lv_run_spec(
                                    argv: argv, envp: envp, search_path: searchPath, cwd: cwd,
                                    stdin_fd: inPipe[0], stdout_fd: outPipe[1], stderr_fd: errPipe[1],
                                    cgroup_fds: cg.baseAddress, cgroup_fd_count: cg.count,
                                    uid: runUID, gid: runGID, rlimits: rl.baseAddress, rlimit_count: rl.count,
                                    caps_empty: capsEmpty, controlling_tty: start.pty == nil ? 0 : 1)
                                return lv_run_spawn(&spec, &pid, &err)
                            }
                        }
                    }
                }
            }
        }
        // The child's ends (a terminal's slave once: the three are one fd).
        for fd in Set([outPipe[1], errPipe[1], inPipe[0]]) where fd >= 0 { close(fd) }

        if rc != 0 {
            // No process to stream from (a failed exec exits 126/127 and is reaped).
            for fd in [outPipe[0], errPipe[0], inPipe[1]] where fd >= 0 { close(fd) }
            // exec: the errno's name (ENOENT: 127, EACCES: 126); a working
            // directory that cannot be entered: EBADCWD; anything else is
            // the harness's setup failing: ESETUP (step number in the message).
            let reason = String(cString: strerror(err.err))
            let (code, message): (String, String)
            switch err.step {
            case LV_STEP_EXEC.rawValue: (code, message) = (errnoName(err.err), "\(start.argv[0]): \(reason)")
            case LV_STEP_CHDIR.rawValue: (code, message) = ("EBADCWD", "cwd \(start.cwd): \(reason)")
            default: (code, message) = ("ESETUP", "starting the run failed at step \(err.step): \(errnoName(err.err)): \(reason)")
            }
            send(.response(.failure(id: requestID, code: code, message: message)))
            if pid > 0 { runByPID[pid] = nil }
            return
        }
        for fd in [outPipe[0], errPipe[0], inPipe[1]] where fd >= 0 {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        // A 1 MiB stdout pipe (the default 64 KiB makes bulk output a
        // read per 64 KiB). Best effort: pipe-max-size or the user's pipe
        // quota may refuse it.
        if start.pty == nil { _ = fcntl(outPipe[0], 1031 /* F_SETPIPE_SZ */, 1 << 20) }
        runs[start.run] = RunProcess(id: start.run, pid: pid, stdout: start.stdout, stderr: start.stderr, stdin: start.stdin,
                                     stdoutFD: outPipe[0], stderrFD: errPipe[0], stdinFD: inPipe[1], pty: start.pty != nil)
        runByPID[pid] = start.run
        send(.response(Response(id: requestID, ok: true, pid: pid)))
        // A terminal run writes everything on stdout: its stderr ends now.
        if start.pty != nil { send(.data(stream: start.stderr, bytes: [])) }
    }

    /// The descriptors the supervisor sent on fd 4 for this run: those
    /// already set aside, else what is queued on the socket, setting aside
    /// other runs' (at most a session's live runs; beyond that the oldest
    /// are closed: the supervisor never has more run.starts in flight).
    private func receiveDescriptors(for run: LevainProtocol.RunID) -> [Int32] {
        let wanted = run.description
        if let i = arrivedDescriptors.firstIndex(where: { $0.run == wanted }) {
            return arrivedDescriptors.remove(at: i).fds
        }
        // Each message is one run's: a bounded number of reads.
        for _ in 0..<(2 * ProtocolLimits.maxRunsPerSession) {
            var fds = [Int32](repeating: -1, count: 8)
            var name = [CChar](repeating: 0, count: 64)
            let n = fds.withUnsafeMutableBufferPointer { f in
                name.withUnsafeMutableBufferPointer { b in
                    lv_recv_descriptors(Self.descriptorFD, b.baseAddress, b.count, f.baseAddress, f.count)
                }
            }
            if n < 0 { return [] }
            let got = fds.filter { $0 >= 0 }
            let label = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if label == wanted { return got }
            arrivedDescriptors.append((label, got))
            while arrivedDescriptors.count > ProtocolLimits.maxRunsPerSession {
                for fd in arrivedDescriptors.removeFirst().fds { close(fd) }
            }
        }
        return []
    }

    private func pumpOutput(_ id: LevainProtocol.RunID, _ stream: StreamID) {
        guard var r = runs[id] else { return }
        let isOut = stream == r.stdout
        let fd = isOut ? r.stdoutFD : r.stderrFD
        guard fd >= 0 else { return }
        // Read while there is credit, room in the outbox, and data.
        while pendingOutput < Self.outboxLimit {
            let credit = Int(state.credit(forOutbound: stream) ?? 0)
            guard credit > 0 else { return }
            guard dataTokens >= 1 else { return }
            let want = min(credit, maxChunk, readBuffer.count)
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return }
            if n > 0 {
                // A short read ends this wake-up; full ones go on while
                // tokens last. Out of tokens, the loop sleeps and the pipe
                // fills meanwhile.
                dataTokens -= 1
                // Straight into the outbox: header, stream id, bytes.
                do {
                    try state.willSendData(stream: stream, count: n)
                } catch {
                    fatal("refusing to send DATA: \(error)")
                }
                FrameEncoder.appendHeader(type: .data, bodyCount: 4 + n, into: &outbox)
                outbox.append(UInt8(truncatingIfNeeded: stream >> 24))
                outbox.append(UInt8(truncatingIfNeeded: stream >> 16))
                outbox.append(UInt8(truncatingIfNeeded: stream >> 8))
                outbox.append(UInt8(truncatingIfNeeded: stream))
                readBuffer.withUnsafeBytes { outbox.append(contentsOf: $0[0..<n]) }
                if n < want { return }  // drained for now
                continue
            }
            // EOF (or an error): the stream ends.
            close(fd)
            if isOut { r.stdoutFD = -1 } else { r.stderrFD = -1 }
            runs[id] = r
            send(.data(stream: stream, bytes: []))
            retireIfDone(id)
            return
        }
    }

    private func drainStdin(_ id: LevainProtocol.RunID) {
        guard var r = runs[id], r.stdinFD >= 0, let stream = r.stdin else { return }
        while !r.stdinQueue.isEmpty {
            let n = r.stdinQueue.withUnsafeBytes { write(r.stdinFD, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { break }
                // The process closed its stdin: drop the rest.
                let dropped = r.stdinQueue.count
                r.stdinQueue = []
                if let w = state.consumed(stream: stream, bytes: dropped) { send(w) }
                close(r.stdinFD)
                r.stdinFD = -1
                state.abandonInbound(stream: stream)
                break
            }
            r.stdinQueue.removeFirst(n)
            if let w = state.consumed(stream: stream, bytes: n) { send(w) }
        }
        if r.stdinFD >= 0 && r.stdinEnded && r.stdinQueue.isEmpty {
            close(r.stdinFD)
            r.stdinFD = -1
        }
        runs[id] = r
    }

    private func handleSignals() {
        while true {
            let sig = lv_read_signal(signalFD)
            if sig <= 0 { break }
            if sig != SIGCHLD { continue }  // SIGTERM and friends: the supervisor decides, not the jail
        }
        reap()
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            var ru = rusage()
            let pid = wait4(-1, &status, WNOHANG | __WALL, &ru)
            if pid <= 0 { break }
            guard let id = runByPID.removeValue(forKey: pid) else { continue }
            let exited = (status & 0x7f) == 0
            let event = ProcessExited(
                run: id, pid: pid,
                code: exited ? (status >> 8) & 0xff : nil,
                signal: exited ? nil : status & 0x7f,
                userMicros: UInt64(ru.ru_utime.tv_sec) * 1_000_000 + UInt64(ru.ru_utime.tv_usec),
                systemMicros: UInt64(ru.ru_stime.tv_sec) * 1_000_000 + UInt64(ru.ru_stime.tv_usec),
                maxRSSKilobytes: UInt64(max(0, ru.ru_maxrss)))
            // Its output streams end when every writer closed them (the
            // supervisor kills what the run left behind).
            send(.event(.processExited(event)))
            if var r = runs[id] {
                if r.stdinFD >= 0 { close(r.stdinFD); r.stdinFD = -1 }
                r.stdinQueue = []
                if let s = r.stdin { state.abandonInbound(stream: s) }
                runs[id] = r
            }
            retireIfDone(id)
        }
    }

    private func retireIfDone(_ id: LevainProtocol.RunID) {
        guard let r = runs[id], r.stdoutFD < 0, r.stderrFD < 0, runByPID[r.pid] == nil else { return }
        runs[id] = nil
    }
}

// MARK: small helpers

private func pipe2_cloexec(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}

private func prctl_set_dumpable_zero() -> Int32 { lv_set_dumpable(0) }

/// A NULL-terminated char* array for the duration of `body`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import LevainAPI
import LevainClock
import LevainSessionLog
import Synchronization

/// How a run's process ended, as the harness reported it.
public struct ProcessOutcome: Sendable, Equatable {
    public var code: Int32?
    public var signal: Int32?
    public var userMicros: UInt64
    public var systemMicros: UInt64
    public var maxRSSKilobytes: UInt64

    public init(code: Int32?, signal: Int32?, userMicros: UInt64, systemMicros: UInt64, maxRSSKilobytes: UInt64) {
        self.code = code
        self.signal = signal
        self.userMicros = userMicros
        self.systemMicros = systemMicros
        self.maxRSSKilobytes = maxRSSKilobytes
    }
}

/// A run the supervisor knows in memory: its record, its output, and the
/// waiters for its end. Shared between the API, the run's task and its
/// session, so its state sits behind a mutex.
public final class RunState: Sendable {
    public let id: String
    public let sessionID: String
    public let tenant: String
    public let spec: RunSpec
    /// The tool call that submitted the run (an `exec` tool's run), taken
    /// from the submitting task: what the run's audited system calls name.
    public let toolCall: String?
    public let stdout: OutputSpool
    public let stderr: OutputSpool

    struct Mutable {
        var record: RunRecord
        var waiters: [Int: CheckedContinuation<RunRecord, Never>] = [:]
        var nextWaiter = 0
        var cancelRequested = false
        var cancelHandler: (@Sendable () -> Void)?
        var stdinSink: (@Sendable ([UInt8]?) async throws -> Void)?
        var stdinWaiters: [CheckedContinuation<Void, Never>] = []
        /// One upload per run: the first PUT takes the sink.
        var stdinClaimed = false
        var marks: [(String, UInt64)] = []
    }

    private let state: Mutex<Mutable>

    /// LEVAIN_TIMINGS=1: each run's phases, printed on stderr at its end.
    public static let tracing = getenv("LEVAIN_TIMINGS") != nil

    public func mark(_ label: String, at time: UInt64? = nil) {
        guard Self.tracing else { return }
        let now = time ?? Monotonic.nanos()
        state.withLock { $0.marks.append((label, now)) }
    }

    public func printMarks() {
        guard Self.tracing else { return }
        let marks = state.withLock { $0.marks }
        guard let first = marks.first else { return }
        var line = "levain: timings \(id):"
        for (label, t) in marks {
            let us = (t - first.1) / 1000
            line += " \(label)=\(us / 1000).\(String(us % 1000 + 1000).dropFirst())"
        }
        line += " ms\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    public init(record: RunRecord, spec: RunSpec, outputDirectory: String, maxOutput: UInt64) {
        id = record.id
        sessionID = record.sessionID
        tenant = record.tenant
        toolCall = ToolCallScope.callID
        self.spec = spec
        stdout = OutputSpool(path: outputDirectory + "/stdout", limit: maxOutput)
        stderr = OutputSpool(path: outputDirectory + "/stderr", limit: maxOutput)
        state = Mutex(Mutable(record: record))
    }

    public var record: RunRecord { state.withLock { $0.record } }

    public func update(_ body: (inout RunRecord) -> Void) {
        let (done, waiters): (RunRecord?, [CheckedContinuation<RunRecord, Never>]) = state.withLock { s in
            body(&s.record)
            guard s.record.status.isTerminal else { return (nil, []) }
            let w = Array(s.waiters.values)
            s.waiters = [:]
            return (s.record, w)
        }
        if let done { for w in waiters { w.resume(returning: done) } }
    }

    /// Waits until the run has ended (or `timeout` seconds passed; then the
    /// record as it is). The timeout holds whatever the run does: a run whose
    /// end cannot be recorded yet (a full disk) is answered as it stands.
    public func wait(timeout: Double?) async -> RunRecord {
        let deadline = timeout.map { UInt64(min(max(0, $0), 1e9) * 1e9) }
        return await withCheckedContinuation { (c: CheckedContinuation<RunRecord, Never>) in
            let id: Int? = state.withLock { s in
                if s.record.status.isTerminal { return nil }
                let id = s.nextWaiter
                s.nextWaiter += 1
                s.waiters[id] = c
                return id
            }
            guard let id else { c.resume(returning: record); return }
            guard let deadline else { return }
            Task {
                try? await Task.sleep(nanoseconds: deadline)
                let (waiter, now) = self.state.withLock { s in (s.waiters.removeValue(forKey: id), s.record) }
                waiter?.resume(returning: now)
            }
        }
    }

    /// Answers every waiter with the record as it stands (the supervisor is
    /// stopping and could not record the run's end: what the log holds).
    public func releaseWaiters() {
        let (now, waiters) = state.withLock { s -> (RunRecord, [CheckedContinuation<RunRecord, Never>]) in
            let w = Array(s.waiters.values)
            s.waiters = [:]
            return (s.record, w)
        }
        for w in waiters { w.resume(returning: now) }
    }

    public var cancelRequested: Bool { state.withLock { $0.cancelRequested } }

    /// Marks the run cancelled and calls whoever can stop it (the session
    /// killing its cgroup, or the queue dropping it).
    public func requestCancel() {
        let handler: (@Sendable () -> Void)? = state.withLock { s in
            s.cancelRequested = true
            return s.cancelHandler
        }
        handler?()
    }

    public func setCancelHandler(_ handler: (@Sendable () -> Void)?) {
        let fire: Bool = state.withLock { s in
            s.cancelHandler = handler
            return s.cancelRequested && handler != nil
        }
        if fire { handler?() }
    }

    /// Streaming stdin (PUT /v1/runs/{id}/stdin): the session sets the
    /// sink once the process runs; nil bytes end the stream.
    public func setStdinSink(_ sink: (@Sendable ([UInt8]?) async throws -> Void)?) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.stdinSink = sink
            let w = s.stdinWaiters
            s.stdinWaiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Claims the run's stdin (once): waits until the run's process exists;
    /// nil when the run ended or its stdin was claimed already.
    public func stdinSink() async -> (@Sendable ([UInt8]?) async throws -> Void)? {
        while true {
            let (sink, ended): ((@Sendable ([UInt8]?) async throws -> Void)?, Bool) = state.withLock { s in
                if s.stdinClaimed { return (nil, true) }
                if let sink = s.stdinSink {
                    s.stdinClaimed = true
                    return (sink, false)
                }
                return (nil, s.record.status.isTerminal)
            }
            if let sink { return sink }
            if ended { return nil }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> Bool in
                    if s.stdinSink != nil || s.stdinClaimed || s.record.status.isTerminal { return true }
                    s.stdinWaiters.append(c)
                    return false
                }
                if ready { c.resume() }
            }
        }
    }

    public func wakeStdinWaiters() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { s in
            let w = s.stdinWaiters
            s.stdinWaiters = []
            return w
        }
        for w in waiters { w.resume() }
    }
}

/// The tool call a task works for (set by the tool service around a call's
/// body; runs submitted inside it are that call's).
public enum ToolCallScope {
    @TaskLocal public static var callID: String?
}

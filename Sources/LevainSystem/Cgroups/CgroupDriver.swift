#if canImport(Glibc)
import Glibc
#endif
import LevainClock
import SystemPackage

/// The limits of one run's cgroup. A nil limit leaves the kernel default
/// (unlimited).
public struct CgroupLimits: Sendable, Equatable {
    public var memoryBytes: UInt64?
    /// No swap for the run: v2 memory.swap.max 0; v1 memsw limit equal to the
    /// memory limit and swappiness 0.
    public var swapOff: Bool = true
    /// Fractional cores, as a CFS quota over a 100 ms period.
    public var cpus: Double?
    public var pidsMax: Int?

    public init(memoryBytes: UInt64? = nil, swapOff: Bool = true, cpus: Double? = nil, pidsMax: Int? = nil) {
        self.memoryBytes = memoryBytes
        self.swapOff = swapOff
        self.cpus = cpus
        self.pidsMax = pidsMax
    }

    /// The CFS period the quota is expressed over, in microseconds.
    public static let cpuPeriodMicros = 100_000

    /// The CFS quota for `cpus`, at least 1 ms per period (the kernel's floor).
    public static func cpuQuotaMicros(cpus: Double) -> Int {
        max(1000, Int(cpus * Double(cpuPeriodMicros)))
    }

    func validate() throws(SystemError) {
        if let cpus, !(cpus.isFinite && cpus > 0 && cpus <= 1_000_000) {
            throw SystemError(.invalidArgument, "cpu limit must be a positive number of cores, got \(cpus)")
        }
        if let pidsMax, pidsMax <= 0 {
            throw SystemError(.invalidArgument, "pids limit must be positive, got \(pidsMax)")
        }
        if let memoryBytes, memoryBytes == 0 {
            throw SystemError(.invalidArgument, "memory limit must be positive")
        }
    }
}

/// What a run's cgroup accounted. A nil field means the controller or the
/// interface file is absent.
public struct CgroupUsage: Sendable, Equatable {
    public var peakMemoryBytes: UInt64?
    public var oomKills: Int
    public var memoryLimitHits: Int
    public var pidsLimitHits: Int
    public var cpuUserMicros: UInt64?
    public var cpuSystemMicros: UInt64?
    public var cpuThrottledMicros: UInt64?
    public var nrThrottled: Int?

    public init(peakMemoryBytes: UInt64? = nil, oomKills: Int = 0, memoryLimitHits: Int = 0,
                pidsLimitHits: Int = 0, cpuUserMicros: UInt64? = nil, cpuSystemMicros: UInt64? = nil,
                cpuThrottledMicros: UInt64? = nil, nrThrottled: Int? = nil) {
        self.peakMemoryBytes = peakMemoryBytes
        self.oomKills = oomKills
        self.memoryLimitHits = memoryLimitHits
        self.pidsLimitHits = pidsLimitHits
        self.cpuUserMicros = cpuUserMicros
        self.cpuSystemMicros = cpuSystemMicros
        self.cpuThrottledMicros = cpuThrottledMicros
        self.nrThrottled = nrThrottled
    }
}

/// Gives each run its own cgroup under a parent Levain owns.
public protocol CgroupDriver: Sendable {
    /// 1 or 2.
    var version: Int { get }
    /// The controllers this driver can use on this machine.
    var controllers: [String] { get }
    /// Creates a fresh cgroup `name` (an existing one is an error, never
    /// reused) with `limits` written; on failure nothing created is left.
    func create(name: String, limits: CgroupLimits) throws(SystemError) -> RunCgroup
    /// The directories `create(name:)` makes, known before it makes them:
    /// whoever must remove them after a crash records them first.
    func paths(of name: String) -> [String]
    /// The parent directories Levain owns (`<root>/<parent>` per hierarchy),
    /// for finding what an earlier process left in them.
    var parentDirectories: [String] { get }
}

/// One run's cgroup: a directory per v1 hierarchy, or one v2 directory.
public final class RunCgroup: Sendable {
    /// Which files the accounting reads.
    enum Accounting: Sendable, Equatable {
        /// controller -> the run's directory in that controller's hierarchy.
        case v1([String: String])
        case v2(String)
    }

    public let version: Int
    /// Every directory this cgroup consists of (one per v1 hierarchy, one for v2).
    public let paths: [String]
    /// The cgroup.procs file of each path.
    public let procsPaths: [String]
    /// v2 cgroup.kill, when the kernel has it.
    let killPath: String?
    /// v1 freezer.state or v2 cgroup.freeze, when there is a freezer.
    let freezePath: String?
    let accounting: Accounting
    let fs: any CgroupFileSystem
    /// kill(2), replaceable so tests over a fake cgroupfs never signal real pids.
    let sendSignal: @Sendable (Int32, Int32) -> Void

    init(version: Int, paths: [String], killPath: String?, freezePath: String?,
         accounting: Accounting, fs: any CgroupFileSystem,
         sendSignal: @escaping @Sendable (Int32, Int32) -> Void = { pid, signal in _ = Glibc.kill(pid, signal) }) {
        self.version = version
        self.paths = paths
        self.procsPaths = paths.map { Cgroupfs.join($0, "cgroup.procs") }
        self.killPath = killPath
        self.freezePath = freezePath
        self.accounting = accounting
        self.fs = fs
        self.sendSignal = sendSignal
    }

    /// The same cgroup with another way of sending signals (for tests).
    func withSignalSender(_ sendSignal: @escaping @Sendable (Int32, Int32) -> Void) -> RunCgroup {
        RunCgroup(version: version, paths: paths, killPath: killPath, freezePath: freezePath,
                  accounting: accounting, fs: fs, sendSignal: sendSignal)
    }

    /// cgroup.procs of every hierarchy, opened O_WRONLY|O_CLOEXEC: the spawn
    /// code writes the child's pid into each. The caller closes them.
    public func procsFileDescriptors() throws(SystemError) -> [Int32] {
        var fds: [Int32] = []
        for path in procsPaths {
            do throws(SystemError) {
                fds.append(try fs.openForWriting(path))
            } catch {
                for fd in fds { _ = Glibc.close(fd) }
                throw error
            }
        }
        return fds
    }

    /// v1 only: each hierarchy's `tasks` file, opened O_WRONLY|O_CLOEXEC,
    /// for the new jail to move itself in by writing "0". A process moving
    /// its own (only) thread skips the global threadgroup lock, whose RCU
    /// grace period makes writing another process's pid to cgroup.procs
    /// cost 7-15 ms per run on v1. The caller closes them.
    public func selfMigrationFileDescriptors() throws(SystemError) -> [Int32] {
        guard version == 1 else { return [] }
        var fds: [Int32] = []
        for path in paths {
            do throws(SystemError) {
                fds.append(try fs.openForWriting(Cgroupfs.join(path, "tasks")))
            } catch {
                for fd in fds { _ = Glibc.close(fd) }
                throw error
            }
        }
        return fds
    }

    /// The v2 directory, for clone3's CLONE_INTO_CGROUP; nil on v1. The
    /// caller closes it.
    public func directoryFileDescriptor() throws(SystemError) -> Int32? {
        guard version == 2, let path = paths.first else { return nil }
        return try fs.openDirectory(path)
    }

    /// The accounting so far; unreadable files leave their fields nil or 0.
    public func usage() -> CgroupUsage {
        switch accounting {
        case .v1(let dirs): CgroupV1Driver.usage(dirs: dirs, fs: fs)
        case .v2(let dir): CgroupV2Driver.usage(dir: dir, fs: fs)
        }
    }

    /// Every pid in the cgroup, over all hierarchies, sorted.
    public func pids() -> [Int32] {
        var all = Set<Int32>()
        for path in procsPaths {
            guard let text = try? fs.readText(path) else { continue }
            all.formUnion(Cgroupfs.pidList(text))
        }
        return all.sorted()
    }

    /// Kills everything in the cgroup. v2 with cgroup.kill: one write, then
    /// waits for the cgroup to empty. Otherwise a loop of freeze (when a
    /// freezer is there), SIGKILL every pid, thaw, until cgroup.procs is empty
    /// or about 2 s passed: freezing stops forks between reading the pids and
    /// killing them; SIGKILL also ends stopped processes. Returns whether the
    /// cgroup was seen empty.
    @discardableResult
    public func kill(timeoutMillis: Int = 2000) -> Bool {
        let deadline = Monotonic.millis() + Int64(timeoutMillis)
        if let killPath, fs.exists(killPath), (try? fs.writeText(killPath, "1")) != nil {
            while Monotonic.millis() < deadline {
                if pids().isEmpty { return true }
                Cgroupfs.sleepMillis(2)
            }
            // cgroup.kill did not empty it in time: fall through to the loop.
        }
        var first = true
        while first || Monotonic.millis() < deadline {
            first = false
            if pids().isEmpty { return true }
            let frozen = freeze(deadline: deadline)
            // Never pid 0 or -1 (process groups), never ourselves.
            let me = getpid()
            for pid in pids() where pid > 0 && pid != me {
                sendSignal(pid, SIGKILL)
            }
            if frozen { thaw() }
            // Give the killed tasks a moment to leave the cgroup.
            for _ in 0..<5 {
                if pids().isEmpty { return true }
                Cgroupfs.sleepMillis(2)
            }
        }
        return pids().isEmpty
    }

    /// Whether the cgroup has a freezer (v1 freezer.state, v2 cgroup.freeze).
    public var canFreeze: Bool { freezePath != nil }

    /// Asks the kernel's freezer to pause (true) or resume (false) every
    /// process in the cgroup, without waiting: a frozen process does not
    /// run, however many times it is woken; SIGKILL still ends it (`kill`
    /// thaws after killing).
    public func writeFreezer(_ frozen: Bool) throws(SystemError) {
        guard let freezePath else { throw SystemError(.unsupported, "the cgroup has no freezer") }
        try fs.writeText(freezePath, frozen ? (version == 2 ? "1" : "FROZEN") : (version == 2 ? "0" : "THAWED"))
    }

    /// Whether the kernel reports the state reached (v1 goes through
    /// FREEZING; v2 says `frozen 1` in cgroup.events). A cgroup that is gone
    /// (its run ended and it was removed) has nothing left to freeze or thaw.
    public func freezerReached(_ frozen: Bool) -> Bool {
        guard let freezePath, fs.exists(freezePath) else { return true }
        return isFrozen() == frozen
    }

    /// `writeFreezer`, then waits up to `timeoutMillis` for the state;
    /// returns whether it was reached.
    @discardableResult
    public func setFrozen(_ frozen: Bool, timeoutMillis: Int = 1000) throws(SystemError) -> Bool {
        try writeFreezer(frozen)
        return Self.waitFor([self], frozen, deadline: Monotonic.millis() + Int64(timeoutMillis)).isEmpty
    }

    /// Freezes or thaws several cgroups: every request written first, then
    /// one wait against one deadline. Returns what failed (index and why);
    /// empty when all reached the state.
    public static func setFrozen(_ groups: [RunCgroup], _ frozen: Bool, timeoutMillis: Int = 1000) -> [(Int, String)] {
        var failures: [(Int, String)] = []
        var written: [Int] = []
        for (i, g) in groups.enumerated() {
            do throws(SystemError) {
                try g.writeFreezer(frozen)
                written.append(i)
            } catch where error.errno == .noSuchFileOrDirectory {
                continue  // removed meanwhile: its run has ended
            } catch {
                failures.append((i, "\(error)"))
            }
        }
        let late = waitFor(written.map { groups[$0] }, frozen, deadline: Monotonic.millis() + Int64(timeoutMillis))
        for k in late { failures.append((written[k], "the kernel did not report it \(frozen ? "frozen" : "thawed") within \(timeoutMillis) ms")) }
        return failures.sorted { $0.0 < $1.0 }
    }

    /// The indices of `groups` not in the state by the deadline.
    private static func waitFor(_ groups: [RunCgroup], _ frozen: Bool, deadline: Int64) -> [Int] {
        var pending = Array(groups.indices)
        while true {
            pending.removeAll { groups[$0].freezerReached(frozen) }
            if pending.isEmpty || Monotonic.millis() >= deadline { return pending }
            Cgroupfs.sleepMillis(1)
        }
    }

    /// Freezes the cgroup and waits (briefly) for the kernel to report it
    /// frozen. Returns whether a freeze was requested (and so needs a thaw).
    private func freeze(deadline: Int64) -> Bool {
        guard let freezePath else { return false }
        let frozenValue = version == 2 ? "1" : "FROZEN"
        guard (try? fs.writeText(freezePath, frozenValue)) != nil else { return false }
        let waitUntil = min(deadline, Monotonic.millis() + 100)
        while Monotonic.millis() < waitUntil {
            if isFrozen() { break }
            Cgroupfs.sleepMillis(1)
        }
        return true
    }

    private func isFrozen() -> Bool {
        guard let freezePath else { return false }
        if version == 2 {
            let events = Cgroupfs.join(Cgroupfs.parent(of: freezePath), "cgroup.events")
            guard let text = try? fs.readText(events) else { return true }
            return Cgroupfs.keyedValues(text)["frozen"] == 1
        }
        guard let text = try? fs.readText(freezePath) else { return true }
        return Cgroupfs.trimmed(text) == "FROZEN"
    }

    private func thaw() {
        guard let freezePath else { return }
        _ = try? fs.writeText(freezePath, version == 2 ? "0" : "THAWED")
    }

    /// rmdir of every directory, deepest first. Exiting tasks leave a cgroup
    /// asynchronously, so EBUSY is retried for about a second; ENOENT counts
    /// as removed. Throws the first error after trying every directory.
    public func remove() throws(SystemError) {
        let depth = { (path: String) in path.split(separator: "/").count }
        let ordered = paths.enumerated()
            .sorted { (depth($0.element), $1.offset) > (depth($1.element), $0.offset) }
            .map(\.element)
        var firstError: SystemError?
        for path in ordered {
            do throws(SystemError) {
                try Cgroupfs.removeDirectory(path, fs: fs, busyTimeoutMillis: 1000)
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }
}

// MARK: - helpers shared by the drivers

/// Small helpers of the cgroup code, in a namespace so they cannot collide
/// with the rest of the module.
enum Cgroupfs {
    /// `a` + "/" + `b` without doubling the slash.
    static func join(_ a: String, _ b: String) -> String {
        a.hasSuffix("/") ? a + b : a + "/" + b
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// rmdir with EBUSY retried for up to `busyTimeoutMillis`; ENOENT is success.
    static func removeDirectory(_ path: String, fs: any CgroupFileSystem, busyTimeoutMillis: Int) throws(SystemError) {
        let deadline = Monotonic.millis() + Int64(busyTimeoutMillis)
        while true {
            do throws(SystemError) {
                try fs.rmdir(path)
                return
            } catch {
                if error.errno == .noSuchFileOrDirectory { return }
                if error.errno == .resourceBusy, Monotonic.millis() < deadline {
                    Cgroupfs.sleepMillis(5)
                    continue
                }
                throw error
            }
        }
    }

    /// "key value" lines (memory.events, pids.events, cpu.stat, ...) as a
    /// map; values that do not parse are left out.
    static func keyedValues(_ text: String) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
            result[String(parts[0])] = value
        }
        return result
    }

    /// A single number file ("123\n"); nil for "max" or garbage.
    static func singleValue(_ text: String) -> UInt64? {
        UInt64(trimmed(text))
    }

    /// Pids, one a line, as cgroup.procs lists them.
    static func pidList(_ text: String) -> [Int32] {
        text.split(separator: "\n").compactMap { Int32(trimmed($0)) }
    }

    /// Checks a cgroup directory name: one path component, no dot names.
    static func validateComponent(_ name: String, what: String) throws(SystemError) {
        if name.isEmpty || name == "." || name == ".." || name.contains("/")
            || name.utf8.contains(0) || name.utf8.contains(UInt8(ascii: "\n")) {
            throw SystemError(.invalidArgument, "invalid cgroup \(what) name '\(name)': must be one path component")
        }
    }

    static func clampedInt(_ value: UInt64) -> Int {
        value > UInt64(Int.max) ? Int.max : Int(value)
    }

    static func trimmed<S: StringProtocol>(_ text: S) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let start = text.firstIndex(where: { !isSpace($0) }),
              let end = text.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(text[start...end])
    }

    static func sleepMillis(_ millis: Int) {
        var ts = timespec(tv_sec: millis / 1000, tv_nsec: (millis % 1000) * 1_000_000)
        var rem = timespec()
        while nanosleep(&ts, &rem) != 0 && Glibc.errno == EINTR { ts = rem }
    }
}

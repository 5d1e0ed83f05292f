#if canImport(Glibc)
import Glibc
#endif
import LevainClock
import SystemPackage
import Synchronization
import Testing
@testable import LevainSystem

// MARK: - A directory tree that behaves like cgroupfs

/// `CgroupFileSystem` over a real temporary directory that simulates what the
/// kernel does on cgroupfs: mkdir populates a cgroup's interface files (v2:
/// per controller enabled in the parent's subtree_control; v1: the parent's
/// files), writes to missing files fail with ENOENT, subtree_control refuses
/// controllers the cgroup does not have (EINVAL), rmdir of a cgroup with
/// processes or children fails with EBUSY. Every write attempt is recorded.
final class FakeCgroupFileSystem: CgroupFileSystem {
    struct Write: Equatable, Sendable, CustomStringConvertible {
        var path: String
        var text: String
        var description: String { "\(path) <- \(text)" }
    }

    struct State {
        var writes: [Write] = []
        /// path -> errno a write to it fails with (injected failures).
        var failingWrites: [String: Errno] = [:]
        /// path -> how many more rmdir calls fail with EBUSY (tasks still leaving).
        var busyRmdirs: [String: Int] = [:]
        var rmdirCalls: [String] = []
    }

    let base: String
    /// Whether new v2 cgroups get cgroup.kill (kernels since 5.14).
    let hasCgroupKill: Bool
    let hasSwap: Bool
    private let state = Mutex(State())
    private let real = RealCgroupFileSystem()

    /// The kernel's order of v2 controllers, for listing files.
    static let v2Order = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]

    init(hasCgroupKill: Bool = true, hasSwap: Bool = true) {
        var template = Array("/tmp/levain-cgtest-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        base = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.hasCgroupKill = hasCgroupKill
        self.hasSwap = hasSwap
    }

    deinit { Self.removeTree(base) }

    var writes: [Write] { state.withLock { $0.writes } }
    func clearWrites() { state.withLock { $0.writes = [] } }
    func failWrites(to path: String, with errno: Errno) { state.withLock { $0.failingWrites[path] = errno } }
    func stayBusy(_ path: String, rmdirCalls count: Int) { state.withLock { $0.busyRmdirs[path] = count } }
    var rmdirCalls: [String] { state.withLock { $0.rmdirCalls } }

    func path(_ relative: String) -> String { base + "/" + relative }

    // Set-up and inspection that bypass the simulation and the record.
    func seed(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "seed \(path)")
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func content(_ path: String) -> String? { try? real.readText(path) }

    /// A v2 root: the root cgroup's files, with `delegated` in its subtree_control.
    func makeV2Root(_ relative: String = "cgroup", controllers: String = "cpuset cpu io memory hugetlb pids rdma misc",
                    delegated: String = "cpu memory pids") -> String {
        let root = path(relative)
        precondition(Glibc.mkdir(root, 0o755) == 0)
        seed(root + "/cgroup.controllers", controllers + "\n")
        seed(root + "/cgroup.subtree_control", delegated + "\n")
        seed(root + "/cgroup.procs", "1\n")
        seed(root + "/cgroup.max.depth", "max\n")
        seed(root + "/cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n")
        return root
    }

    /// A v1 hierarchy root mounted at `relative`, with the root files of `controllers`.
    func makeV1Hierarchy(_ relative: String, controllers: [String]) -> String {
        let root = path(relative)
        precondition(Glibc.mkdir(root, 0o755) == 0)
        seed(root + "/cgroup.procs", "1\n")
        seed(root + "/tasks", "1\n")
        seed(root + "/cgroup.clone_children", "0\n")
        seed(root + "/cgroup.sane_behavior", "0\n")
        seed(root + "/notify_on_release", "0\n")
        seed(root + "/release_agent", "\n")
        let unlimited = "9223372036854771712\n"
        for controller in controllers {
            switch controller {
            case "memory":
                seed(root + "/memory.limit_in_bytes", unlimited)
                if hasSwap {
                    seed(root + "/memory.memsw.limit_in_bytes", unlimited)
                    seed(root + "/memory.memsw.max_usage_in_bytes", "0\n")
                }
                seed(root + "/memory.swappiness", "60\n")
                seed(root + "/memory.max_usage_in_bytes", "0\n")
                seed(root + "/memory.usage_in_bytes", "0\n")
                seed(root + "/memory.failcnt", "0\n")
                seed(root + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
            case "cpu":
                seed(root + "/cpu.cfs_period_us", "100000\n")
                seed(root + "/cpu.cfs_quota_us", "-1\n")
                seed(root + "/cpu.shares", "1024\n")
                seed(root + "/cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
            case "cpuacct":
                seed(root + "/cpuacct.usage", "0\n")
                seed(root + "/cpuacct.usage_user", "0\n")
                seed(root + "/cpuacct.usage_sys", "0\n")
                seed(root + "/cpuacct.stat", "user 0\nsystem 0\n")
            case "pids":
                seed(root + "/pids.max", "max\n")
                seed(root + "/pids.current", "0\n")
                seed(root + "/pids.events", "max 0\n")
            case "freezer":
                seed(root + "/freezer.state", "THAWED\n")
            default:
                break
            }
        }
        return root
    }

    // MARK: CgroupFileSystem

    func mkdir(_ path: String) throws(SystemError) {
        try real.mkdir(path)
        let parent = Self.dirname(path)
        if real.exists(parent + "/cgroup.subtree_control") {
            populateV2(path, enabled: Self.words(content(parent + "/cgroup.subtree_control")))
        } else if real.exists(parent + "/cgroup.procs") {
            populateV1(path, from: parent)
        }
    }

    func rmdir(_ path: String) throws(SystemError) {
        let busy = state.withLock { state -> Bool in
            state.rmdirCalls.append(path)
            guard let left = state.busyRmdirs[path], left > 0 else { return false }
            state.busyRmdirs[path] = left - 1
            return true
        }
        if busy { throw SystemError.syscall("rmdir \(path)", errno: EBUSY) }
        guard real.isDirectory(path) else {
            throw SystemError.syscall("rmdir \(path)", errno: real.exists(path) ? ENOTDIR : ENOENT)
        }
        if let procs = content(path + "/cgroup.procs"), !Cgroupfs.pidList(procs).isEmpty {
            throw SystemError.syscall("rmdir \(path)", errno: EBUSY)
        }
        let entries = Self.entries(path)
        if entries.contains(where: { $0.isDirectory }) {
            throw SystemError.syscall("rmdir \(path)", errno: EBUSY)
        }
        for entry in entries { unlink(path + "/" + entry.name) }
        try real.rmdir(path)
    }

    func readText(_ path: String) throws(SystemError) -> String {
        try real.readText(path)
    }

    func writeText(_ path: String, _ text: String) throws(SystemError) {
        let injected = state.withLock { state -> Errno? in
            state.writes.append(Write(path: path, text: text))
            return state.failingWrites[path]
        }
        if let injected { throw SystemError.syscall("write \(path)", errno: injected.rawValue) }
        guard real.exists(path) else { throw SystemError.syscall("open \(path)", errno: ENOENT) }
        guard !real.isDirectory(path) else { throw SystemError.syscall("open \(path)", errno: EISDIR) }
        let dir = Self.dirname(path)
        let value = Cgroupfs.trimmed(text)
        switch Self.basename(path) {
        case "cgroup.subtree_control":
            let available = Self.words(content(dir + "/cgroup.controllers"))
            var enabled = Self.words(content(path))
            for token in value.split(separator: " ") {
                let name = String(token.dropFirst())
                guard token.first == "+" || token.first == "-", available.contains(name) else {
                    throw SystemError.syscall("write \(path)", errno: EINVAL)
                }
                if token.first == "+" { enabled.insert(name) } else { enabled.remove(name) }
            }
            seed(path, Self.v2Order.filter(enabled.contains).joined(separator: " ") + "\n")
        case "cgroup.procs", "tasks":
            guard let pid = Int32(value), pid > 0 else { throw SystemError.syscall("write \(path)", errno: EINVAL) }
            seed(path, (content(path) ?? "") + "\(pid)\n")
        case "cgroup.kill":
            guard value == "1" else { throw SystemError.syscall("write \(path)", errno: ERANGE) }
            clearProcesses(dir)
        case "cgroup.freeze":
            guard value == "0" || value == "1" else { throw SystemError.syscall("write \(path)", errno: ERANGE) }
            seed(path, value + "\n")
            seed(dir + "/cgroup.events", "populated 0\nfrozen \(value)\n")
        case "memory.limit_in_bytes":
            guard let bytes = UInt64(value) else { throw SystemError.syscall("write \(path)", errno: EINVAL) }
            if let memsw = content(dir + "/memory.memsw.limit_in_bytes").flatMap(Cgroupfs.singleValue), bytes > memsw {
                throw SystemError.syscall("write \(path)", errno: EINVAL)
            }
            seed(path, value + "\n")
        case "memory.memsw.limit_in_bytes":
            guard let bytes = UInt64(value),
                  let memory = content(dir + "/memory.limit_in_bytes").flatMap(Cgroupfs.singleValue),
                  bytes >= memory else { throw SystemError.syscall("write \(path)", errno: EINVAL) }
            seed(path, value + "\n")
        default:
            seed(path, value + "\n")
        }
    }

    func exists(_ path: String) -> Bool { real.exists(path) }
    func isDirectory(_ path: String) -> Bool { real.isDirectory(path) }
    func openForWriting(_ path: String) throws(SystemError) -> Int32 { try real.openForWriting(path) }
    func openDirectory(_ path: String) throws(SystemError) -> Int32 { try real.openDirectory(path) }

    // MARK: Simulation

    private func populateV2(_ dir: String, enabled: Set<String>) {
        let list = Self.v2Order.filter(enabled.contains).joined(separator: " ")
        seed(dir + "/cgroup.procs", "")
        seed(dir + "/cgroup.threads", "")
        seed(dir + "/cgroup.controllers", list + "\n")
        seed(dir + "/cgroup.subtree_control", "\n")
        seed(dir + "/cgroup.events", "populated 0\nfrozen 0\n")
        seed(dir + "/cgroup.freeze", "0\n")
        seed(dir + "/cgroup.type", "domain\n")
        if hasCgroupKill { seed(dir + "/cgroup.kill", "") }
        var cpuStat = "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"
        if enabled.contains("cpu") {
            cpuStat += "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n"
            seed(dir + "/cpu.max", "max 100000\n")
            seed(dir + "/cpu.weight", "100\n")
        }
        seed(dir + "/cpu.stat", cpuStat)
        if enabled.contains("memory") {
            seed(dir + "/memory.max", "max\n")
            seed(dir + "/memory.high", "max\n")
            seed(dir + "/memory.current", "0\n")
            seed(dir + "/memory.peak", "0\n")
            seed(dir + "/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
            if hasSwap {
                seed(dir + "/memory.swap.max", "max\n")
                seed(dir + "/memory.swap.current", "0\n")
            }
        }
        if enabled.contains("pids") {
            seed(dir + "/pids.max", "max\n")
            seed(dir + "/pids.current", "0\n")
            seed(dir + "/pids.events", "max 0\n")
        }
    }

    private func populateV1(_ dir: String, from parent: String) {
        for entry in Self.entries(parent) where !entry.isDirectory {
            switch entry.name {
            case "cgroup.sane_behavior", "release_agent":
                continue  // only in a hierarchy's root
            case "cgroup.procs", "tasks":
                seed(dir + "/" + entry.name, "")
            default:
                seed(dir + "/" + entry.name, content(parent + "/" + entry.name) ?? "")
            }
        }
    }

    /// What cgroup.kill does: every process in the subtree is gone.
    private func clearProcesses(_ dir: String) {
        seed(dir + "/cgroup.procs", "")
        for entry in Self.entries(dir) where entry.isDirectory { clearProcesses(dir + "/" + entry.name) }
    }

    /// Simulates a process leaving (it died) every cgroup.procs under `base`.
    func removeProcess(_ pid: Int32) {
        func walk(_ dir: String) {
            if let text = content(dir + "/cgroup.procs") {
                let left = Cgroupfs.pidList(text).filter { $0 != pid }
                seed(dir + "/cgroup.procs", left.map { "\($0)\n" }.joined())
            }
            for entry in Self.entries(dir) where entry.isDirectory { walk(dir + "/" + entry.name) }
        }
        walk(base)
    }

    // MARK: Plumbing

    static func words(_ text: String?) -> Set<String> {
        Set((text ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    static func dirname(_ path: String) -> String { Cgroupfs.parent(of: path) }

    static func basename(_ path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }

    struct Entry { var name: String; var isDirectory: Bool }

    static func entries(_ dir: String) -> [Entry] {
        guard let handle = opendir(dir) else { return [] }
        defer { closedir(handle) }
        var result: [Entry] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            var st = stat()
            let isDir = lstat(dir + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            result.append(Entry(name: name, isDirectory: isDir))
        }
        return result
    }

    static func removeTree(_ path: String) {
        for entry in entries(path) {
            if entry.isDirectory { removeTree(path + "/" + entry.name) } else { unlink(path + "/" + entry.name) }
        }
        Glibc.rmdir(path)
    }
}

/// Every cgroup test sits in this suite, so `swift test --filter CgroupTests` runs them all.
@Suite("Cgroups")
struct CgroupTests {}

// MARK: - Layout detection

extension CgroupTests {
    @Suite("Cgroup layout detection")
    struct Layout {
        /// This machine's mountinfo: v1 controllers, a nearly empty cgroup2 at /sys/fs/cgroup/unified.
        static let hybrid = """
            22 28 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
            34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
            37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
            38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
            39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw

            """

        @Test func hybridMachineIsV1() {
            let layout = CgroupLayout.parse(mountinfo: Self.hybrid)
            guard case .v1(let mounts) = layout else {
                Issue.record("expected v1, got \(layout)")
                return
            }
            #expect(mounts["memory"] == "/sys/fs/cgroup/memory")
            #expect(mounts["cpu"] == "/sys/fs/cgroup/cpu")
            #expect(mounts["cpuacct"] == "/sys/fs/cgroup/cpuacct")
            #expect(mounts["pids"] == "/sys/fs/cgroup/pids")
            #expect(mounts["freezer"] == "/sys/fs/cgroup/freezer")
            #expect(mounts["cpuset"] == "/sys/fs/cgroup/cpuset")
            #expect(mounts["name=systemd"] == nil && mounts["rw"] == nil && mounts["systemd"] == nil)
            #expect(mounts.count == 8)
        }

        @Test func hybridStaysV1EvenWhenDetectionCanReadTheUnifiedControllers() {
            let mounts = CgroupLayout.mounts(in: Self.hybrid)
            let layout = CgroupLayout.decide(mounts, controllersOf: { $0 == "/sys/fs/cgroup/unified" ? "hugetlb\n" : nil })
            #expect(layout == .v1(mounts.v1))
        }

        @Test func pureV2() {
            let text = """
                25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
                30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
                """
            #expect(CgroupLayout.parse(mountinfo: text) == .v2("/sys/fs/cgroup"))
            let decided = CgroupLayout.decide(CgroupLayout.mounts(in: text),
                                              controllersOf: { _ in "cpuset cpu io memory hugetlb pids rdma misc\n" })
            #expect(decided == .v2("/sys/fs/cgroup"))
        }

        @Test func v2WithControllersWinsOverStrayV1Hierarchies() {
            let text = """
                30 25 0:26 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw
                50 30 0:40 / /sys/fs/cgroup/net_cls rw - cgroup cgroup rw,net_cls,net_prio
                51 30 0:41 / /run/misc-freezer rw - cgroup cgroup rw,freezer
                """
            let mounts = CgroupLayout.mounts(in: text)
            #expect(mounts.v1 == ["net_cls": "/sys/fs/cgroup/net_cls", "net_prio": "/sys/fs/cgroup/net_cls",
                                  "freezer": "/run/misc-freezer"])
            // From the text alone the freezer hierarchy makes it v1 ...
            #expect(CgroupLayout.parse(mountinfo: text) == .v1(mounts.v1))
            // ... but a unified hierarchy carrying memory, pids and cpu wins.
            #expect(CgroupLayout.decide(mounts, controllersOf: { _ in "cpu memory pids" }) == .v2("/sys/fs/cgroup"))
        }

        @Test func comountedCpuAndCpuacct() {
            let text = """
                32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
                35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
                36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw shared:16 - cgroup cgroup rw,net_cls,net_prio
                """
            #expect(CgroupLayout.parse(mountinfo: text) == .v1([
                "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                "memory": "/sys/fs/cgroup/memory",
                "net_cls": "/sys/fs/cgroup/net_cls,net_prio", "net_prio": "/sys/fs/cgroup/net_cls,net_prio",
            ]))
            let driver = CgroupV1Driver(mounts: ["cpu": "/c,a", "cpuacct": "/c,a", "memory": "/m"])
            #expect(driver.hierarchies == ["/m", "/c,a"])
            #expect(driver.controllers == ["memory", "cpu", "cpuacct"])
        }

        @Test func escapedMountPoints() {
            let text = #"""
                35 31 0:32 / /mnt/my\040cgroups/mem\134ory rw - cgroup cgroup rw,memory
                41 31 0:38 / /mnt/tab\011here rw - cgroup2 none rw
                """#
            let mounts = CgroupLayout.mounts(in: text)
            #expect(mounts.v1 == ["memory": "/mnt/my cgroups/mem\\ory"])
            #expect(mounts.v2 == ["/mnt/tab\there"])
            #expect(CgroupLayout.unescape(#"/a\040b\"#) == #"/a b\"#)
            #expect(CgroupLayout.unescape(#"/a\09x"#) == #"/a\09x"#)
        }

        @Test func noCgroupsAtAll() {
            #expect(CgroupLayout.parse(mountinfo: "22 28 0:20 / /proc rw - proc proc rw\n") == CgroupLayout.none)
            #expect(CgroupLayout.parse(mountinfo: "garbage\n\n- - -\n") == CgroupLayout.none)
            // v1 hierarchies without a controller the drivers use do not count.
            let unused = "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
            #expect(CgroupLayout.parse(mountinfo: unused) == CgroupLayout.none)
            #expect(CgroupLayout.none.makeDriver() == nil)
        }

        @Test(.enabled(if: RealV1.v1MemoryMounted))
        func detectOnThisMachine() throws {
            let layout = CgroupLayout.detect()
            guard case .v1(let mounts) = layout else {
                Issue.record("expected v1 on this machine, got \(layout)")
                return
            }
            #expect(mounts["memory"] != nil)
            #expect(layout.makeDriver()?.version == 1)
        }
    }
}

// MARK: - v2 driver over the fake cgroupfs

extension CgroupTests {
    @Suite("Cgroup v2 driver (fake cgroupfs)")
    struct V2Driver {
        @Test func createWritesTheLimits() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let driver = CgroupV2Driver(root: root, fs: fs)
            #expect(driver.version == 2)
            #expect(driver.controllers == ["memory", "pids", "cpu"])

            let limits = CgroupLimits(memoryBytes: 256 << 20, swapOff: true, cpus: 0.5, pidsMax: 64)
            let run = try driver.create(name: "run-1", limits: limits)
            let dir = root + "/levain/run-1"
            #expect(fs.writes == [
                .init(path: root + "/levain/cgroup.subtree_control", text: "+memory +pids +cpu"),
                .init(path: dir + "/memory.max", text: "268435456"),
                .init(path: dir + "/memory.swap.max", text: "0"),
                .init(path: dir + "/cpu.max", text: "50000 100000"),
                .init(path: dir + "/pids.max", text: "64"),
            ])
            #expect(fs.content(root + "/levain/cgroup.subtree_control") == "cpu memory pids\n")
            #expect(fs.content(dir + "/memory.max") == "268435456\n")
            #expect(fs.content(dir + "/cpu.max") == "50000 100000\n")
            #expect(fs.content(root + "/cgroup.subtree_control") == "cpu memory pids\n")
            #expect(fs.writes.allSatisfy { $0.path.hasPrefix(root + "/levain/") })

            #expect(run.version == 2)
            #expect(run.paths == [dir])
            #expect(run.procsPaths == [dir + "/cgroup.procs"])
            let fds = try run.procsFileDescriptors()
            #expect(fds.count == 1)
            for fd in fds { close(fd) }
            let dirFD = try #require(try run.directoryFileDescriptor())
            #expect(dirFD >= 0)
            close(dirFD)

            // A second run finds the controllers enabled and writes only its own files.
            fs.clearWrites()
            _ = try driver.create(name: "run-2", limits: CgroupLimits(cpus: 4, pidsMax: 10))
            #expect(fs.writes == [
                .init(path: root + "/levain/run-2/memory.swap.max", text: "0"),
                .init(path: root + "/levain/run-2/cpu.max", text: "400000 100000"),
                .init(path: root + "/levain/run-2/pids.max", text: "10"),
            ])
        }

        @Test func tinyCpuLimitIsRaisedToTheKernelMinimum() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            _ = try CgroupV2Driver(root: root, fs: fs).create(name: "r", limits: CgroupLimits(cpus: 0.001))
            #expect(fs.content(root + "/levain/r/cpu.max") == "1000 100000\n")
            #expect(CgroupLimits.cpuQuotaMicros(cpus: 1.5) == 150_000)
        }

        @Test func swapOnAndNoSwapAccountingWriteNoSwapFile() throws {
            let fs = FakeCgroupFileSystem(hasSwap: false)
            let root = fs.makeV2Root()
            let driver = CgroupV2Driver(root: root, fs: fs)
            _ = try driver.create(name: "a", limits: CgroupLimits(memoryBytes: 4096, swapOff: true))
            _ = try driver.create(name: "b", limits: CgroupLimits(memoryBytes: 4096, swapOff: false))
            #expect(!fs.writes.contains { $0.path.hasSuffix("memory.swap.max") })
        }

        @Test func existingCgroupIsNeverReused() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let driver = CgroupV2Driver(root: root, fs: fs)
            _ = try driver.create(name: "dup", limits: CgroupLimits(pidsMax: 5))
            fs.clearWrites()
            let error = #expect(throws: SystemError.self) {
                try driver.create(name: "dup", limits: CgroupLimits(pidsMax: 7))
            }
            #expect(error?.errno == .fileExists)
            #expect(error?.code == .cgroup)
            #expect(fs.writes.allSatisfy { !$0.path.hasPrefix(root + "/levain/dup") })
            // The existing cgroup is left alone, not removed.
            #expect(fs.content(root + "/levain/dup/pids.max") == "5\n")
        }

        @Test func invalidNamesAreRefused() {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let driver = CgroupV2Driver(root: root, fs: fs)
            for name in ["", ".", "..", "a/b", "../x"] {
                #expect(throws: SystemError.self) { try driver.create(name: name, limits: CgroupLimits()) }
            }
            #expect(throws: SystemError.self) { try driver.create(name: "x", limits: CgroupLimits(cpus: 0)) }
            #expect(throws: SystemError.self) { try driver.create(name: "x", limits: CgroupLimits(pidsMax: 0)) }
            #expect(fs.writes.isEmpty)
        }

        @Test func missingDelegatedControllerIsAClearErrorAndTheRootIsUntouched() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root(delegated: "cpu pids")
            let driver = CgroupV2Driver(root: root, fs: fs)
            #expect(driver.controllers == ["pids", "cpu"])  // what the root delegates
            let error = #expect(throws: SystemError.self) {
                try driver.create(name: "r", limits: CgroupLimits(memoryBytes: 1 << 20, cpus: 1, pidsMax: 10))
            }
            let message = error?.description ?? ""
            #expect(message.contains("memory"))
            #expect(message.contains(root + "/cgroup.subtree_control"))
            #expect(message.contains("Delegate=yes"))
            #expect(!message.contains("cpu,") && !message.contains("pids,"))
            #expect(fs.writes.isEmpty)
            #expect(fs.content(root + "/cgroup.subtree_control") == "cpu pids\n")
            // The parent it had just created is gone again.
            #expect(!fs.exists(root + "/levain"))

            // Without a memory limit the run works with what is delegated.
            _ = try driver.create(name: "r", limits: CgroupLimits(cpus: 1, pidsMax: 10))
            #expect(fs.writes.first == .init(path: root + "/levain/cgroup.subtree_control", text: "+pids +cpu"))
            #expect(driver.controllers == ["pids", "cpu"])
            #expect(fs.writes.allSatisfy { $0.path.hasPrefix(root + "/levain/") })
        }

        @Test func failedLimitWriteRemovesWhatWasCreated() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            fs.failWrites(to: root + "/levain/r/pids.max", with: .permissionDenied)
            #expect(throws: SystemError.self) {
                try CgroupV2Driver(root: root, fs: fs).create(name: "r", limits: CgroupLimits(pidsMax: 3))
            }
            #expect(!fs.exists(root + "/levain/r"))
            #expect(!fs.exists(root + "/levain"))
        }

        @Test func usageIsParsed() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "u", limits: CgroupLimits())
            let dir = root + "/levain/u"
            #expect(run.usage() == CgroupUsage(peakMemoryBytes: 0, cpuUserMicros: 0, cpuSystemMicros: 0,
                                               cpuThrottledMicros: 0, nrThrottled: 0))
            fs.seed(dir + "/memory.peak", "73400320\n")
            fs.seed(dir + "/memory.events", "low 0\nhigh 2\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n")
            fs.seed(dir + "/pids.events", "max 5\n")
            fs.seed(dir + "/cpu.stat", """
                usage_usec 1500000
                user_usec 1000000
                system_usec 500000
                nr_periods 40
                nr_throttled 12
                throttled_usec 250000
                nr_bursts 0
                burst_usec 0

                """)
            #expect(run.usage() == CgroupUsage(
                peakMemoryBytes: 73_400_320, oomKills: 2, memoryLimitHits: 17, pidsLimitHits: 5,
                cpuUserMicros: 1_000_000, cpuSystemMicros: 500_000, cpuThrottledMicros: 250_000, nrThrottled: 12))

            // Older kernels: no memory.peak; no cpu controller: core cpu.stat only.
            unlink(dir + "/memory.peak")
            fs.seed(dir + "/cpu.stat", "usage_usec 9\nuser_usec 7\nsystem_usec 2\n")
            let older = run.usage()
            #expect(older.peakMemoryBytes == nil)
            #expect(older.cpuUserMicros == 7 && older.cpuSystemMicros == 2)
            #expect(older.nrThrottled == nil && older.cpuThrottledMicros == nil)
        }

        @Test func killWritesCgroupKill() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "k", limits: CgroupLimits())
                .withSignalSender { pid, _ in Issue.record("signalled \(pid) although cgroup.kill exists") }
            let procs = root + "/levain/k/cgroup.procs"
            try fs.writeText(procs, "2000000001")
            try fs.writeText(procs, "2000000002")
            #expect(run.pids() == [2_000_000_001, 2_000_000_002])
            fs.clearWrites()
            #expect(run.kill())
            #expect(fs.writes == [.init(path: root + "/levain/k/cgroup.kill", text: "1")])
            #expect(run.pids().isEmpty)
        }

        @Test func killWithoutCgroupKillFreezesSignalsAndThaws() throws {
            let fs = FakeCgroupFileSystem(hasCgroupKill: false)
            let root = fs.makeV2Root()
            let signalled = Mutex<[Int32]>([])
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "k", limits: CgroupLimits())
                .withSignalSender { pid, signal in
                    #expect(signal == SIGKILL)
                    signalled.withLock { $0.append(pid) }
                    fs.removeProcess(pid)
                }
            let dir = root + "/levain/k"
            try fs.writeText(dir + "/cgroup.procs", "2000000003")
            try fs.writeText(dir + "/cgroup.procs", "2000000004")
            fs.clearWrites()
            #expect(run.kill())
            #expect(signalled.withLock { $0 } == [2_000_000_003, 2_000_000_004])
            #expect(fs.writes == [
                .init(path: dir + "/cgroup.freeze", text: "1"),
                .init(path: dir + "/cgroup.freeze", text: "0"),
            ])
            #expect(fs.content(dir + "/cgroup.freeze") == "0\n")
        }

        @Test func setFrozenWritesCgroupFreezeAndWaitsForEvents() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "p", limits: CgroupLimits())
            #expect(run.canFreeze)
            let dir = root + "/levain/p"
            fs.clearWrites()
            #expect(try run.setFrozen(true))
            #expect(fs.content(dir + "/cgroup.events")?.contains("frozen 1") == true)
            #expect(try run.setFrozen(false))
            #expect(fs.writes == [.init(path: dir + "/cgroup.freeze", text: "1"), .init(path: dir + "/cgroup.freeze", text: "0")])
            // A child (a run's cgroup) has its own freezer file.
            let child = try run.makeChild("run-1")
            #expect(try child.setFrozen(true))
            #expect(fs.content(dir + "/run-1/cgroup.freeze") == "1\n")
            #expect(fs.content(dir + "/cgroup.freeze") == "0\n")
        }

        @Test func setFrozenThrowsWhenTheFreezerRefuses() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "q", limits: CgroupLimits())
            fs.failWrites(to: root + "/levain/q/cgroup.freeze", with: .resourceBusy)
            #expect(throws: SystemError.self) { try run.setFrozen(true, timeoutMillis: 50) }
            #expect(fs.content(root + "/levain/q/cgroup.freeze") == "0\n")
        }

        @Test func killGivesUpAfterTheTimeoutWhenProcessesNeverLeave() throws {
            let fs = FakeCgroupFileSystem(hasCgroupKill: false)
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "k", limits: CgroupLimits())
                .withSignalSender { _, _ in }
            try fs.writeText(root + "/levain/k/cgroup.procs", "2000000005")
            let start = Monotonic.millis()
            #expect(!run.kill(timeoutMillis: 200))
            #expect(Monotonic.millis() - start < 2000)
            // Every freeze was followed by a thaw.
            #expect(fs.content(root + "/levain/k/cgroup.freeze") == "0\n")
        }

        @Test func removeDeletesAndToleratesENOENT() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "rm", limits: CgroupLimits())
            try run.remove()
            #expect(!fs.exists(root + "/levain/rm"))
            #expect(fs.isDirectory(root + "/levain"))  // the shared parent stays
            try run.remove()
        }

        @Test func removeRetriesWhileTasksLeave() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "busy", limits: CgroupLimits())
            let dir = root + "/levain/busy"
            fs.stayBusy(dir, rmdirCalls: 3)
            try run.remove()
            #expect(fs.rmdirCalls == [dir, dir, dir, dir])
            #expect(!fs.exists(dir))
        }

        @Test func removeReportsEBUSYWhenTasksStay() throws {
            let fs = FakeCgroupFileSystem()
            let root = fs.makeV2Root()
            let run = try CgroupV2Driver(root: root, fs: fs).create(name: "busy", limits: CgroupLimits())
            try fs.writeText(root + "/levain/busy/cgroup.procs", "2000000007")
            let error = #expect(throws: SystemError.self) { try run.remove() }
            #expect(error?.errno == .resourceBusy)
            fs.removeProcess(2_000_000_007)
            try run.remove()
        }
    }
}

// MARK: - v1 driver over the fake cgroupfs

extension CgroupTests {
    @Suite("Cgroup v1 driver (fake cgroupfs)")
    struct V1Driver {
        /// memory, comounted cpu,cpuacct, pids, freezer.
        static func layout(_ fs: FakeCgroupFileSystem) -> [String: String] {
            let memory = fs.makeV1Hierarchy("memory", controllers: ["memory"])
            let cpu = fs.makeV1Hierarchy("cpu,cpuacct", controllers: ["cpu", "cpuacct"])
            let pids = fs.makeV1Hierarchy("pids", controllers: ["pids"])
            let freezer = fs.makeV1Hierarchy("freezer", controllers: ["freezer"])
            return ["memory": memory, "cpu": cpu, "cpuacct": cpu, "pids": pids, "freezer": freezer]
        }

        @Test func createWritesTheLimits() throws {
            let fs = FakeCgroupFileSystem()
            let mounts = Self.layout(fs)
            let driver = CgroupV1Driver(mounts: mounts, fs: fs, controllers: CgroupV1Driver.knownControllers)
            #expect(driver.version == 1)
            #expect(driver.controllers == ["memory", "cpu", "cpuacct", "pids", "freezer"])
            let run = try driver.create(name: "r1", limits: CgroupLimits(memoryBytes: 128 << 20, cpus: 1.5, pidsMax: 100))
            let memory = fs.path("memory/levain/r1"), cpu = fs.path("cpu,cpuacct/levain/r1")
            let pids = fs.path("pids/levain/r1"), freezer = fs.path("freezer/levain/r1")
            #expect(fs.writes == [
                .init(path: memory + "/memory.limit_in_bytes", text: "134217728"),
                .init(path: memory + "/memory.memsw.limit_in_bytes", text: "134217728"),
                .init(path: memory + "/memory.swappiness", text: "0"),
                .init(path: cpu + "/cpu.cfs_period_us", text: "100000"),
                .init(path: cpu + "/cpu.cfs_quota_us", text: "150000"),
                .init(path: pids + "/pids.max", text: "100"),
            ])
            #expect(fs.content(memory + "/memory.memsw.limit_in_bytes") == "134217728\n")
            #expect(run.paths == [memory, cpu, pids, freezer])
            #expect(run.procsPaths == run.paths.map { $0 + "/cgroup.procs" })
            #expect(try run.directoryFileDescriptor() == nil)
            let fds = try run.procsFileDescriptors()
            #expect(fds.count == 4)
            for fd in fds { close(fd) }
            // Nothing was written into the parents or the hierarchy roots.
            #expect(fs.writes.allSatisfy { $0.path.contains("/levain/r1/") })

            // Raising the limit of an existing cgroup would need memsw first; the
            // fake enforces memsw >= memory like the kernel.
            #expect(throws: SystemError.self) { try fs.writeText(memory + "/memory.limit_in_bytes", "999999999") }
        }

        @Test func freezerOnlyWhenItsHierarchyIsUsed() throws {
            let fs = FakeCgroupFileSystem()
            let mounts = Self.layout(fs)
            // The default controllers (the one-shot run's) leave the freezer out.
            let lean = try CgroupV1Driver(mounts: mounts, fs: fs).create(name: "a", limits: CgroupLimits())
            #expect(!lean.canFreeze)
            #expect(throws: SystemError.self) { try lean.setFrozen(true) }
            // The supervisor's (freezer added) can pause a run's cgroup.
            let run = try CgroupV1Driver(mounts: mounts, fs: fs, controllers: CgroupV1Driver.defaultControllers + ["freezer"])
                .create(name: "b", limits: CgroupLimits())
            #expect(run.paths.contains(fs.path("freezer/levain/b")))
            #expect(try run.setFrozen(true))
            #expect(fs.content(fs.path("freezer/levain/b/freezer.state")) == "FROZEN\n")
            #expect(try run.setFrozen(false))
            #expect(fs.content(fs.path("freezer/levain/b/freezer.state")) == "THAWED\n")
        }

        @Test func swapOnLeavesMemswAlone() throws {
            let fs = FakeCgroupFileSystem()
            let driver = CgroupV1Driver(mounts: Self.layout(fs), fs: fs, controllers: CgroupV1Driver.knownControllers)
            _ = try driver.create(name: "s", limits: CgroupLimits(memoryBytes: 1 << 20, swapOff: false))
            #expect(fs.writes == [.init(path: fs.path("memory/levain/s/memory.limit_in_bytes"), text: "1048576")])
        }

        @Test func noSwapAccountingSkipsMemsw() throws {
            let fs = FakeCgroupFileSystem(hasSwap: false)
            let driver = CgroupV1Driver(mounts: ["memory": fs.makeV1Hierarchy("memory", controllers: ["memory"])], fs: fs, controllers: CgroupV1Driver.knownControllers)
            _ = try driver.create(name: "s", limits: CgroupLimits(memoryBytes: 1 << 20))
            #expect(fs.writes.map(\.path) == [fs.path("memory/levain/s/memory.limit_in_bytes"),
                                              fs.path("memory/levain/s/memory.swappiness")])
        }

        @Test func existingCgroupIsNeverReusedAndNothingElseIsTouched() throws {
            let fs = FakeCgroupFileSystem()
            let mounts = Self.layout(fs)
            // Someone else's cgroup with our name, in the pids hierarchy only.
            #expect(Glibc.mkdir(fs.path("pids/levain"), 0o755) == 0)
            try fs.mkdir(fs.path("pids/levain/taken"))
            fs.clearWrites()
            let error = #expect(throws: SystemError.self) {
                try CgroupV1Driver(mounts: mounts, fs: fs, controllers: CgroupV1Driver.knownControllers).create(name: "taken", limits: CgroupLimits(pidsMax: 5))
            }
            #expect(error?.errno == .fileExists)
            #expect(fs.writes.isEmpty)
            #expect(fs.isDirectory(fs.path("pids/levain/taken")))
            #expect(!fs.exists(fs.path("memory/levain/taken")))
            #expect(!fs.exists(fs.path("memory/levain")))  // created by the failed attempt, removed again
            #expect(fs.isDirectory(fs.path("pids/levain")))  // not ours to remove
        }

        @Test func failureMidwayRemovesEverythingCreated() throws {
            let fs = FakeCgroupFileSystem()
            let mounts = Self.layout(fs)
            fs.failWrites(to: fs.path("pids/levain/f/pids.max"), with: .permissionDenied)
            #expect(throws: SystemError.self) {
                try CgroupV1Driver(mounts: mounts, fs: fs, controllers: CgroupV1Driver.knownControllers).create(name: "f", limits: CgroupLimits(memoryBytes: 1 << 20, pidsMax: 5))
            }
            for hierarchy in ["memory", "cpu,cpuacct", "pids", "freezer"] {
                #expect(!fs.exists(fs.path(hierarchy + "/levain")), "\(hierarchy)")
            }
        }

        @Test func missingHierarchyForALimitIsAnError() {
            let fs = FakeCgroupFileSystem()
            let memory = fs.makeV1Hierarchy("memory", controllers: ["memory"])
            let driver = CgroupV1Driver(mounts: ["memory": memory], fs: fs, controllers: CgroupV1Driver.knownControllers)
            let error = #expect(throws: SystemError.self) {
                try driver.create(name: "p", limits: CgroupLimits(pidsMax: 5))
            }
            #expect(error?.message.contains("pids") == true)
            #expect(!fs.exists(memory + "/levain"))
        }

        @Test func usageIsParsed() throws {
            let fs = FakeCgroupFileSystem()
            let run = try CgroupV1Driver(mounts: Self.layout(fs), fs: fs, controllers: CgroupV1Driver.knownControllers).create(name: "u", limits: CgroupLimits())
            let memory = fs.path("memory/levain/u"), cpu = fs.path("cpu,cpuacct/levain/u"), pids = fs.path("pids/levain/u")
            fs.seed(memory + "/memory.max_usage_in_bytes", "52428800\n")
            fs.seed(memory + "/memory.failcnt", "31\n")
            fs.seed(memory + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
            fs.seed(pids + "/pids.events", "max 4\n")
            fs.seed(cpu + "/cpu.stat", "nr_periods 10\nnr_throttled 6\nthrottled_time 7500000\nnr_bursts 0\nburst_time 0\n")
            fs.seed(cpu + "/cpuacct.usage_user", "2000000000\n")
            fs.seed(cpu + "/cpuacct.usage_sys", "300000000\n")
            #expect(run.usage() == CgroupUsage(
                peakMemoryBytes: 52_428_800, oomKills: 3, memoryLimitHits: 31, pidsLimitHits: 4,
                cpuUserMicros: 2_000_000, cpuSystemMicros: 300_000, cpuThrottledMicros: 7_500, nrThrottled: 6))

            // Older kernels without usage_user/usage_sys: cpuacct.stat in USER_HZ.
            unlink(cpu + "/cpuacct.usage_user")
            unlink(cpu + "/cpuacct.usage_sys")
            fs.seed(cpu + "/cpuacct.stat", "user 250\nsystem 12\n")
            let older = run.usage()
            #expect(older.cpuUserMicros == 2_500_000 && older.cpuSystemMicros == 120_000)
        }

        @Test func killFreezesSignalsAndThawsEveryHierarchy() throws {
            let fs = FakeCgroupFileSystem()
            let run = try CgroupV1Driver(mounts: Self.layout(fs), fs: fs, controllers: CgroupV1Driver.knownControllers).create(name: "k", limits: CgroupLimits())
                .withSignalSender { pid, _ in fs.removeProcess(pid) }
            // A pid only some hierarchies have (the spawn was interrupted midway).
            try fs.writeText(fs.path("memory/levain/k/cgroup.procs"), "2000000010")
            try fs.writeText(fs.path("freezer/levain/k/cgroup.procs"), "2000000010")
            try fs.writeText(fs.path("pids/levain/k/cgroup.procs"), "2000000011")
            #expect(run.pids() == [2_000_000_010, 2_000_000_011])
            fs.clearWrites()
            #expect(run.kill())
            let state = fs.path("freezer/levain/k/freezer.state")
            #expect(fs.writes == [.init(path: state, text: "FROZEN"), .init(path: state, text: "THAWED")])
            #expect(run.pids().isEmpty)
            try run.remove()
            #expect(!fs.exists(fs.path("memory/levain/k")) && !fs.exists(fs.path("freezer/levain/k")))
        }
    }
}

// MARK: - v1 on the real kernel

extension CgroupTests {
    @Suite("Cgroup v1 driver (real kernel)", .serialized)
    struct RealV1 {
        static let v1MemoryMounted: Bool = {
            guard case .v1(let mounts) = CgroupLayout.detect(),
                  let memory = mounts["memory"] else { return false }
            return RealCgroupFileSystem().exists(memory + "/memory.limit_in_bytes")
        }()

        static let enabled = getuid() == 0 && v1MemoryMounted
        static let parent = "levain-test"

        /// The driver, and the `<mount>/levain-test` directories that did not
        /// exist before (only those are removed at the end, and only if empty).
        static func driver(freezer: Bool = true) throws -> (CgroupV1Driver, [String]) {
            guard case .v1(var mounts) = CgroupLayout.detect() else { throw SystemError(.unsupported, "not v1") }
            if !freezer { mounts["freezer"] = nil }
            let driver = CgroupV1Driver(mounts: mounts, parent: parent, controllers: CgroupV1Driver.knownControllers)
            let fs = RealCgroupFileSystem()
            let fresh = driver.hierarchies.map { $0 + "/" + parent }.filter { !fs.exists($0) }
            return (driver, fresh)
        }

        static func removeParents(_ fresh: [String]) {
            for dir in fresh { _ = Glibc.rmdir(dir) }  // fails (ENOTEMPTY/EBUSY) unless empty
        }

        static func randomName() -> String {
            "t-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        }

        /// posix_spawn with stdio on /dev/null.
        static func spawn(_ argv: [String]) throws -> pid_t {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            for fd: Int32 in 0...2 {
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
            }
            // Not the test process's sockets (NIO's are not close-on-exec).
            QuietProcess.closeInherited(&actions)
            var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            var cEnv: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
            defer { for arg in cArgs + cEnv { free(arg) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, &cEnv)
            guard rc == 0 else { throw SystemError.syscall("posix_spawn \(argv[0])", errno: rc) }
            return pid
        }

        /// Writes `pid` into every hierarchy of `run`, as the spawn code does.
        static func enter(_ pid: pid_t, _ run: RunCgroup) throws {
            let fds = try run.procsFileDescriptors()
            defer { for fd in fds { close(fd) } }
            for fd in fds {
                let text = Array("\(pid)".utf8)
                let n = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n == text.count else { throw SystemError.syscall("write cgroup.procs") }
            }
        }

        /// waitpid, returning the terminating signal (0 for a normal exit).
        static func waitSignal(_ pid: pid_t) -> Int32 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let termsig = status & 0x7f
            return termsig != 0 && termsig != 0x7f ? termsig : 0
        }

        static func cleanup(_ pids: [pid_t], _ run: RunCgroup?) {
            for pid in pids { _ = Glibc.kill(pid, SIGKILL) }
            run?.kill()
            for pid in pids { _ = waitSignal(pid) }
            try? run?.remove()
        }

        @Test(.enabled(if: RealV1.enabled)) func createAccountKillRemove() throws {
            let (driver, fresh) = try Self.driver()
            defer { Self.removeParents(fresh) }
            let name = Self.randomName()
            let run = try driver.create(name: name, limits: CgroupLimits(memoryBytes: 256 << 20, cpus: 0.5, pidsMax: 64))
            var children: [pid_t] = []
            defer { Self.cleanup(children, run) }
            let fs = RealCgroupFileSystem()

            let memory = try #require(driver.mounts["memory"]) + "/\(Self.parent)/\(name)"
            #expect(run.paths.contains(memory))
            #expect(Cgroupfs.trimmed(try fs.readText(memory + "/memory.limit_in_bytes")) == "268435456")
            if fs.exists(memory + "/memory.memsw.limit_in_bytes") {
                #expect(Cgroupfs.trimmed(try fs.readText(memory + "/memory.memsw.limit_in_bytes")) == "268435456")
            }
            if let cpu = driver.mounts["cpu"] {
                #expect(Cgroupfs.trimmed(try fs.readText("\(cpu)/\(Self.parent)/\(name)/cpu.cfs_quota_us")) == "50000")
            }
            if let pids = driver.mounts["pids"] {
                #expect(Cgroupfs.trimmed(try fs.readText("\(pids)/\(Self.parent)/\(name)/pids.max")) == "64")
            }

            let pid = try Self.spawn(["/bin/sleep", "30"])
            children.append(pid)
            try Self.enter(pid, run)
            #expect(run.pids() == [pid])
            let membership = try fs.readText("/proc/\(pid)/cgroup")
            #expect(membership.contains("memory:/\(Self.parent)/\(name)"))

            usleep(50_000)
            let usage = run.usage()
            #expect(usage.peakMemoryBytes != nil)
            #expect(usage.oomKills == 0 && usage.pidsLimitHits == 0)
            #expect(usage.cpuUserMicros != nil && usage.cpuSystemMicros != nil)
            #expect(usage.nrThrottled != nil)

            #expect(run.kill())
            #expect(Self.waitSignal(pid) == SIGKILL)
            children.removeAll()
            #expect(run.pids().isEmpty)

            try run.remove()
            for path in run.paths { #expect(!fs.exists(path), "\(path)") }
            try run.remove()  // ENOENT is success
        }

        /// With the freezer, and without it (the plain SIGKILL loop).
        @Test(.enabled(if: RealV1.enabled), arguments: [true, false])
        func killStoppedAndForkingProcesses(freezer: Bool) throws {
            let (driver, fresh) = try Self.driver(freezer: freezer)
            defer { Self.removeParents(fresh) }
            // pids.max bounds the forking loop should kill() fail.
            let run = try driver.create(name: Self.randomName(), limits: CgroupLimits(memoryBytes: 256 << 20, pidsMax: 128))
            var children: [pid_t] = []
            defer { Self.cleanup(children, run) }

            let stopped = try Self.spawn(["/bin/sleep", "30"])
            children.append(stopped)
            #expect(Glibc.kill(stopped, SIGSTOP) == 0)
            try Self.enter(stopped, run)
            // Reaps its children, so it forks forever without piling up zombies.
            let forker = try Self.spawn(["/bin/sh", "-c", "while :; do /bin/true & /bin/true & wait; done"])
            children.append(forker)
            try Self.enter(forker, run)
            // Leaves long-lived children behind, orphaned once it dies. It waits
            // a moment first: it joins the cgroup only after posix_spawn returns.
            let breeder = try Self.spawn(["/bin/sh", "-c", "/bin/sleep 0.1; while :; do /bin/sleep 30 & /bin/sleep 0.02; done"])
            children.append(breeder)
            try Self.enter(breeder, run)
            let selfStopping = try Self.spawn(["/bin/sh", "-c", "kill -STOP $$"])
            children.append(selfStopping)
            try Self.enter(selfStopping, run)

            usleep(400_000)
            let before = run.pids()
            #expect(before.contains(stopped) && before.contains(forker) && before.contains(breeder))
            #expect(before.count > 5)
            #expect((run.freezePath != nil) == freezer)

            #expect(run.kill())
            #expect(run.pids().isEmpty)
            for path in run.procsPaths {
                #expect(Cgroupfs.pidList(try RealCgroupFileSystem().readText(path)).isEmpty, "\(path)")
            }
            #expect(Self.waitSignal(stopped) == SIGKILL)
            #expect(Self.waitSignal(forker) == SIGKILL)
            #expect(Self.waitSignal(breeder) == SIGKILL)
            #expect(Self.waitSignal(selfStopping) == SIGKILL)
            children.removeAll()
            try run.remove()
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CLevainSpawn
/// Which cgroup hierarchies this machine has and where they are mounted.
///
/// `.v2(mountPoint)`: the unified hierarchy carries the controllers Levain
/// needs (memory, pids, cpu). `.v1(controller -> mountPoint)`: legacy or
/// hybrid machines, where the controllers sit on separate v1 hierarchies
/// (a comounted "cpu,cpuacct" maps both names to the same mount point) and a
/// cgroup2 mount, if any, is the nearly empty "unified" one systemd keeps for
/// itself. `.none`: no cgroup2 mount and no v1 hierarchy with a controller
/// the drivers use (or /proc/self/mountinfo unreadable).
public enum CgroupLayout: Sendable, Equatable {
    case v2(String)
    case v1([String: String])
    case none

    /// Controllers the drivers use; a v1 hierarchy holding none of these does
    /// not make a machine "v1" (think name=systemd).
    public static let v1Controllers: Set<String> = ["memory", "cpu", "cpuacct", "pids", "freezer"]
    /// Controllers the v2 driver needs delegated.
    public static let v2Controllers: [String] = ["memory", "pids", "cpu"]

    /// Every controller name a v1 hierarchy can carry in its super options;
    /// anything else there (rw, name=systemd, clone_children, ...) is an option.
    static let knownV1Controllers: Set<String> = [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
        "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc", "debug",
    ]

    /// The cgroup mounts of one mountinfo text.
    struct Mounts: Equatable {
        /// controller -> mount point, the first mount of each hierarchy.
        var v1: [String: String] = [:]
        /// cgroup2 mount points in mountinfo order.
        var v2: [String] = []
    }

    /// Detection from the mountinfo text alone: v1 when any controller the
    /// drivers use sits on a v1 hierarchy (hybrid machines included), else v2
    /// when cgroup2 is mounted (the top-most such mount), else `.none`.
    public static func parse(mountinfo: String) -> CgroupLayout {
        decide(mounts(in: mountinfo), controllersOf: { _ in nil })
    }

    /// Detection on the running machine: reads /proc/self/mountinfo and, for
    /// each cgroup2 mount, its cgroup.controllers, so that a unified
    /// hierarchy carrying memory, pids and cpu wins even if stray v1
    /// hierarchies exist beside it.
    public static func detect(fs: any CgroupFileSystem = RealCgroupFileSystem()) -> CgroupLayout {
        guard let text = fs.readTextIfPresent("/proc/self/mountinfo") else { return .none }
        return decide(mounts(in: text), controllersOf: { mount in
            fs.readTextIfPresent(Cgroupfs.join(mount, "cgroup.controllers"))
        })
    }

    static func decide(_ mounts: Mounts, controllersOf: (String) -> String?) -> CgroupLayout {
        // Shortest path first: /sys/fs/cgroup before /sys/fs/cgroup/unified.
        let v2Mounts = mounts.v2.enumerated()
            .sorted { ($0.element.count, $0.offset) < ($1.element.count, $1.offset) }
            .map(\.element)
        for mount in v2Mounts {
            guard let text = controllersOf(mount) else { continue }
            let present = Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
            if v2Controllers.allSatisfy(present.contains) { return .v2(mount) }
        }
        if !Set(mounts.v1.keys).isDisjoint(with: v1Controllers) { return .v1(mounts.v1) }
        if let top = v2Mounts.first { return .v2(top) }
        return .none
    }

    static func mounts(in mountinfo: String) -> Mounts {
        var result = Mounts()
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count else { continue }
            let fsType = fields[dash + 1]
            let mountPoint = unescape(fields[4])
            switch fsType {
            case "cgroup2":
                result.v2.append(mountPoint)
            case "cgroup":
                guard dash + 3 < fields.count else { continue }
                for option in fields[dash + 3].split(separator: ",") {
                    let name = String(option)
                    guard knownV1Controllers.contains(name), result.v1[name] == nil else { continue }
                    result.v1[name] = mountPoint
                }
            default:
                continue
            }
        }
        return result
    }

    /// Undoes the kernel's octal escapes in mountinfo (\040 space, \011 tab,
    /// \012 newline, \134 backslash).
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count {
                let digits = bytes[(i + 1)...(i + 3)]
                if digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                    let value = digits.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
                    if value < 256 {
                        out.append(UInt8(value))
                        i += 4
                        continue
                    }
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A cheap first look (one statfs): whether /sys/fs/cgroup itself is a
    /// cgroup2 mount, as on pure-v2 machines. `detect` decides for real.
    public static func looksUnified(_ path: String = "/sys/fs/cgroup") -> Bool {
        lv_is_cgroup2_mount(path) == 1
    }

    /// The driver for this layout; nil for `.none`.
    public func makeDriver(parent: String = "levain", fs: any CgroupFileSystem = RealCgroupFileSystem()) -> (any CgroupDriver)? {
        switch self {
        case .v2(let root): CgroupV2Driver(root: root, parent: parent, fs: fs)
        case .v1(let mounts): CgroupV1Driver(mounts: mounts, parent: parent, fs: fs)
        case .none: nil
        }
    }
}

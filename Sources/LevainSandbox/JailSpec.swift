import LevainPolicy

/// One operation of a jail's root filesystem plan, applied in order below a
/// fresh tmpfs root before pivot_root. Jail paths are absolute; the spawn
/// core resolves them beneath the new root without following symlinks.
public enum MountOp: Sendable, Equatable {
    /// Recursive bind of a canonical host path.
    case bind(source: String, target: String, readOnly: Bool, optional: Bool, devices: Bool = false)
    case tmpfs(target: String, options: String, readOnly: Bool = false, noexec: Bool = false)
    /// The ext4 filesystem on a block device (a workspace image's loop
    /// device, which the parent holds open until the jail runs).
    case ext4(device: String, target: String, options: String)
    case proc(target: String)
    case devpts(target: String, options: String)
    case directory(target: String, mode: UInt32)
    case symlink(target: String, pointingTo: String)
    case file(target: String, contents: [UInt8], mode: UInt32)
    /// /dev/null over a file, an empty read-only tmpfs over a directory (if present).
    case mask(target: String)
    /// A read-only recursive bind of target onto itself (if present).
    case readOnly(target: String)
    /// Make the mount at target read-only (that mount only, not submounts).
    case remountReadOnly(target: String, devices: Bool = false)
}

/// Landlock access rights (LANDLOCK_ACCESS_FS_*), by ABI.
public enum LandlockAccess {
    public static let execute: UInt64 = 1 << 0
    public static let writeFile: UInt64 = 1 << 1
    public static let readFile: UInt64 = 1 << 2
    public static let readDir: UInt64 = 1 << 3
    public static let removeDir: UInt64 = 1 << 4
    public static let removeFile: UInt64 = 1 << 5
    public static let makeChar: UInt64 = 1 << 6
    public static let makeDir: UInt64 = 1 << 7
    public static let makeReg: UInt64 = 1 << 8
    public static let makeSock: UInt64 = 1 << 9
    public static let makeFifo: UInt64 = 1 << 10
    public static let makeBlock: UInt64 = 1 << 11
    public static let makeSym: UInt64 = 1 << 12
    public static let refer: UInt64 = 1 << 13       // ABI 2
    public static let truncate: UInt64 = 1 << 14    // ABI 3
    public static let ioctlDev: UInt64 = 1 << 15    // ABI 5

    public static let scopeAbstractUnixSocket: UInt64 = 1 << 0  // ABI 6
    public static let scopeSignal: UInt64 = 1 << 1              // ABI 6

    /// Every filesystem right the given ABI knows.
    public static func all(abi: Int) -> UInt64 {
        var v: UInt64 = (1 << 13) - 1
        if abi >= 2 { v |= refer }
        if abi >= 3 { v |= truncate }
        if abi >= 5 { v |= ioctlDev }
        return v
    }

    public static let read: UInt64 = execute | readFile | readDir
}

public struct LandlockRule: Sendable, Equatable {
    public var path: String
    public var access: UInt64
    public var optional: Bool
}

public struct LandlockPlan: Sendable, Equatable {
    public var abi: Int
    public var handledFS: UInt64
    public var scoped: UInt64
    public var rules: [LandlockRule]
}

public struct ResourceLimit: Sendable, Equatable {
    public var resource: Int32
    public var name: String
    public var soft: UInt64
    public var hard: UInt64

    public init(resource: Int32, name: String, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.name = name
        self.soft = soft
        self.hard = hard
    }
}

/// Everything a jail is made of, resolved to concrete values: what the spawn
/// core needs and nothing it has to decide.
public struct JailSpec: Sendable {
    public var argv: [String]
    public var environment: [String]
    public var cwd: String
    public var searchPath: String
    public var namespaces: Policy.Namespaces
    public var mounts: [MountOp]
    /// Mounts from this index on are applied after the parent's placement
    /// (see Spawner.spawn); mounts.count when none wait.
    public var mountsAfterPlacement: Int
    public var hostname: String
    public var loopbackUp: Bool
    public var uid: UInt32
    public var gid: UInt32
    /// Jail ids [0, idRangeSize) map to host ids [hostIDBase, hostIDBase + idRangeSize).
    public var hostIDBase: UInt32
    public var idRangeSize: UInt32
    public var rlimits: [ResourceLimit]
    public var seccomp: [BPFProgram]
    public var landlock: LandlockPlan?
    /// Run the command itself as PID 1 (an init such as levain-harness).
    public var execAsInit: Bool
    /// fds an init command (execAsInit) finds at 3, 4, ... (a protocol socket).
    public var keepFDs: [Int32]
    /// Capabilities (of the jail's user namespace) the command keeps:
    /// levain-harness keeps CAP_SETUID, CAP_SETGID and CAP_KILL to start
    /// runs as the jail user. Empty for ordinary commands.
    public var keepCapabilities: [Int32] = []
    public var stdinFD: Int32 = -1
    public var stdoutFD: Int32 = -1
    public var stderrFD: Int32 = -1
    /// The audit layer (`[audit]`), installed after `seccomp` with a new
    /// listener that the command's setup sends over `auditSocket` (a
    /// SOCK_SEQPACKET socket the caller reads) before the exec.
    public var audit: (filter: BPFProgram, socket: Int32)?

    public init(argv: [String], environment: [String], cwd: String, searchPath: String,
                namespaces: Policy.Namespaces, mounts: [MountOp], hostname: String, loopbackUp: Bool,
                uid: UInt32, gid: UInt32, hostIDBase: UInt32, idRangeSize: UInt32,
                rlimits: [ResourceLimit], seccomp: [BPFProgram], landlock: LandlockPlan?,
                execAsInit: Bool = false, keepFDs: [Int32] = []) {
        self.argv = argv
        self.environment = environment
        self.cwd = cwd
        self.searchPath = searchPath
        self.namespaces = namespaces
        self.mounts = mounts
        self.mountsAfterPlacement = mounts.count
        self.hostname = hostname
        self.loopbackUp = loopbackUp
        self.uid = uid
        self.gid = gid
        self.hostIDBase = hostIDBase
        self.idRangeSize = idRangeSize
        self.rlimits = rlimits
        self.seccomp = seccomp
        self.landlock = landlock
        self.execAsInit = execAsInit
        self.keepFDs = keepFDs
    }
}

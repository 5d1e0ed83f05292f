#if canImport(Glibc)
import Glibc
#endif
import CSeccomp

/// Seccomp return actions (the kernel's SECCOMP_RET_* values).
public enum SeccompAction: Sendable, Equatable, Hashable, CustomStringConvertible {
    case killProcess
    case killThread
    case trap
    case errno(UInt16)
    case trace(UInt16)
    /// SECCOMP_RET_USER_NOTIF: the audit layer's (never a profile's).
    case notify
    case log
    case allow

    public var rawValue: UInt32 {
        switch self {
        case .killProcess: 0x8000_0000
        case .killThread: 0x0000_0000
        case .trap: 0x0003_0000
        case .errno(let e): 0x0005_0000 | UInt32(e)
        case .trace(let m): 0x7ff0_0000 | UInt32(m)
        case .notify: 0x7fc0_0000
        case .log: 0x7ffc_0000
        case .allow: 0x7fff_0000
        }
    }

    public init(rawValue: UInt32) {
        switch rawValue & 0xffff_0000 {
        case 0x8000_0000: self = .killProcess
        case 0x0000_0000: self = .killThread
        case 0x0003_0000: self = .trap
        case 0x0005_0000: self = .errno(UInt16(rawValue & 0xffff))
        case 0x7ff0_0000: self = .trace(UInt16(rawValue & 0xffff))
        case 0x7fc0_0000: self = .notify
        case 0x7ffc_0000: self = .log
        case 0x7fff_0000: self = .allow
        default: self = .killProcess  // anything unknown kills, as in the kernel
        }
    }

    /// Precedence as the kernel applies it across stacked filters: the
    /// action with the lowest signed value of its action bits wins.
    var precedence: Int32 { Int32(bitPattern: rawValue & 0xffff_0000) }

    public var description: String {
        switch self {
        case .killProcess: "kill-process"
        case .killThread: "kill-thread"
        case .trap: "trap"
        case .errno(let e): "errno(\(SeccompAction.errnoName(Int32(e))))"
        case .trace(let m): "trace(\(m))"
        case .notify: "notify"
        case .log: "log"
        case .allow: "allow"
        }
    }

    static func errnoName(_ e: Int32) -> String {
        let names: [Int32: String] = [
            EPERM: "EPERM", ENOSYS: "ENOSYS", EACCES: "EACCES", EAFNOSUPPORT: "EAFNOSUPPORT",
            EPROTONOSUPPORT: "EPROTONOSUPPORT", EINVAL: "EINVAL", ENOTSUP: "EOPNOTSUPP", ENOENT: "ENOENT",
        ]
        return names[e] ?? "\(e)"
    }
}

/// One compiled classic-BPF program, ready for seccomp(SECCOMP_SET_MODE_FILTER).
public struct BPFProgram: Sendable, Equatable {
    /// struct sock_filter[], 8 bytes per instruction.
    public var bytes: [UInt8]
    public var instructionCount: Int { bytes.count / 8 }

    public init(bytes: [UInt8]) { self.bytes = bytes }
}

/// What a profile compiled to.
public struct CompiledSeccomp: Sendable, Equatable {
    /// Installed in this order: the allow layer, then (if any) the layer of
    /// argument-conditional denials.
    public var programs: [BPFProgram]
    public var defaultAction: SeccompAction
    public var architectures: [String]
    /// Names the profile lists that this libseccomp does not know on the
    /// native architecture (ignored, like runc does).
    public var unknownNames: [String]
    public var allowedSyscalls: Int
    public var deniedSyscalls: Int
    /// Rules skipped because their includes/excludes did not match this
    /// machine (capabilities Levain never grants, other architectures).
    public var skippedRules: Int

    public init(programs: [BPFProgram], defaultAction: SeccompAction, architectures: [String], unknownNames: [String],
                allowedSyscalls: Int, deniedSyscalls: Int, skippedRules: Int) {
        self.programs = programs
        self.defaultAction = defaultAction
        self.architectures = architectures
        self.unknownNames = unknownNames
        self.allowedSyscalls = allowedSyscalls
        self.deniedSyscalls = deniedSyscalls
        self.skippedRules = skippedRules
    }
}

/// Compiles OCI seccomp profiles with libseccomp, in the parent: the jail's
/// child only installs the resulting programs.
///
/// Layering: libseccomp silently drops an argument-conditional rule when the
/// same syscall also has an unconditional rule with another action ("allow
/// ioctl" plus "ioctl TIOCSTI -> EPERM" keeps only the allow). Such
/// conditional non-allow rules go into a second filter (layer B, default
/// allow, installed after the first); every other rule stays in layer A. The
/// kernel applies the most restrictive result of stacked filters, so the
/// denial overrides the allow, as the profile's author meant. A profile
/// without such a conflict compiles to one filter, as with runc.
public enum SeccompCompiler {
    public static let maxInstructions = 4096

    public static func compile(_ profile: SeccompProfile, file: String) throws(PolicyError) -> CompiledSeccomp {
        if let listener = profile.listenerPath, !listener.isEmpty {
            throw PolicyError(.seccomp, file: file, key: "listenerPath",
                              "seccomp user notification (listenerPath) is not supported yet; remove it")
        }
        if let flags = profile.flags, !flags.isEmpty {
            throw PolicyError(.seccomp, file: file, key: "flags",
                              "filter flags \(flags) are not supported; remove \"flags\"")
        }
        let defaultAction = try action(profile.defaultAction, errnoRet: profile.defaultErrnoRet, file: file, key: "defaultAction")

        let native = seccomp_arch_native()
        var arches: [UInt32] = []
        var archNames: [String] = []
        var listed = profile.architectures ?? []
        for entry in profile.archMap ?? [] where try archToken(entry.architecture, file: file) == native {
            listed.append(entry.architecture)
            listed.append(contentsOf: entry.subArchitectures ?? [])
        }
        if listed.isEmpty { listed = [nativeArchName()] }
        var nativeListed = false
        for name in listed {
            let token = try archToken(name, file: file)
            if token == native { nativeListed = true }
            if !arches.contains(token) {
                arches.append(token)
                archNames.append(name)
            }
        }
        // A profile for other machines only (say, aarch64 on an x86_64 host)
        // cannot be applied here.
        guard nativeListed else {
            throw PolicyError(.seccomp, file: file, key: "architectures",
                              "the profile does not list this machine's architecture (\(nativeArchName()))")
        }
        // Keep only the architectures that can exist on this machine: the
        // native one and its compat ABIs, when the profile asks for them.
        let compat = compatibleArches(of: native)
        let kept = zip(arches, archNames).filter { $0.0 == native || compat.contains($0.0) }
        arches = kept.map(\.0)
        archNames = kept.map(\.1)

        let kernel = kernelVersion()
        var layerA: [(UInt32, Int32, [scmp_arg_cmp])] = []
        var layerB: [(UInt32, Int32, [scmp_arg_cmp])] = []
        var unknown: [String] = []
        var rules: [(SeccompAction, Int32, [scmp_arg_cmp])] = []
        var allowed = Set<String>()
        var denied = Set<String>()
        var skipped = 0
        for (index, rule) in (profile.syscalls ?? []).enumerated() {
            let key = "syscalls[\(index)]"
            guard applies(rule, native: native, kernel: kernel, file: file) else {
                skipped += 1
                continue
            }
            let act = try action(rule.action, errnoRet: rule.errnoRet, file: file, key: "\(key).action")
            var conds: [scmp_arg_cmp] = []
            var seenIndexes = Set<UInt32>()
            for (ai, arg) in (rule.args ?? []).enumerated() {
                guard arg.index < 6 else {
                    throw PolicyError(.seccomp, file: file, key: "\(key).args[\(ai)].index", "argument index \(arg.index) is out of range 0...5")
                }
                guard seenIndexes.insert(arg.index).inserted else {
                    throw PolicyError(.seccomp, file: file, key: "\(key).args[\(ai)]",
                                      "two conditions on argument \(arg.index) in one rule are not supported by libseccomp; split them into separate rules")
                }
                conds.append(scmp_arg_cmp(arg: arg.index, op: try compare(arg.op, file: file, key: "\(key).args[\(ai)].op"),
                                          datum_a: arg.value, datum_b: arg.valueTwo ?? 0))
            }
            if rule.allNames.isEmpty {
                throw PolicyError(.seccomp, file: file, key: "\(key).names", "a rule needs at least one syscall name")
            }
            for name in rule.allNames {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == __NR_SCMP_ERROR {
                    unknown.append(name)
                    continue
                }
                if act == .allow { allowed.insert(name) } else { denied.insert(name) }
                rules.append((act, nr, conds))
            }
        }
        // Only a conditional rule whose syscall also has an unconditional
        // rule (with another action) needs the second layer; everything else
        // is one filter, as libseccomp would build it.
        var unconditional: [Int32: SeccompAction] = [:]
        for (act, nr, conds) in rules where conds.isEmpty { unconditional[nr] = act }
        for (act, nr, conds) in rules {
            let entry = (act.rawValue, nr, conds)
            if !conds.isEmpty, act != .allow, let u = unconditional[nr], u != act {
                layerB.append(entry)
            } else {
                layerA.append(entry)
            }
        }

        var programs: [BPFProgram] = []
        programs.append(try build(default: defaultAction.rawValue, arches: arches, native: native, rules: layerA, file: file))
        if !layerB.isEmpty {
            programs.append(try build(default: SeccompAction.allow.rawValue, arches: arches, native: native, rules: layerB, file: file))
        }
        return CompiledSeccomp(programs: programs, defaultAction: defaultAction, architectures: archNames,
                               unknownNames: unknown, allowedSyscalls: allowed.count,
                               deniedSyscalls: denied.subtracting(allowed).count, skippedRules: skipped)
    }

    static func build(default def: UInt32, arches: [UInt32], native: UInt32,
                      rules: [(UInt32, Int32, [scmp_arg_cmp])], file: String,
                      badArch: UInt32 = SeccompAction.killProcess.rawValue) throws(PolicyError) -> BPFProgram {
        guard let ctx = seccomp_init(def) else {
            throw PolicyError(.seccomp, file: file, "libseccomp could not create a filter")
        }
        defer { seccomp_release(ctx) }
        // Foreign ABIs (i386 via int 0x80, x32) not listed: the process dies.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, badArch)
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for arch in arches where arch != native {
            let r = seccomp_arch_add(ctx, arch)
            if r != 0 && r != -EEXIST {
                throw PolicyError(.seccomp, file: file, key: "architectures", "libseccomp cannot add architecture \(arch): \(r)")
            }
        }
        for (act, nr, conds) in rules {
            var c = conds
            let r = c.withUnsafeMutableBufferPointer { buf in
                seccomp_rule_add_array(ctx, act, nr, UInt32(buf.count), buf.baseAddress)
            }
            // -EACCES: the rule's action is the filter's default, so the rule
            // is redundant (an explicit "clone3 -> ENOSYS" under a default of
            // ENOSYS); libseccomp refuses it and runc skips it too.
            if r != 0 && r != -EACCES {
                let name = seccomp_syscall_resolve_num_arch(native, nr).map { p -> String in
                    defer { free(p) }
                    return String(cString: p)
                } ?? "\(nr)"
                throw PolicyError(.seccomp, file: file, key: "syscalls",
                                  "libseccomp refused the rule for \(name): \(String(cString: strerror(-r)))")
            }
        }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw PolicyError(.seccomp, file: file, "pipe: \(String(cString: strerror(errno)))")
        }
        // (Glibc's module does not export pipe2; every spawn closes fds it
        // does not know anyway.)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        defer { close(fds[0]) }
        // The largest program the kernel takes (4096 instructions) is 32 KiB,
        // below a pipe's 64 KiB buffer: the export cannot block.
        let r = seccomp_export_bpf(ctx, fds[1])
        close(fds[1])
        guard r == 0 else {
            throw PolicyError(.seccomp, file: file, "libseccomp could not export the filter: \(String(cString: strerror(-r)))")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        guard bytes.count % 8 == 0, !bytes.isEmpty else {
            throw PolicyError(.seccomp, file: file, "libseccomp exported a malformed program (\(bytes.count) bytes)")
        }
        guard bytes.count / 8 <= maxInstructions else {
            throw PolicyError(.seccomp, file: file, "the profile compiles to \(bytes.count / 8) BPF instructions; the kernel takes at most \(maxInstructions)")
        }
        return BPFProgram(bytes: bytes)
    }

    static func action(_ name: String, errnoRet: UInt32?, file: String, key: String) throws(PolicyError) -> SeccompAction {
        switch name {
        case "SCMP_ACT_ALLOW": return .allow
        case "SCMP_ACT_ERRNO":
            let e = errnoRet ?? UInt32(EPERM)
            guard e <= 4095 else { throw PolicyError(.seccomp, file: file, key: key, "errnoRet \(e) is out of range 0...4095") }
            return .errno(UInt16(e))
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return .killThread
        case "SCMP_ACT_KILL_PROCESS": return .killProcess
        case "SCMP_ACT_TRAP": return .trap
        case "SCMP_ACT_TRACE": return .trace(UInt16(truncatingIfNeeded: errnoRet ?? UInt32(EPERM)))
        case "SCMP_ACT_LOG": return .log
        case "SCMP_ACT_NOTIFY":
            throw PolicyError(.seccomp, file: file, key: key, "SCMP_ACT_NOTIFY (user notification) is not supported yet")
        default:
            throw PolicyError(.seccomp, file: file, key: key,
                              "unknown action \"\(name)\"; expected SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG")
        }
    }

    static func compare(_ op: String, file: String, key: String) throws(PolicyError) -> scmp_compare {
        switch op {
        case "SCMP_CMP_NE": return SCMP_CMP_NE
        case "SCMP_CMP_LT": return SCMP_CMP_LT
        case "SCMP_CMP_LE": return SCMP_CMP_LE
        case "SCMP_CMP_EQ": return SCMP_CMP_EQ
        case "SCMP_CMP_GE": return SCMP_CMP_GE
        case "SCMP_CMP_GT": return SCMP_CMP_GT
        case "SCMP_CMP_MASKED_EQ": return SCMP_CMP_MASKED_EQ
        default:
            throw PolicyError(.seccomp, file: file, key: key, "unknown comparison \"\(op)\"; expected SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT or _MASKED_EQ")
        }
    }

    static func archToken(_ name: String, file: String) throws(PolicyError) -> UInt32 {
        var short = name
        if short.hasPrefix("SCMP_ARCH_") { short = String(short.dropFirst(10)) }
        let token = seccomp_arch_resolve_name(short.lowercased())
        guard token != 0 else {
            throw PolicyError(.seccomp, file: file, key: "architectures", "unknown architecture \"\(name)\"")
        }
        return token
    }

    static func nativeArchName() -> String {
        switch seccomp_arch_native() {
        case 0xC000_003E: "SCMP_ARCH_X86_64"
        case 0xC000_00B7: "SCMP_ARCH_AARCH64"
        default: "SCMP_ARCH_NATIVE"
        }
    }

    /// The compat ABIs a native architecture can run.
    static func compatibleArches(of native: UInt32) -> Set<UInt32> {
        switch native {
        case 0xC000_003E: [0x4000_0003, 0x4000_003E]  // x86_64: x86, x32
        case 0xC000_00B7: [0x4000_0028]               // aarch64: arm
        default: []
        }
    }

    /// Whether a rule's includes/excludes select it on this machine. Levain
    /// grants no capability, so rules that need one never apply.
    static func applies(_ rule: SeccompProfile.Rule, native: UInt32, kernel: (Int, Int), file: String) -> Bool {
        if let inc = rule.includes {
            if let arches = inc.arches, !arches.isEmpty,
               !arches.contains(where: { (try? archToken($0, file: file)) == native }) { return false }
            if let caps = inc.caps, !caps.isEmpty { return false }
            if let min = inc.minKernel, let v = parseKernel(min), v > kernel { return false }
        }
        if let exc = rule.excludes {
            if let arches = exc.arches, arches.contains(where: { (try? archToken($0, file: file)) == native }) { return false }
            if let min = exc.minKernel, let v = parseKernel(min), v <= kernel { return false }
        }
        return true
    }

    static func parseKernel(_ s: String) -> (Int, Int)? {
        let parts = s.split(separator: ".")
        guard parts.count >= 2, let a = Int(parts[0]), let b = Int(parts[1].prefix(while: { $0.isNumber })) else { return nil }
        return (a, b)
    }

    static func kernelVersion() -> (Int, Int) {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return parseKernel(release) ?? (0, 0)
    }
}

extension SeccompCompiler {
    /// The native system call number of a name, as libseccomp knows it.
    public static func syscallNumber(_ name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name(name)
        return nr == __NR_SCMP_ERROR ? nil : nr
    }
}

extension SeccompCompiler {
    /// What a compiled program depends on besides the profile text: this
    /// libseccomp, the native architecture, the kernel (minKernel rules) and
    /// the compiler's own layout. Part of the cache key.
    public static func environmentKey() -> String {
        let v = seccomp_version()
        let lib = v.map { "\($0.pointee.major).\($0.pointee.minor).\($0.pointee.micro)" } ?? "?"
        let k = kernelVersion()
        return "levain-seccomp-compiler 2; libseccomp \(lib); arch \(seccomp_arch_native()); kernel \(k.0).\(k.1)"
    }
}

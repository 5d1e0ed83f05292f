#if canImport(Glibc)
import Glibc
#endif
import CSeccomp

/// The audit layer: a filter that answers SECCOMP_RET_USER_NOTIF for the
/// calls `[audit] record` names and allows everything else. It is installed
/// after the policy's filters with SECCOMP_FILTER_FLAG_NEW_LISTENER; the
/// kernel applies the most restrictive result of stacked filters, so a call
/// the policy denies fails without a notification and the audit layer can
/// never let through what the policy refuses.
public enum AuditFilter {
    static let notify = SeccompAction.notify.rawValue

    public static func compile(_ audit: Policy.Audit, file: String = "[audit]") throws(PolicyError) -> BPFProgram {
        let native = seccomp_arch_native()
        // The compat ABIs too (i386, x32 on x86_64): a call through them is
        // gated like a native one (the policy's filter may kill it first).
        let arches = [native] + SeccompCompiler.compatibleArches(of: native).sorted()
        var rules: [(UInt32, Int32, [scmp_arg_cmp])] = []
        for name in audit.gated {
            guard let call = AuditedSyscall(rawValue: name) else {
                throw PolicyError(.invalidValue, file: file, key: "audit.record", "\"\(name)\" is not a system call Levain audits")
            }
            // Not on this architecture (open, rename on aarch64): nothing to gate.
            guard let nr = SeccompCompiler.syscallNumber(name) else { continue }
            if let arg = call.flagsArgument {
                for bit in AuditedSyscall.writeFlags {
                    rules.append((notify, nr, [scmp_arg_cmp(arg: arg, op: SCMP_CMP_MASKED_EQ, datum_a: bit, datum_b: bit)]))
                }
            } else {
                rules.append((notify, nr, []))
            }
        }
        return try SeccompCompiler.build(default: SeccompAction.allow.rawValue, arches: arches, native: native,
                                         rules: rules, file: file, badArch: SeccompAction.allow.rawValue)
    }

    /// The gated calls' names by (architecture, number) as a notification
    /// reports them: AuditWatch.key(arch:nr:). x32 calls arrive with the
    /// native architecture and their own numbers (the x32 bit set).
    public static func names(_ audit: Policy.Audit) -> [UInt64: String] {
        let native = seccomp_arch_native()
        var out: [UInt64: String] = [:]
        for arch in [native] + SeccompCompiler.compatibleArches(of: native).sorted() {
            let reported = arch == 0x4000_003E ? native : arch
            for name in audit.gated {
                let nr = seccomp_syscall_resolve_name_arch(arch, name)
                guard nr >= 0 else { continue }
                out[UInt64(reported) << 32 | UInt64(UInt32(bitPattern: nr))] = name
            }
        }
        return out
    }
}

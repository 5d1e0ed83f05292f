/// Runs compiled seccomp programs on a synthetic system call, the way the
/// kernel would: a classic-BPF interpreter over struct seccomp_data, and the
/// kernel's rule for stacked filters (most restrictive action wins; on a tie,
/// the most recently installed filter's). Used by tests and by
/// `levain policy check --syscall` to say what a profile does without a jail.
public struct SeccompSimulator: Sendable {
    public var programs: [BPFProgram]

    public init(programs: [BPFProgram]) { self.programs = programs }

    /// The x86_64 audit architecture (AUDIT_ARCH_X86_64).
    public static let x86_64: UInt32 = 0xC000_003E
    public static let i386: UInt32 = 0x4000_0003

    public func evaluate(nr: Int32, arch: UInt32 = SeccompSimulator.x86_64, args: [UInt64] = [],
                         instructionPointer: UInt64 = 0) -> SeccompAction {
        var data = [UInt8](repeating: 0, count: 64)
        func put32(_ v: UInt32, at o: Int) { for i in 0..<4 { data[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        func put64(_ v: UInt64, at o: Int) { for i in 0..<8 { data[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
        put32(UInt32(bitPattern: nr), at: 0)
        put32(arch, at: 4)
        put64(instructionPointer, at: 8)
        for (i, a) in args.prefix(6).enumerated() { put64(a, at: 16 + 8 * i) }

        var result: SeccompAction? = nil
        // The kernel walks from the most recent filter to the oldest and keeps
        // a strictly more restrictive action.
        for program in programs.reversed() {
            let r = SeccompAction(rawValue: run(program, data))
            if let current = result {
                if r.precedence < current.precedence { result = r }
            } else {
                result = r
            }
        }
        return result ?? .allow
    }

    /// A classic-BPF interpreter for the instructions seccomp allows.
    func run(_ program: BPFProgram, _ data: [UInt8]) -> UInt32 {
        let bytes = program.bytes
        let count = bytes.count / 8
        var a: UInt32 = 0
        var x: UInt32 = 0
        var mem = [UInt32](repeating: 0, count: 16)
        var pc = 0
        func load32(_ off: UInt32) -> UInt32 {
            let o = Int(off)
            guard o >= 0, o + 4 <= data.count else { return 0 }
            return UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
        }
        var steps = 0
        while pc < count && steps < 100_000 {
            steps += 1
            let base = pc * 8
            let code = UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8
            let jt = Int(bytes[base + 2])
            let jf = Int(bytes[base + 3])
            let k = UInt32(bytes[base + 4]) | UInt32(bytes[base + 5]) << 8 | UInt32(bytes[base + 6]) << 16 | UInt32(bytes[base + 7]) << 24
            pc += 1
            let cls = code & 0x07
            switch cls {
            case 0x00:  // LD
                switch code & 0xe0 {
                case 0x20: a = load32(k)            // BPF_ABS
                case 0x00: a = k                    // BPF_IMM
                case 0x60: a = mem[Int(k & 15)]     // BPF_MEM
                case 0x80: a = 64                   // BPF_LEN
                default: return 0
                }
            case 0x01:  // LDX
                switch code & 0xe0 {
                case 0x00: x = k
                case 0x60: x = mem[Int(k & 15)]
                case 0x80: x = 64
                default: return 0
                }
            case 0x02: mem[Int(k & 15)] = a  // ST
            case 0x03: mem[Int(k & 15)] = x  // STX
            case 0x04:  // ALU
                let src = (code & 0x08) != 0 ? x : k
                switch code & 0xf0 {
                case 0x00: a = a &+ src
                case 0x10: a = a &- src
                case 0x20: a = a &* src
                case 0x30: if src == 0 { return 0 }; a = a / src
                case 0x40: a = a | src
                case 0x50: a = a & src
                case 0x60: a = src >= 32 ? 0 : a << src
                case 0x70: a = src >= 32 ? 0 : a >> src
                case 0x80: a = 0 &- a
                case 0x90: if src == 0 { return 0 }; a = a % src
                case 0xa0: a = a ^ src
                default: return 0
                }
            case 0x05:  // JMP
                let src = (code & 0x08) != 0 ? x : k
                switch code & 0xf0 {
                case 0x00: pc += Int(k)
                case 0x10: pc += (a == src) ? jt : jf
                case 0x20: pc += (a > src) ? jt : jf
                case 0x30: pc += (a >= src) ? jt : jf
                case 0x40: pc += (a & src) != 0 ? jt : jf
                default: return 0
                }
            case 0x06:  // RET
                return (code & 0x18) == 0x10 ? a : k
            case 0x07:  // MISC
                if code & 0xf8 == 0 { x = a } else { a = x }
            default:
                return 0
            }
        }
        return 0
    }
}

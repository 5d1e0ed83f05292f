#if canImport(Glibc)
import Glibc
#endif

/// Loads policies: built-in ones by name, files by path. Every error names
/// the file, the line and the key.
public enum PolicyLoader {
    /// The names `--policy` accepts without a path.
    public static var builtinNames: [String] { BuiltinPolicies.policies.map(\.name) }

    /// Largest policy file read (a policy is a few KiB; this bounds hostile input).
    public static let maxFileSize = 1 << 20

    /// `name` is a built-in policy name or a path to a TOML file. A value
    /// with a '/' or ending in ".toml" is always a path.
    public static func load(_ nameOrPath: String) throws(PolicyError) -> Policy {
        guard !nameOrPath.isEmpty else {
            throw PolicyError(.notFound, file: "(empty)",
                              "a policy is a built-in name (\(builtinNames.joined(separator: ", "))) or a path to a .toml file, not an empty string")
        }
        let looksLikePath = nameOrPath.contains("/") || nameOrPath.hasSuffix(".toml")
        if !looksLikePath, let builtin = parsedBuiltins[nameOrPath] {
            return try builtin.get()
        }
        if !looksLikePath && access(nameOrPath, F_OK) != 0 {
            throw PolicyError(.notFound, file: nameOrPath,
                              "no such policy; built-in policies are \(builtinNames.joined(separator: ", ")), or give a path to a .toml file")
        }
        let text = try readFile(nameOrPath)
        return try parse(text, file: nameOrPath, directory: directoryOf(nameOrPath))
    }

    /// The built-in policies, parsed once (their text is compiled in): a
    /// session's policy is loaded for every session request.
    private static let parsedBuiltins: [String: Result<Policy, PolicyError>] = {
        var out: [String: Result<Policy, PolicyError>] = [:]
        for builtin in BuiltinPolicies.policies {
            out[builtin.name] = Result { () throws(PolicyError) in
                try parse(builtin.text, file: "builtin:\(builtin.name)", directory: nil)
            }
        }
        return out
    }()

    /// Parses policy text. `file` names it in errors; `directory` resolves
    /// relative paths in it (a seccomp profile file), nil for built-ins.
    public static func parse(_ text: String, file: String, directory: String?) throws(PolicyError) -> Policy {
        let root: TOMLTable
        do {
            root = try TOMLParser.parse(text)
        } catch {
            throw PolicyError(.syntax, file: file, line: error.position.line, error.message)
        }
        var reader = TableReader(table: root, path: "", file: file, line: nil)
        var policy = Policy(name: "", source: file)

        if var t = try reader.table("policy") {
            policy.name = try t.string("name") ?? ""
            policy.description = try t.string("description") ?? ""
            try t.finish()
        }
        if policy.name.isEmpty {
            policy.name = baseName(file)
        }

        if var t = try reader.table("namespaces") {
            policy.namespaces.user = try t.bool("user") ?? true
            policy.namespaces.pid = try t.bool("pid") ?? true
            policy.namespaces.mount = try t.bool("mount") ?? true
            policy.namespaces.net = try t.bool("net") ?? true
            policy.namespaces.uts = try t.bool("uts") ?? true
            policy.namespaces.ipc = try t.bool("ipc") ?? true
            policy.namespaces.cgroup = try t.bool("cgroup") ?? true
            try t.finish()
        }

        if var t = try reader.table("user") {
            if let uid = try t.integer("uid", in: 0...65535) { policy.user.uid = UInt32(uid) }
            if let gid = try t.integer("gid", in: 0...65535) { policy.user.gid = UInt32(gid) }
            if let name = try t.string("name") {
                guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }), !name.isEmpty else {
                    throw t.invalid("name", "user name must be letters, digits, '_' or '-'")
                }
                policy.user.name = name
            }
            if let host = try t.string("hostname") {
                guard !host.isEmpty, host.utf8.count <= 64,
                      host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) else {
                    throw t.invalid("hostname", "a hostname is 1-64 letters, digits, '-' or '.'")
                }
                policy.user.hostname = host
            }
            try t.finish()
        }

        if var t = try reader.table("filesystem") {
            var binds: [Policy.Bind] = []
            for (value, line) in try t.stringArray("ro") ?? [] {
                binds.append(try parseBind(value, writable: false, optional: false, file: file, line: line, key: t.qualified("ro")))
            }
            for (value, line) in try t.stringArray("optional_ro") ?? [] {
                binds.append(try parseBind(value, writable: false, optional: true, file: file, line: line, key: t.qualified("optional_ro")))
            }
            for (value, line) in try t.stringArray("rw") ?? [] {
                binds.append(try parseBind(value, writable: true, optional: false, file: file, line: line, key: t.qualified("rw")))
            }
            policy.filesystem.binds = binds
            if let etc = try t.stringArray("etc_from_host") {
                var names: [String] = []
                for (name, line) in etc {
                    guard !name.isEmpty, !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                        throw PolicyError(.invalidValue, file: file, line: line, key: t.qualified("etc_from_host"),
                                          "\"\(name)\" must be a path relative to /etc without '..' (e.g. \"ssl/certs\")")
                    }
                    names.append(name)
                }
                policy.filesystem.etcFromHost = names
            }
            policy.filesystem.usrMerge = try t.bool("usr_merge") ?? true
            if let v = try t.size("tmp_size") { policy.filesystem.tmpSize = v }
            if let v = try t.size("shm_size") { policy.filesystem.shmSize = v }
            policy.filesystem.workspace = try t.bool("workspace") ?? true
            policy.filesystem.workspaceSize = try t.optionalSize("workspace_size", default: policy.filesystem.workspaceSize)
            if let v = policy.filesystem.workspaceSize, v < Policy.Filesystem.minimumWorkspaceSize || v > 1 << 44 {
                throw t.invalid("workspace_size", "workspace_size must be between 16M and 16T (it is the size of the workspace's ext4 image), or \"off\" for an unbounded host directory")
            }
            try t.finish()
        }

        if var t = try reader.table("limits") {
            policy.limits.memory = try t.optionalSize("memory", default: policy.limits.memory)
            if t.has("cpus") {
                if try t.isOff("cpus") { policy.limits.cpus = nil } else {
                    let cpus = try t.number("cpus")!
                    guard cpus >= 0.01, cpus <= 4096 else { throw t.invalid("cpus", "cpus must be between 0.01 and 4096 (fractional cores), or \"off\"") }
                    policy.limits.cpus = cpus
                }
            }
            if t.has("pids") {
                if try t.isOff("pids") { policy.limits.pids = nil } else { policy.limits.pids = try t.integer("pids", in: 1...4_194_304).map(Int.init) }
            }
            if t.has("timeout") {
                if try t.isOff("timeout") { policy.limits.timeout = nil } else { policy.limits.timeout = try t.duration("timeout") }
            }
            if t.has("cpu_time") {
                if try t.isOff("cpu_time") { policy.limits.cpuTime = nil } else {
                    let d = try t.duration("cpu_time")!
                    guard d >= 1 else { throw t.invalid("cpu_time", "cpu_time is at least 1s") }
                    policy.limits.cpuTime = UInt64(d.rounded(.up))
                }
            }
            policy.limits.fileSize = try t.optionalSize("file_size", default: policy.limits.fileSize)
            if t.has("open_files") {
                if try t.isOff("open_files") { policy.limits.openFiles = nil } else {
                    policy.limits.openFiles = try t.integer("open_files", in: 16...1_048_576).map(UInt64.init)
                }
            }
            if let core = try t.size("core") { policy.limits.core = core }
            policy.limits.stack = try t.optionalSize("stack", default: policy.limits.stack)
            try t.finish()
        }
        if let m = policy.limits.memory, m < 4 << 20 {
            throw PolicyError(.invalidValue, file: file, key: "limits.memory", "memory below 4M cannot start a process; use at least 4M")
        }

        if var t = try reader.table("seccomp") {
            if let profile = try t.string("profile") {
                if profile.contains("/") || profile.hasSuffix(".json") {
                    if profile.hasPrefix("/") || directory == nil {
                        policy.seccomp.profile = profile
                    } else {
                        policy.seccomp.profile = directory! + "/" + profile
                    }
                } else {
                    guard BuiltinPolicies.seccompProfiles.contains(where: { $0.name == profile }) else {
                        throw t.invalid("profile", "unknown built-in seccomp profile \"\(profile)\"; built-in profiles are \(BuiltinPolicies.seccompProfiles.map(\.name).joined(separator: ", ")), or give a path to an OCI seccomp JSON file")
                    }
                    policy.seccomp.profile = profile
                }
            }
            try t.finish()
        }

        if var t = try reader.table("landlock") {
            if let mode = try t.string("mode") {
                guard let r = Policy.Requirement(rawValue: mode) else {
                    throw t.invalid("mode", "expected one of \(Policy.Requirement.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                }
                policy.landlock = r
            }
            try t.finish()
        }

        if var t = try reader.table("network") {
            if let mode = try t.string("mode") {
                guard let m = Policy.NetworkMode(rawValue: mode) else {
                    throw t.invalid("mode", "expected one of \(Policy.NetworkMode.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                }
                policy.network = m
            }
            try readEgress(&t, into: &policy.egress)
            try t.finish()
        }
        if var t = try reader.table("models") {
            try readModels(&t, into: &policy.models)
            try t.finish()
        }
        if var t = try reader.table("tools") {
            try readTools(&t, into: &policy.tools)
            try t.finish()
        }
        if var t = try reader.table("audit") {
            try readAudit(&t, into: &policy.audit)
            try t.finish()
        }
        if !policy.namespaces.net && policy.network == .none {
            throw PolicyError(.invalidValue, file: file, key: "network.mode",
                              "\"none\" needs the net namespace; set namespaces.net = true")
        }

        if var t = try reader.table("env") {
            if var set = try t.table("set") {
                var pairs: [(String, String)] = []
                for entry in set.table.entries {
                    let name = entry.key
                    guard isValidEnvName(name) else {
                        throw PolicyError(.invalidValue, file: file, line: entry.node.keyPosition?.line ?? entry.node.position.line,
                                          key: set.qualified(name), "not a valid environment variable name")
                    }
                    guard let value = try set.string(name) else { continue }
                    guard !value.utf8.contains(0) else { throw set.invalid(name, "a value cannot contain NUL") }
                    pairs.append((name, value))
                }
                try set.finish()
                policy.environment.set = pairs
            }
            if let pass = try t.stringArray("pass") {
                var names: [String] = []
                for (name, line) in pass {
                    guard isValidEnvName(name) else {
                        throw PolicyError(.invalidValue, file: file, line: line, key: t.qualified("pass"), "\"\(name)\" is not a valid environment variable name")
                    }
                    names.append(name)
                }
                policy.environment.pass = names
            }
            try t.finish()
        }

        try reader.finish()
        return policy
    }

    public static func isValidEnvName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !(first >= "0" && first <= "9") else { return false }
        return name.unicodeScalars.allSatisfy { ($0 >= "A" && $0 <= "Z") || ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }
    }

    /// "HOST[:JAIL]" with absolute paths and no ".." components.
    public static func parseBind(_ spec: String, writable: Bool, optional: Bool, file: String, line: Int?, key: String) throws(PolicyError) -> Policy.Bind {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let host = parts[0]
        let jail = parts.count > 1 ? parts[1] : host
        for (what, p) in [("host", host), ("jail", jail)] {
            guard p.hasPrefix("/") else {
                throw PolicyError(.invalidValue, file: file, line: line, key: key, "\(what) path \"\(p)\" in \"\(spec)\" must be absolute (HOST[:JAIL])")
            }
            guard !p.split(separator: "/").contains(".."), !p.utf8.contains(0) else {
                throw PolicyError(.invalidValue, file: file, line: line, key: key, "\(what) path \"\(p)\" must not contain '..'")
            }
        }
        let normalizedJail = normalize(jail)
        guard normalizedJail != "/" else {
            throw PolicyError(.invalidValue, file: file, line: line, key: key, "cannot bind over the jail's root \"/\"; pick a directory below it")
        }
        if normalizedJail == "/proc" || normalizedJail.hasPrefix("/proc/") {
            throw PolicyError(.invalidValue, file: file, line: line, key: key, "cannot bind over \(normalizedJail): /proc belongs to the jail")
        }
        return Policy.Bind(host: normalize(host), jail: normalizedJail, writable: writable, optional: optional)
    }

    /// Collapses "//" and "/./" and a trailing "/".
    public static func normalize(_ path: String) -> String {
        let comps = path.split(separator: "/").filter { $0 != "." }
        return "/" + comps.joined(separator: "/")
    }

    /// A UTF-8 text file of at most `maxFileSize` bytes (policies, agent
    /// files); `what` ends the too-large message.
    public static func readFile(_ path: String, what: String = "a policy is a few KiB") throws(PolicyError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw PolicyError(.notFound, file: path, "cannot open: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw PolicyError(.notFound, file: path, "cannot read: \(String(cString: strerror(e)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > maxFileSize {
                throw PolicyError(.invalidValue, file: path, "file is larger than \(maxFileSize / 1024) KiB; \(what)")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PolicyError(.syntax, file: path, "not valid UTF-8")
        }
        return text
    }

    static func directoryOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    static func baseName(_ file: String) -> String {
        var name = file
        if let slash = name.lastIndex(of: "/") { name = String(name[name.index(after: slash)...]) }
        if name.hasPrefix("builtin:") { name = String(name.dropFirst(8)) }
        if name.hasSuffix(".toml") { name = String(name.dropLast(5)) }
        return name
    }
}

/// Reads the keys of one TOML table, remembering which were used so that
/// `finish()` can reject the unknown ones. Policies and the supervisor's
/// configuration file both read their TOML with it.
public struct TableReader {
    public let table: TOMLTable
    public let path: String
    public let file: String
    public let line: Int?
    private var used: Set<String> = []

    /// Parses `text` and reads its root table; syntax errors name the line.
    public static func root(_ text: String, file: String) throws(PolicyError) -> TableReader {
        do {
            return TableReader(table: try TOMLParser.parse(text), path: "", file: file, line: nil)
        } catch {
            throw PolicyError(.syntax, file: file, line: error.position.line, error.message)
        }
    }

    public init(table: TOMLTable, path: String, file: String, line: Int?) {
        self.table = table
        self.path = path
        self.file = file
        self.line = line
    }

    public func qualified(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func has(_ key: String) -> Bool { table[key] != nil }

    private func lineOf(_ node: TOMLNode) -> Int { node.keyPosition?.line ?? node.position.line }

    public func invalid(_ key: String, _ message: String) -> PolicyError {
        PolicyError(.invalidValue, file: file, line: table[key].map(lineOf) ?? line, key: qualified(key), message)
    }

    private func wrongType(_ key: String, _ node: TOMLNode, expected: String) -> PolicyError {
        PolicyError(.wrongType, file: file, line: lineOf(node), key: qualified(key),
                    "expected \(expected), found \(node.value.typeName)")
    }

    public mutating func node(_ key: String) -> TOMLNode? {
        used.insert(key)
        return table[key]
    }

    public mutating func table(_ key: String) throws(PolicyError) -> TableReader? {
        guard let n = node(key) else { return nil }
        guard case .table(let t) = n.value else { throw wrongType(key, n, expected: "a table ([\(qualified(key))])") }
        return TableReader(table: t, path: qualified(key), file: file, line: lineOf(n))
    }

    public mutating func string(_ key: String) throws(PolicyError) -> String? {
        guard let n = node(key) else { return nil }
        guard case .string(let s) = n.value else { throw wrongType(key, n, expected: "a string") }
        return s
    }

    public mutating func bool(_ key: String) throws(PolicyError) -> Bool? {
        guard let n = node(key) else { return nil }
        guard case .boolean(let b) = n.value else { throw wrongType(key, n, expected: "true or false") }
        return b
    }

    public mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(PolicyError) -> Int64? {
        guard let n = node(key) else { return nil }
        guard case .integer(let i) = n.value else { throw wrongType(key, n, expected: "an integer") }
        guard range.contains(i) else { throw invalid(key, "\(i) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    public mutating func number(_ key: String) throws(PolicyError) -> Double? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i): return Double(i)
        case .float(let d) where d.isFinite: return d
        default: throw wrongType(key, n, expected: "a number")
        }
    }

    /// A size: an integer (bytes) or a string like "256M".
    public mutating func size(_ key: String) throws(PolicyError) -> UInt64? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i) where i >= 0: return UInt64(i)
        case .string(let s):
            guard let v = Quantity.parseSize(s) else {
                throw invalid(key, "invalid size \"\(s)\": expected a number with an optional K, M, G or T suffix (e.g. \"256M\")")
            }
            return v
        default: throw wrongType(key, n, expected: "a size (e.g. \"256M\")")
        }
    }

    /// A size, or "off"/false for no limit.
    public mutating func optionalSize(_ key: String, default value: UInt64?) throws(PolicyError) -> UInt64? {
        guard has(key) else { return value }
        if try isOff(key) { return nil }
        return try size(key)
    }

    /// A duration: a number of seconds or a string like "30s", "5m".
    public mutating func duration(_ key: String) throws(PolicyError) -> Double? {
        guard let n = node(key) else { return nil }
        switch n.value {
        case .integer(let i) where i > 0: return Double(i)
        case .float(let d) where d > 0 && d.isFinite: return d
        case .string(let s):
            guard let v = Quantity.parseDuration(s), v > 0 else {
                throw invalid(key, "invalid duration \"\(s)\": expected seconds or a number with ms, s, m or h (e.g. \"30s\")")
            }
            return v
        default: throw wrongType(key, n, expected: "a duration (e.g. \"30s\")")
        }
    }

    /// True when the value says "no limit": the string "off" or false.
    public mutating func isOff(_ key: String) throws(PolicyError) -> Bool {
        guard let n = table[key] else { return false }
        switch n.value {
        case .string(let s) where s == "off" || s == "unlimited": used.insert(key); return true
        case .boolean(false): used.insert(key); return true
        case .boolean(true): throw invalid(key, "true is not a limit; give a value or \"off\"")
        default: return false
        }
    }

    /// An array of strings, each with its line.
    public mutating func stringArray(_ key: String) throws(PolicyError) -> [(String, Int)]? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else { throw wrongType(key, n, expected: "an array of strings") }
        var out: [(String, Int)] = []
        for item in items {
            guard case .string(let s) = item.value else {
                throw PolicyError(.wrongType, file: file, line: item.position.line, key: qualified(key),
                                  "expected an array of strings, found an element of type \(item.value.typeName)")
            }
            out.append((s, item.position.line))
        }
        return out
    }

    /// Rejects every key of the table that was not read.
    public func finish() throws(PolicyError) {
        for entry in table.entries where !used.contains(entry.key) {
            let known = used.sorted().map { "\"\($0)\"" }
            var hint = ""
            if let close = used.min(by: { editDistance($0, entry.key) < editDistance($1, entry.key) }),
               editDistance(close, entry.key) <= 2 {
                hint = "; did you mean \"\(close)\"?"
            } else if !known.isEmpty {
                hint = "; known keys here: \(known.joined(separator: ", "))"
            }
            throw PolicyError(.unknownKey, file: file, line: lineOf(entry.node), key: qualified(entry.key),
                              "unknown key\(hint)")
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

/// The built-in policies and seccomp profiles (compiled in from policies/).
public enum BuiltinCatalog {
    public struct Entry: Sendable {
        public let name: String
        /// Where it lives in the repository.
        public let path: String
        public let text: String
        /// textHash(text), computed when the copy was generated.
        public let hash: String
    }

    public static var policies: [Entry] {
        BuiltinPolicies.policies.map { Entry(name: $0.name, path: $0.path, text: $0.text, hash: $0.hash) }
    }

    public static var seccompProfiles: [Entry] {
        BuiltinPolicies.seccompProfiles.map { Entry(name: $0.name, path: $0.path, text: $0.text, hash: $0.hash) }
    }

    /// FNV-1a 64 of the text's UTF-8, as 16 hex digits. Not a security
    /// hash: it names cache entries, which also store what they were made from.
    public static func textHash(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

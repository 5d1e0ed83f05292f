#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A seccomp profile in the OCI runtime-spec form (`linux.seccomp`), which
/// is also what Docker, Podman and containerd read. Levain's own profiles are
/// written in it too (policies/seccomp/).
///
/// Accepted: defaultAction, defaultErrnoRet, architectures, archMap (Docker),
/// syscalls[] with names (or name), action, errnoRet, args[] {index, value,
/// valueTwo, op}, comment, includes/excludes {arches, caps, minKernel}.
/// Refused with a message: listenerPath and SCMP_ACT_NOTIFY (user
/// notification comes with the supervisor), flags other than none.
public struct SeccompProfile: Sendable, Equatable, Decodable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    public var architectures: [String]?
    public var archMap: [ArchMapEntry]?
    public var syscalls: [Rule]?
    public var flags: [String]?
    public var listenerPath: String?
    public var listenerMetadata: String?

    public struct ArchMapEntry: Sendable, Equatable, Decodable {
        public var architecture: String
        public var subArchitectures: [String]?
    }

    public struct Rule: Sendable, Equatable, Decodable {
        public var names: [String]?
        public var name: String?
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?
        public var comment: String?
        public var includes: Filter?
        public var excludes: Filter?

        public var allNames: [String] { (names ?? []) + (name.map { [$0] } ?? []) }
    }

    public struct Argument: Sendable, Equatable, Decodable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String
    }

    public struct Filter: Sendable, Equatable, Decodable {
        public var arches: [String]?
        public var caps: [String]?
        public var minKernel: String?
    }

    /// Decodes the JSON text; errors name the file and say what is wrong.
    public static func decode(_ text: String, file: String) throws(PolicyError) -> SeccompProfile {
        guard text.utf8.count <= 4 << 20 else {
            throw PolicyError(.seccomp, file: file, "seccomp profile larger than 4 MiB")
        }
        do {
            return try JSONDecoder().decode(SeccompProfile.self, from: Data(text.utf8))
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw PolicyError(.seccomp, file: file, key: path(ctx.codingPath + [key]), "required key is missing")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw PolicyError(.seccomp, file: file, key: path(ctx.codingPath), "wrong type: \(ctx.debugDescription)")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw PolicyError(.seccomp, file: file, key: path(ctx.codingPath), "value is null")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw PolicyError(.seccomp, file: file, key: ctx.codingPath.isEmpty ? nil : path(ctx.codingPath),
                              "not valid JSON: \(ctx.debugDescription) \(ctx.underlyingError.map { "\($0)" } ?? "")")
        } catch {
            throw PolicyError(.seccomp, file: file, "cannot decode: \(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s
    }

    /// Loads a built-in profile by name or a JSON file by path.
    public static func load(_ nameOrPath: String) throws(PolicyError) -> SeccompProfile {
        let (text, file, _) = try source(nameOrPath)
        return try decode(text, file: file)
    }

    /// The JSON text of a built-in profile or a file, the name errors use,
    /// and for a built-in one the hash of its text (see BuiltinCatalog).
    public static func source(_ nameOrPath: String) throws(PolicyError) -> (text: String, file: String, builtinHash: String?) {
        if let builtin = BuiltinPolicies.seccompProfiles.first(where: { $0.name == nameOrPath }) {
            return (builtin.text, "builtin:seccomp/\(builtin.name)", builtin.hash)
        }
        return (try PolicyLoader.readFile(nameOrPath), nameOrPath, nil)
    }
}

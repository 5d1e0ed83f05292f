#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainPolicy

public struct PolicyCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check and show policies.",
        subcommands: [Check.self, Show.self, List.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate policy files (TOML) and the seccomp profiles they name.",
            discussion: """
            Prints a summary of each valid policy. An invalid one prints
            FILE:LINE: KEY: MESSAGE and the command exits 1.
            """
        )

        @Argument(help: ArgumentHelp("Policy files or built-in names.", valueName: "FILE"))
        var files: [String]

        func run() throws {
            var failed = false
            for file in files {
                do {
                    let policy = try PolicyLoader.load(file)
                    let profile = try SeccompProfile.load(policy.seccomp.profile)
                    let compiled = try SeccompCompiler.compile(profile, file: policy.seccomp.profile)
                    print("\(file): ok — policy \"\(policy.name)\"")
                    print("  namespaces: \(policy.namespaces.enabledNames.joined(separator: ", "))")
                    let l = policy.limits
                    print("  limits: memory \(l.memory.map(Quantity.formatSize) ?? "off"), cpus \(l.cpus.map { "\($0)" } ?? "off"), pids \(l.pids.map(String.init) ?? "off"), timeout \(l.timeout.map { "\($0)s" } ?? "off"), file_size \(l.fileSize.map(Quantity.formatSize) ?? "off"), open_files \(l.openFiles.map(String.init) ?? "off")")
                    print("  seccomp: \(policy.seccomp.profile): default \(compiled.defaultAction), \(compiled.allowedSyscalls) allowed, \(compiled.deniedSyscalls) explicitly denied, \(compiled.programs.count) filter(s), \(compiled.programs.reduce(0) { $0 + $1.instructionCount }) instructions, architectures \(compiled.architectures.joined(separator: ", "))")
                    if !compiled.unknownNames.isEmpty {
                        print("  note: \(compiled.unknownNames.count) syscall name(s) unknown on this machine were ignored: \(compiled.unknownNames.prefix(12).joined(separator: ", "))\(compiled.unknownNames.count > 12 ? ", ..." : "")")
                    }
                    if compiled.architectures.count > 1 {
                        print("  warning: the profile allows foreign ABIs (\(compiled.architectures.dropFirst().joined(separator: ", "))): 32-bit system calls are filtered by the same rules instead of being killed")
                    }
                    print("  landlock: \(policy.landlock.rawValue); network: \(policy.network.rawValue); workspace: \(policy.filesystem.workspace ? "yes" : "no")")
                    if policy.audit.isEnabled {
                        let ignored = policy.audit.ignorePaths.isEmpty ? "" : "; not beneath \(policy.audit.ignorePaths.joined(separator: ", "))"
                        let records = policy.audit.record.isEmpty ? "nothing let through" : policy.audit.record.joined(separator: ", ")
                        print("  audit: records \(records)\(ignored) (sessions of levain serve only)")
                        for r in policy.audit.deny {
                            var what: [String] = []
                            if !r.beneath.isEmpty { what.append("beneath \(r.beneath.joined(separator: ", "))") }
                            if !r.outside.isEmpty { what.append("outside \(r.outside.joined(separator: ", "))") }
                            if !r.ports.isEmpty { what.append("ports \(r.ports.sorted().map(String.init).joined(separator: ", "))") }
                            if !r.networks.isEmpty { what.append("\(r.networks.count) network(s)") }
                            print("  audit deny \(r.name): \(r.syscalls.sorted().joined(separator: ", ")) \(what.joined(separator: " and ")) -> errno \(r.errno)")
                        }
                    } else {
                        print("  audit: off")
                    }
                } catch {
                    writeStderr("\(error)\n")
                    failed = true
                }
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a built-in policy (or seccomp profile with --seccomp), to copy and edit."
        )

        @Argument(help: "A built-in policy name.")
        var name = "default"

        @Flag(help: "Show the built-in seccomp profile of that name instead.")
        var seccomp = false

        func run() throws {
            let entries = seccomp ? BuiltinCatalog.seccompProfiles : BuiltinCatalog.policies
            guard let entry = entries.first(where: { $0.name == name }) else {
                throw UserError("no built-in \(seccomp ? "seccomp profile" : "policy") named \"\(name)\"; built-in: \(entries.map(\.name).joined(separator: ", "))")
            }
            print(entry.text)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the built-in policies.")

        func run() throws {
            for entry in BuiltinCatalog.policies {
                let p = try? PolicyLoader.load(entry.name)
                print("\(entry.name)\t\(p?.description ?? "")")
            }
        }
    }
}

import Testing
@testable import LevainPolicy
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PolicyLoaderTests {
    /// Parses `text` as file "p.toml" and returns the error it must raise.
    func error(_ text: String) -> PolicyError? {
        do {
            _ = try PolicyLoader.parse(text, file: "p.toml", directory: "/etc/levain")
            return nil
        } catch {
            return error
        }
    }

    func expectError(_ text: String, line: Int?, key: String?, _ fragment: String, code: PolicyError.Code? = nil,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        guard let e = error(text) else {
            Issue.record("no error for:\n\(text)", sourceLocation: sourceLocation)
            return
        }
        #expect(e.file == "p.toml", sourceLocation: sourceLocation)
        #expect(e.line == line, "\(e)", sourceLocation: sourceLocation)
        #expect(e.key == key, "\(e)", sourceLocation: sourceLocation)
        #expect(e.message.contains(fragment), "\(e.message)", sourceLocation: sourceLocation)
        if let code { #expect(e.code == code, sourceLocation: sourceLocation) }
        // The printed form leads with file:line: key:
        var prefix = "p.toml"
        if let line { prefix += ":\(line)" }
        #expect(e.description.hasPrefix(prefix + ": " + (key.map { "\($0): " } ?? "")), "\(e)", sourceLocation: sourceLocation)
    }

    @Test func builtinPoliciesLoad() throws {
        let d = try PolicyLoader.load("default")
        #expect(d.name == "default")
        #expect(d.limits.memory == 512 << 20)
        #expect(d.limits.pids == 256)
        #expect(d.limits.cpus == 1)
        #expect(d.limits.timeout == 300)
        #expect(d.network == .loopback)
        #expect(d.namespaces == .all)
        #expect(d.filesystem.binds.first == Policy.Bind(host: "/usr", jail: "/usr", writable: false))
        #expect(d.environment.pass == ["TERM"])
        #expect(d.environment.set.first?.0 == "PATH")
        let s = try PolicyLoader.load("strict")
        #expect(s.network == .none)
        #expect(s.landlock == .required)
        #expect(s.limits.memory == 256 << 20)
        #expect(s.limits.cpuTime == 30)
    }

    @Test func builtinCopiesMatchThePoliciesDirectory() throws {
        // The compiled-in copies come from policies/ (Tools/embed-policies.sh).
        let root = String(#filePath).components(separatedBy: "/Tests/")[0]
        for entry in BuiltinCatalog.policies + BuiltinCatalog.seccompProfiles {
            let onDisk = try PolicyLoader.readFile(root + "/" + entry.path)
            #expect(onDisk.trimmingWhitespace() == entry.text.trimmingWhitespace(),
                    "\(entry.path) differs from its compiled-in copy: run Tools/embed-policies.sh")
            #expect(BuiltinCatalog.textHash(entry.text) == entry.hash, "\(entry.path): stale hash; run Tools/embed-policies.sh")
        }
        #expect(BuiltinCatalog.policies.map(\.name).sorted() == ["default", "strict"])
    }

    @Test func unknownPolicyNameListsTheBuiltins() {
        do {
            _ = try PolicyLoader.load("no-such-policy")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("default, strict"))
        }
    }

    @Test("--policy \"\" says what a policy is, not \": no such policy\"")
    func anEmptyPolicyNameIsExplained() {
        do {
            _ = try PolicyLoader.load("")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("not an empty string") && error.message.contains("default, strict"))
            #expect(error.description.hasPrefix("(empty)"), "\(error.description)")
        }
    }

    @Test func missingFileNamesIt() {
        do {
            _ = try PolicyLoader.load("/nonexistent/dir/p.toml")
            Issue.record("expected an error")
        } catch {
            #expect(error.file == "/nonexistent/dir/p.toml")
            #expect(error.message.contains("No such file"))
        }
    }

    @Test func syntaxErrorsNameTheLine() {
        expectError("[limits]\nmemory = \"1G\"\npids = = 3\n", line: 3, key: nil, "", code: .syntax)
        expectError("[limits]\nmemory = \"1G\"\n[limits]\n", line: 3, key: nil, "", code: .syntax)
    }

    @Test func unknownKeysAreErrors() {
        expectError("[policy]\nname = \"x\"\n\n[sandbox]\nfoo = 1\n", line: 4, key: "sandbox", "unknown key", code: .unknownKey)
        expectError("[limits]\nmemory = \"1G\"\nmemroy = \"2G\"\n", line: 3, key: "limits.memroy", "did you mean \"memory\"")
        expectError("[namespaces]\nuser = true\ntime = true\n", line: 3, key: "namespaces.time", "unknown key")
        expectError("[env.set]\nPATH = \"/bin\"\n[env]\npasss = []\n", line: 4, key: "env.passs", "did you mean \"pass\"")
    }

    @Test func wrongTypes() {
        expectError("[limits]\nmemory = true\n", line: 2, key: "limits.memory", "true is not a limit")
        expectError("[limits]\npids = \"many\"\n", line: 2, key: "limits.pids", "expected an integer", code: .wrongType)
        expectError("[namespaces]\nnet = \"yes\"\n", line: 2, key: "namespaces.net", "expected true or false")
        expectError("limits = 3\n", line: 1, key: "limits", "expected a table")
        expectError("[filesystem]\nro = [\"/usr\",\n  3]\n", line: 3, key: "filesystem.ro", "element of type integer")
        expectError("[filesystem]\nro = \"/usr\"\n", line: 2, key: "filesystem.ro", "expected an array of strings")
    }

    @Test func invalidValues() {
        expectError("[limits]\nmemory = \"64Q\"\n", line: 2, key: "limits.memory", "invalid size \"64Q\"", code: .invalidValue)
        expectError("[limits]\nmemory = \"1M\"\n", line: nil, key: "limits.memory", "at least 4M")
        expectError("[limits]\ntimeout = \"soon\"\n", line: 2, key: "limits.timeout", "invalid duration")
        expectError("[limits]\npids = 0\n", line: 2, key: "limits.pids", "out of range")
        expectError("[limits]\ncpus = 0.001\n", line: 2, key: "limits.cpus", "between 0.01 and 4096")
        expectError("[limits]\nopen_files = 3\n", line: 2, key: "limits.open_files", "out of range")
        expectError("[network]\nmode = \"host\"\n", line: 2, key: "network.mode", "\"loopback\", \"none\"")
        expectError("[landlock]\nmode = \"maybe\"\n", line: 2, key: "landlock.mode", "\"required\", \"if-available\", \"off\"")
        expectError("[user]\nuid = 70000\n", line: 2, key: "user.uid", "out of range")
        expectError("[user]\nhostname = \"a b\"\n", line: 2, key: "user.hostname", "hostname")
        expectError("[seccomp]\nprofile = \"nope\"\n", line: 2, key: "seccomp.profile", "unknown built-in seccomp profile")
        expectError("[namespaces]\nnet = false\n[network]\nmode = \"none\"\n", line: nil, key: "network.mode", "needs the net namespace")
    }

    @Test func bindErrors() {
        expectError("[filesystem]\nro = [\"usr\"]\n", line: 2, key: "filesystem.ro", "must be absolute")
        expectError("[filesystem]\nrw = [\n  \"/data\",\n  \"/srv/../etc:/x\",\n]\n", line: 4, key: "filesystem.rw", "must not contain '..'")
        expectError("[filesystem]\nro = [\"/srv:/\"]\n", line: 2, key: "filesystem.ro", "cannot bind over the jail's root")
        expectError("[filesystem]\nro = [\"/srv:/proc/sys\"]\n", line: 2, key: "filesystem.ro", "/proc belongs to the jail")
        expectError("[filesystem]\netc_from_host = [\"../shadow\"]\n", line: 2, key: "filesystem.etc_from_host", "relative to /etc")
    }

    @Test func environmentErrors() {
        expectError("[env.set]\n\"1BAD\" = \"x\"\n", line: 2, key: "env.set.1BAD", "not a valid environment variable name")
        expectError("[env.set]\nGOOD = 1\n", line: 2, key: "env.set.GOOD", "expected a string")
        expectError("[env]\npass = [\"A-B\"]\n", line: 2, key: "env.pass", "not a valid environment variable name")
    }

    @Test func valuesAndOverrides() throws {
        let p = try PolicyLoader.parse("""
        [policy]
        name = "mine"
        [limits]
        memory = "1.5G"
        cpus = 2
        pids = "off"
        timeout = 90
        cpu_time = "2m"
        file_size = 1048576
        [filesystem]
        ro = ["/opt/tools:/tools"]
        rw = ["/srv/out"]
        optional_ro = ["/maybe"]
        [seccomp]
        profile = "profiles/mine.json"
        [env.set]
        A = "1"
        B = "two words"
        """, file: "/etc/levain/mine.toml", directory: "/etc/levain")
        #expect(p.name == "mine")
        #expect(p.limits.memory == 1536 << 20)
        #expect(p.limits.cpus == 2)
        #expect(p.limits.pids == nil)
        #expect(p.limits.timeout == 90)
        #expect(p.limits.cpuTime == 120)
        #expect(p.limits.fileSize == 1 << 20)
        #expect(p.filesystem.binds == [
            Policy.Bind(host: "/opt/tools", jail: "/tools", writable: false),
            Policy.Bind(host: "/maybe", jail: "/maybe", writable: false, optional: true),
            Policy.Bind(host: "/srv/out", jail: "/srv/out", writable: true),
        ])
        #expect(p.seccomp.profile == "/etc/levain/profiles/mine.json", "relative to the policy file")
        #expect(p.environment.set.map { "\($0.0)=\($0.1)" } == ["A=1", "B=two words"])
    }

    @Test func nameDefaultsToTheFileName() throws {
        let p = try PolicyLoader.parse("", file: "/x/y/tight.toml", directory: "/x/y")
        #expect(p.name == "tight")
        #expect(p == Policy(name: "tight", source: "/x/y/tight.toml"), "an empty file is all defaults")
    }

    @Test func sizesAndDurations() {
        #expect(Quantity.parseSize("256M") == 256 << 20)
        #expect(Quantity.parseSize("1g") == 1 << 30)
        #expect(Quantity.parseSize("512KiB") == 512 << 10)
        #expect(Quantity.parseSize("1.5G") == 1536 << 20)
        #expect(Quantity.parseSize("4096") == 4096)
        #expect(Quantity.parseSize("64Q") == nil)
        #expect(Quantity.parseSize("-1M") == nil)
        #expect(Quantity.parseSize("") == nil)
        #expect(Quantity.parseSize("M") == nil)
        #expect(Quantity.parseSize("99999999999T") == nil, "overflow")
        #expect(Quantity.parseDuration("30") == 30)
        #expect(Quantity.parseDuration("1.5") == 1.5)
        #expect(Quantity.parseDuration("500ms") == 0.5)
        #expect(Quantity.parseDuration("5m") == 300)
        #expect(Quantity.parseDuration("1h") == 3600)
        #expect(Quantity.parseDuration("soon") == nil)
        #expect(Quantity.parseDuration("-3") == nil)
        #expect(Quantity.formatSize(256 << 20) == "256M")
    }
}

// MARK: Responses

/// A RESPONSE. The result fields are all optional here: which ones a
/// successful response must carry depends on the request's operation
/// (`SupervisorConnectionState` checks that).
public struct Response: Equatable, Sendable {
    public var id: UInt64
    public var ok: Bool
    /// Present exactly when `ok` is false.
    public var error: ResponseError?
    /// `run.start`: the process's pid in the jail.
    public var pid: Int32?
    /// `file.read`, `file.write`: bytes transferred. With `stat`, equal to `stat.size`.
    public var size: UInt64?
    /// `file.list`.
    public var entries: [DirEntry]?
    /// `file.stat` (its keys are at the top level of the response).
    public var stat: FileInfo?

    public init(
        id: UInt64, ok: Bool, error: ResponseError? = nil, pid: Int32? = nil, size: UInt64? = nil,
        entries: [DirEntry]? = nil, stat: FileInfo? = nil
    ) {
        self.id = id
        self.ok = ok
        self.error = error
        self.pid = pid
        self.size = stat?.size ?? size
        self.entries = entries
        self.stat = stat
    }

    /// A successful response without result fields (`run.signal`, `file.delete`).
    public static func success(id: UInt64) -> Response { Response(id: id, ok: true) }

    public static func failure(id: UInt64, code: String, message: String) -> Response {
        Response(id: id, ok: false, error: ResponseError(code: code, message: message))
    }

    public func validate() throws(ProtocolViolation) {
        try Check.jsonInteger(id, key: "id")
        if ok, error != nil { throw Check.invalid("error", "must be absent when ok is true") }
        if !ok, error == nil {
            throw ProtocolViolation(.missingKey, "missing key 'error' (ok is false)", key: "error")
        }
        if let error { try error.validate() }
        if let pid { try Check.range(pid, 1...Int32.max, key: "pid") }
        if let size { try Check.jsonInteger(size, key: "size") }
        if let entries {
            if entries.count > ProtocolLimits.maxListEntries {
                throw Check.invalid("entries", "has more than \(ProtocolLimits.maxListEntries) elements")
            }
            for (index, entry) in entries.enumerated() { try entry.validate(key: "entries[\(index)]") }
        }
        if let stat {
            try stat.validate(key: "")
            if let size, size != stat.size { throw Check.invalid("size", "differs from the stat size") }
        }
    }
}

public struct ResponseError: Equatable, Sendable {
    /// An errno name such as `ENOENT` (1...64 of `A-Z a-z 0-9 _ . -`).
    public var code: String
    /// At most 4096 bytes.
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    func validate() throws(ProtocolViolation) {
        try Check.text(code, key: "error.code", maxBytes: ProtocolLimits.maxErrorCodeBytes, allowEmpty: false)
        let valid = code.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"): true
            default: false
            }
        }
        if !valid { throw Check.invalid("error.code", "must be a name such as ENOENT, not \(quoted(code))") }
        try Check.text(message, key: "error.message", maxBytes: ProtocolLimits.maxMessageBytes)
    }
}

/// The `type` of a directory entry or stat result.
public enum FileKind: String, Sendable, CaseIterable {
    case file
    case dir
    case symlink
    case other
}

/// A `file.stat` result.
public struct FileInfo: Equatable, Sendable {
    public var type: FileKind
    public var size: UInt64
    /// Permission bits, 0...0o7777.
    public var mode: UInt32
    /// Seconds since the epoch, -2^53...2^53.
    public var mtime: Int64

    public init(type: FileKind, size: UInt64, mode: UInt32, mtime: Int64) {
        self.type = type
        self.size = size
        self.mode = mode
        self.mtime = mtime
    }

    func validate(key prefix: String) throws(ProtocolViolation) {
        let dot = prefix.isEmpty ? "" : prefix + "."
        try Check.jsonInteger(size, key: dot + "size")
        try Check.range(mode, 0...ProtocolLimits.maxMode, key: dot + "mode")
        try Check.range(mtime, -ProtocolLimits.maxJSONInteger...ProtocolLimits.maxJSONInteger, key: dot + "mtime")
    }
}

/// One `file.list` entry.
public struct DirEntry: Equatable, Sendable {
    /// 1...255 bytes, no `/` or NUL, not `.` or `..`.
    public var name: String
    public var type: FileKind
    public var size: UInt64
    public var mode: UInt32
    public var mtime: Int64

    public init(name: String, type: FileKind, size: UInt64, mode: UInt32, mtime: Int64) {
        self.name = name
        self.type = type
        self.size = size
        self.mode = mode
        self.mtime = mtime
    }

    public var info: FileInfo { FileInfo(type: type, size: size, mode: mode, mtime: mtime) }

    func validate(key: String) throws(ProtocolViolation) {
        try Check.text(name, key: key + ".name", maxBytes: ProtocolLimits.maxNameBytes, allowEmpty: false)
        if name.utf8.contains(UInt8(ascii: "/")) || name == "." || name == ".." {
            throw Check.invalid(key + ".name", "is not a file name: \(quoted(name))")
        }
        try info.validate(key: key)
    }
}

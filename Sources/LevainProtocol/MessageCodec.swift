/// Converts between `Frame`s and `Message`s.
///
/// `decode` is the trust boundary: it checks the frame type against its
/// sender, the body's size and JSON, every required key and its type, and the
/// values (`validate()` of each message). Unknown keys are ignored.
/// `encode` does not validate; `validate(_:)` (or a connection state's
/// `willSend`) does that before sending.
public enum MessageCodec {
    public static func decode(_ frame: Frame, sentBy sender: Peer) throws(ProtocolViolation) -> Message {
        guard frame.type.isSent(by: sender) else {
            throw ProtocolViolation(.unexpectedFrame, "\(frame.type) frames are not sent by the \(sender)")
        }
        let message: Message
        switch frame.type {
        case .hello: message = .hello(try decodeHello(frame.body))
        case .welcome: message = .welcome(try decodeWelcome(frame.body))
        case .request: message = .request(try decodeRequest(frame.body))
        case .response: message = .response(try decodeResponse(frame.body))
        case .event: message = .event(try decodeEvent(frame.body))
        case .data:
            guard frame.body.count >= ProtocolLimits.dataHeaderSize else {
                throw ProtocolViolation(.badLength, "DATA body of \(frame.body.count) bytes (at least 4)")
            }
            return .data(stream: readUInt32(frame.body, at: 0), bytes: Array(frame.body[4...]))
        case .window:
            guard frame.body.count == 8 else {
                throw ProtocolViolation(.badLength, "WINDOW body of \(frame.body.count) bytes (exactly 8)")
            }
            return .window(stream: readUInt32(frame.body, at: 0), credit: readUInt32(frame.body, at: 4))
        case .ping, .pong:
            guard frame.body.count == 8 else {
                throw ProtocolViolation(.badLength, "\(frame.type) body of \(frame.body.count) bytes (exactly 8)")
            }
            let nonce = readUInt64(frame.body, at: 0)
            return frame.type == .ping ? .ping(nonce: nonce) : .pong(nonce: nonce)
        }
        try validate(message)
        return message
    }

    /// Checks a message against docs/PROTOCOL.md (what `decode` checks after parsing).
    public static func validate(_ message: Message) throws(ProtocolViolation) {
        switch message {
        case .hello(let value): try value.validate()
        case .welcome(let value): try value.validate()
        case .request(let value): try value.validate()
        case .response(let value): try value.validate()
        case .event(let value): try value.validate()
        case .data, .window, .ping, .pong: break
        }
    }

    public static func encode(_ message: Message) -> Frame {
        var body: [UInt8] = []
        encodeBody(message, into: &body)
        return Frame(type: message.frameType, body: body)
    }

    /// Appends the message as a frame on the wire (header included) to `out`,
    /// without an intermediate `Frame`.
    public static func encode(_ message: Message, into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: [0, 0, 0, 0, message.frameType.rawValue])
        encodeBody(message, into: &out)
        let length = UInt32(out.count - start - 4)
        out[start] = UInt8(truncatingIfNeeded: length >> 24)
        out[start + 1] = UInt8(truncatingIfNeeded: length >> 16)
        out[start + 2] = UInt8(truncatingIfNeeded: length >> 8)
        out[start + 3] = UInt8(truncatingIfNeeded: length)
    }

    /// Appends the body of `message` (no header) to `out`.
    public static func encodeBody(_ message: Message, into out: inout [UInt8]) {
        switch message {
        case .data(let stream, let bytes):
            appendUInt32(stream, into: &out)
            out.append(contentsOf: bytes)
        case .window(let stream, let credit):
            appendUInt32(stream, into: &out)
            appendUInt32(credit, into: &out)
        case .ping(let nonce), .pong(let nonce):
            appendUInt64(nonce, into: &out)
        case .hello(let value):
            writeJSON(into: &out) { value.write(to: &$0) }
        case .welcome(let value):
            writeJSON(into: &out) { value.write(to: &$0) }
        case .request(let value):
            writeJSON(into: &out) { value.write(to: &$0) }
        case .response(let value):
            writeJSON(into: &out) { value.write(to: &$0) }
        case .event(let value):
            writeJSON(into: &out) { value.write(to: &$0) }
        }
    }

    private static func writeJSON(into out: inout [UInt8], _ body: (inout JSONWriter) -> Void) {
        var writer = JSONWriter(into: out)
        out = []  // hand the storage to the writer instead of copying it
        body(&writer)
        out = writer.bytes
    }
}

// MARK: Decoding

extension MessageCodec {
    static func decodeHello(_ body: [UInt8]) throws(ProtocolViolation) -> Hello {
        let object = try JSONReader.topLevelObject(body) { key throws(ProtocolViolation) in
            key == "protocol" || key == "harness" || key == "pid"
        }
        return Hello(
            protocolVersion: try object.integer("protocol"), harness: try object.string("harness"),
            pid: try object.integer("pid"))
    }

    static func decodeWelcome(_ body: [UInt8]) throws(ProtocolViolation) -> Welcome {
        let object = try JSONReader.topLevelObject(body) { key throws(ProtocolViolation) in
            switch key {
            case "protocol", "max_frame", "heartbeat_ms", "window", "session": true
            default: false
            }
        }
        return Welcome(
            protocolVersion: try object.integer("protocol"), maxFrame: try object.integer("max_frame"),
            heartbeatMillis: try object.integer("heartbeat_ms"), window: try object.integer("window"),
            session: try object.string("session"))
    }

    static func decodeRequest(_ body: [UInt8]) throws(ProtocolViolation) -> Request {
        let object = try JSONReader.topLevelObject(body) { key throws(ProtocolViolation) in
            switch key {
            case "id", "op", "run", "argv", "env", "cwd", "stdin", "stdout", "stderr", "cgroup", "rlimits", "signal",
                 "path", "stream", "max_bytes", "truncate", "mode", "size", "recursive", "parents", "to", "pty", "rows", "cols": true
            default: false
            }
        }
        let id: UInt64 = try object.integer("id")
        let op = try object.string("op")
        guard let kind = OperationKind(rawValue: op) else {
            throw ProtocolViolation(.unknownOperation, "unknown op \(quoted(op))", key: "op")
        }
        let operation: Operation
        switch kind {
        case .runStart:
            operation = .runStart(RunStart(
                run: try RunID.parse(object.string("run"), key: "run"),
                argv: try stringArray(object, "argv", maxCount: ProtocolLimits.maxArgvElements),
                env: try stringArray(object, "env", maxCount: ProtocolLimits.maxEnvEntries),
                cwd: try object.string("cwd"),
                stdin: try object.optionalInteger("stdin"),
                stdout: try object.integer("stdout"),
                stderr: try object.integer("stderr"),
                cgroup: try object.bool("cgroup"),
                rlimits: try resourceLimits(object),
                pty: try terminalSize(object)))
        case .runSignal:
            operation = .runSignal(RunSignal(
                run: try RunID.parse(object.string("run"), key: "run"), signal: try object.integer("signal")))
        case .runResize:
            operation = .runResize(RunResize(
                run: try RunID.parse(object.string("run"), key: "run"),
                size: TerminalSize(rows: try object.integer("rows"), cols: try object.integer("cols"))))
        case .fileRead:
            var truncate = false
            if try object.optional("truncate") != nil { truncate = try object.bool("truncate") }
            operation = .fileRead(FileRead(
                path: try object.string("path"), stream: try object.integer("stream"),
                maxBytes: try object.integer("max_bytes"), truncate: truncate))
        case .fileWrite:
            operation = .fileWrite(FileWrite(
                path: try object.string("path"), stream: try object.integer("stream"),
                maxBytes: try object.integer("max_bytes"), mode: try object.integer("mode"),
                size: try object.optionalInteger("size")))
        case .fileList:
            operation = .fileList(FileList(path: try object.string("path")))
        case .fileStat:
            operation = .fileStat(FileStat(path: try object.string("path")))
        case .fileDelete:
            operation = .fileDelete(FileDelete(path: try object.string("path"), recursive: try object.bool("recursive")))
        case .fileMkdir:
            operation = .fileMkdir(FileMkdir(path: try object.string("path"), parents: try object.bool("parents"),
                                             mode: try object.integer("mode")))
        case .fileRename:
            operation = .fileRename(FileRename(path: try object.string("path"), to: try object.string("to")))
        }
        return Request(id: id, operation: operation)
    }

    private static func stringArray(_ object: JSONObject, _ key: String, maxCount: Int) throws(ProtocolViolation) -> [String] {
        var reader = try object.required(key)
        var values: [String] = []
        _ = try reader.readArray(key, maxCount: maxCount) { element, index throws(ProtocolViolation) in
            values.append(try element.readString("\(key)[\(index)]"))
        }
        return values
    }

    private static func resourceLimits(_ object: JSONObject) throws(ProtocolViolation) -> ResourceLimits {
        guard var reader = try object.optional("rlimits") else { return ResourceLimits() }
        let limits = try reader.readNestedObject("rlimits") { name throws(ProtocolViolation) in
            guard ResourceLimits.names.contains(name) else {
                throw ProtocolViolation(.invalidValue, "key 'rlimits' has an unknown limit \(quoted(name))",
                                        key: "rlimits")
            }
            return true
        }
        var result = ResourceLimits()
        for (name, offset) in limits.members {
            let key = "rlimits.\(name)"
            var element = JSONReader(limits.bytes, at: offset)
            var values: [UInt64?] = []
            let count = try element.readArray(key, maxCount: 2) { value, index throws(ProtocolViolation) in
                if try value.readNull() {
                    values.append(nil)
                } else {
                    let path = "\(key)[\(index)]"
                    values.append(try JSONObject.convert(value.readInteger(path), key: path))
                }
            }
            guard count == 2 else {
                throw ProtocolViolation(.invalidValue, "key '\(key)' must be [soft, hard]", key: key)
            }
            result[name] = ResourceLimit(soft: values[0], hard: values[1])
        }
        return result
    }

    /// `"pty": [rows, cols]` (absent or null: no terminal).
    private static func terminalSize(_ object: JSONObject) throws(ProtocolViolation) -> TerminalSize? {
        guard var reader = try object.optional("pty") else { return nil }
        if try reader.readNull() { return nil }
        var values: [Int] = []
        let count = try reader.readArray("pty", maxCount: 2) { value, index throws(ProtocolViolation) in
            let path = "pty[\(index)]"
            values.append(try JSONObject.convert(value.readInteger(path), key: path))
        }
        guard count == 2 else { throw ProtocolViolation(.invalidValue, "key 'pty' must be [rows, cols]", key: "pty") }
        return TerminalSize(rows: values[0], cols: values[1])
    }

    static func decodeResponse(_ body: [UInt8]) throws(ProtocolViolation) -> Response {
        let object = try JSONReader.topLevelObject(body) { key throws(ProtocolViolation) in
            switch key {
            case "id", "ok", "error", "pid", "size", "entries", "type", "mode", "mtime": true
            default: false
            }
        }
        let id: UInt64 = try object.integer("id")
        let ok = try object.bool("ok")
        var error: ResponseError? = nil
        if var reader = try object.optional("error") {
            let nested = try reader.readNestedObject("error") { key throws(ProtocolViolation) in
                key == "code" || key == "message"
            }
            error = ResponseError(code: try nested.string("code"), message: try nested.string("message"))
        }
        let pid: Int32? = try object.optionalInteger("pid")
        let size: UInt64? = try object.optionalInteger("size")
        var entries: [DirEntry]? = nil
        if var reader = try object.optional("entries") {
            var list: [DirEntry] = []
            _ = try reader.readArray("entries", maxCount: ProtocolLimits.maxListEntries) {
                element, index throws(ProtocolViolation) in
                let entry = try element.readNestedObject("entries[\(index)]") { key throws(ProtocolViolation) in
                    switch key {
                    case "name", "type", "size", "mode", "mtime": true
                    default: false
                    }
                }
                let info = try fileInfo(entry)
                list.append(DirEntry(
                    name: try entry.string("name"), type: info.type, size: info.size, mode: info.mode,
                    mtime: info.mtime))
            }
            entries = list
        }
        var stat: FileInfo? = nil
        if try object.optional("type") != nil {
            stat = try fileInfo(object)  // its `size` is the same key as `size` above
        }
        return Response(id: id, ok: ok, error: error, pid: pid, size: size, entries: entries, stat: stat)
    }

    private static func fileInfo(_ object: JSONObject) throws(ProtocolViolation) -> FileInfo {
        let type = try object.string("type")
        guard let kind = FileKind(rawValue: type) else {
            let key = object.path("type")
            throw ProtocolViolation(
                .invalidValue, "key '\(key)' must be file, dir, symlink or other, not \(quoted(type))", key: key)
        }
        return FileInfo(
            type: kind, size: try object.integer("size"), mode: try object.integer("mode"),
            mtime: try object.integer("mtime"))
    }

    static func decodeEvent(_ body: [UInt8]) throws(ProtocolViolation) -> Event {
        let object = try JSONReader.topLevelObject(body) { key throws(ProtocolViolation) in
            switch key {
            case "event", "run", "pid", "code", "signal", "user_us", "system_us", "max_rss_kb", "level", "message": true
            default: false
            }
        }
        let name = try object.string("event")
        switch name {
        case "process.started":
            return .processStarted(ProcessStarted(
                run: try RunID.parse(object.string("run"), key: "run"), pid: try object.integer("pid")))
        case "process.exited":
            return .processExited(ProcessExited(
                run: try RunID.parse(object.string("run"), key: "run"), pid: try object.integer("pid"),
                code: try object.optionalInteger("code"), signal: try object.optionalInteger("signal"),
                userMicros: try object.integer("user_us"), systemMicros: try object.integer("system_us"),
                maxRSSKilobytes: try object.integer("max_rss_kb")))
        case "harness.log":
            let level = try object.string("level")
            guard let logLevel = LogLevel(rawValue: level) else {
                throw ProtocolViolation(
                    .invalidValue, "key 'level' must be info, warning or error, not \(quoted(level))", key: "level")
            }
            return .harnessLog(HarnessLog(level: logLevel, message: try object.string("message")))
        default:
            throw ProtocolViolation(.unknownEvent, "unknown event \(quoted(name))", key: "event")
        }
    }
}

// MARK: Encoding

extension Hello {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.member("protocol", protocolVersion)
        json.member("harness", harness)
        json.member("pid", pid)
        json.endObject()
    }
}

extension Welcome {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.member("protocol", protocolVersion)
        json.member("max_frame", maxFrame)
        json.member("heartbeat_ms", heartbeatMillis)
        json.member("window", window)
        json.member("session", session)
        json.endObject()
    }
}

extension Request {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.member("id", id)
        json.member("op", operation.kind.rawValue)
        switch operation {
        case .runStart(let value):
            json.member("run", value.run.rawValue)
            json.member("argv", strings: value.argv)
            json.member("env", strings: value.env)
            json.member("cwd", value.cwd)
            json.member("stdin", orNull: value.stdin)
            json.member("stdout", value.stdout)
            json.member("stderr", value.stderr)
            json.member("cgroup", value.cgroup)
            if let pty = value.pty {
                json.key("pty")
                json.beginArray()
                json.integer(pty.rows)
                json.integer(pty.cols)
                json.endArray()
            }
            if !value.rlimits.isEmpty {
                json.key("rlimits")
                json.beginObject()
                for name in ResourceLimits.names {
                    guard let limit = value.rlimits[name] else { continue }
                    json.key(name)
                    json.beginArray()
                    if let soft = limit.soft { json.integer(soft) } else { json.null() }
                    if let hard = limit.hard { json.integer(hard) } else { json.null() }
                    json.endArray()
                }
                json.endObject()
            }
        case .runSignal(let value):
            json.member("run", value.run.rawValue)
            json.member("signal", value.signal)
        case .runResize(let value):
            json.member("run", value.run.rawValue)
            json.member("rows", value.size.rows)
            json.member("cols", value.size.cols)
        case .fileRead(let value):
            json.member("path", value.path)
            json.member("stream", value.stream)
            json.member("max_bytes", value.maxBytes)
            if value.truncate { json.member("truncate", true) }
        case .fileWrite(let value):
            json.member("path", value.path)
            json.member("stream", value.stream)
            json.member("max_bytes", value.maxBytes)
            json.member("mode", value.mode)
            json.member("size", orNull: value.size)
        case .fileList(let value):
            json.member("path", value.path)
        case .fileStat(let value):
            json.member("path", value.path)
        case .fileDelete(let value):
            json.member("path", value.path)
            json.member("recursive", value.recursive)
        case .fileMkdir(let value):
            json.member("path", value.path)
            json.member("parents", value.parents)
            json.member("mode", value.mode)
        case .fileRename(let value):
            json.member("path", value.path)
            json.member("to", value.to)
        }
        json.endObject()
    }
}

extension Response {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.member("id", id)
        json.member("ok", ok)
        if let error {
            json.key("error")
            json.beginObject()
            json.member("code", error.code)
            json.member("message", error.message)
            json.endObject()
        }
        if let pid { json.member("pid", pid) }
        if let stat {
            stat.writeMembers(to: &json)
        } else if let size {
            json.member("size", size)
        }
        if let entries {
            json.key("entries")
            json.beginArray()
            for entry in entries {
                json.beginObject()
                json.member("name", entry.name)
                entry.info.writeMembers(to: &json)
                json.endObject()
            }
            json.endArray()
        }
        json.endObject()
    }
}

extension FileInfo {
    func writeMembers(to json: inout JSONWriter) {
        json.member("type", type.rawValue)
        json.member("size", size)
        json.member("mode", mode)
        json.member("mtime", mtime)
    }
}

extension Event {
    func write(to json: inout JSONWriter) {
        json.beginObject()
        json.member("event", name)
        switch self {
        case .processStarted(let value):
            json.member("run", value.run.rawValue)
            json.member("pid", value.pid)
        case .processExited(let value):
            json.member("run", value.run.rawValue)
            json.member("pid", value.pid)
            json.member("code", orNull: value.code)
            json.member("signal", orNull: value.signal)
            json.member("user_us", value.userMicros)
            json.member("system_us", value.systemMicros)
            json.member("max_rss_kb", value.maxRSSKilobytes)
        case .harnessLog(let value):
            json.member("level", value.level.rawValue)
            json.member("message", value.message)
        }
        json.endObject()
    }
}

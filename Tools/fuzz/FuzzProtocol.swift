// libFuzzer target for LevainProtocol (built by Tools/fuzz/build.sh together
// with Sources/LevainProtocol/*.swift as one module, without SwiftPM, over
// LevainJSON built as a module of its own).
//
// An input is a byte stream as the supervisor's socket would deliver it. It
// goes through:
//   1. FrameDecoder (max_frame 4096), fed whole and in uneven chunks: both
//      must yield the same frames and the same violation;
//   2. MessageCodec.decode of every frame as sent by each peer: whatever
//      decodes must validate, re-encode, and decode to the same message;
//   3. a SupervisorConnectionState (frames from the harness) and a
//      HarnessConnectionState (frames from the supervisor), each after a
//      synthetic handshake that opens the requests, runs and streams listed
//      below, so that corpus inputs reach responses, events and stream
//      accounting. The fuzzer plays a well-behaved local side: it answers
//      PINGs, returns credit as it consumes, sends within the credit it is
//      granted. A ProtocolMisuse there is a bug in the state machine.
// Violations are expected; a trap, crash or hang is a bug.
//
// The synthetic session (Tools/fuzz/make-corpus.py writes seeds against it):
//   WELCOME max_frame 65536, heartbeat_ms 2000, window 4096
//   id 1  run.start   r-000000000001  stdin 1, stdout 2, stderr 3
//   id 2  file.read   "out/a.txt"     stream 4, max_bytes 10000
//   id 3  file.write  "in/b.txt"      stream 5, 100 bytes sent, not ended
//   id 4  file.write  "in/c.txt"      stream 6, 50 bytes sent, ended
//   id 5  file.list   "."
//   id 6  file.stat   "out/a.txt"
//   id 7  file.delete "tmp"
//   id 8  run.signal  r-000000000001  15
//   id 9  run.start   r-000000000002  stdin null, stdout 7, stderr 8
// If the first frame is a HELLO (a WELCOME for the harness side), the
// handshake is the real one instead.

@_cdecl("LLVMFuzzerTestOneInput")
public func levainFuzzProtocol(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    FuzzProtocol.run(input)
    return 0
}

enum FuzzProtocol {
    static let maxFrame = 4096
    /// Time between frames: 10 µs, so the EVENT flood limit is reachable.
    static let step: UInt64 = 10_000

    static func run(_ input: [UInt8]) {
        let (frames, failure) = splitFrames(input, chunkSizes: nil)
        let (chunked, chunkedFailure) = splitFrames(input, chunkSizes: [1, 3, 7, 64, 5, 1000, 2])
        check(frames == chunked && failure == chunkedFailure, "chunked decoding differs from whole decoding")

        for frame in frames {
            for peer in [Peer.harness, .supervisor] {
                roundTrip(frame, sentBy: peer)
            }
        }
        driveSupervisor(frames)
        driveHarness(frames)
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("fuzz oracle: \(message())") }
    }

    // MARK: 1. Framing

    static func splitFrames(_ input: [UInt8], chunkSizes: [Int]?) -> ([Frame], ProtocolViolation?) {
        var decoder = FrameDecoder(maxFrame: maxFrame)
        var frames: [Frame] = []
        func drain() -> ProtocolViolation? {
            while true {
                do {
                    guard let frame = try decoder.next() else { return nil }
                    check(frame.length <= maxFrame, "a frame above max_frame came out")
                    frames.append(frame)
                } catch {
                    return error
                }
            }
        }
        guard let chunkSizes else {
            decoder.append(input)
            let failure = drain()  // before reading `frames`, which drain appends to
            return (frames, failure)
        }
        var offset = 0
        var index = 0
        while offset < input.count {
            let end = min(input.count, offset + chunkSizes[index % chunkSizes.count])
            input[offset..<end].withUnsafeBytes { decoder.append($0) }
            offset = end
            index += 1
            if let failure = drain() { return (frames, failure) }
            check(decoder.bufferedBytes <= maxFrame + 4, "the decoder holds more than a partial frame")
        }
        let failure = drain()
        return (frames, failure)
    }

    // MARK: 2. Codec

    static func roundTrip(_ frame: Frame, sentBy peer: Peer) {
        guard let message = try? MessageCodec.decode(frame, sentBy: peer) else { return }
        check(message.frameType == frame.type, "decoded message has another frame type")
        do {
            try MessageCodec.validate(message)
        } catch {
            check(false, "a decoded message fails validation: \(error)")
        }
        let encoded = MessageCodec.encode(message)
        let again: Message
        do {
            again = try MessageCodec.decode(encoded, sentBy: peer)
        } catch {
            check(false, "re-encoded message does not decode: \(error)")
            return
        }
        check(again == message, "re-encoded message decodes differently")
        check(MessageCodec.encode(again) == encoded, "encoding is not canonical")
        var wire: [UInt8] = []
        MessageCodec.encode(message, into: &wire)
        check(wire == FrameEncoder.encode(encoded), "encode(into:) differs from FrameEncoder")
    }

    // MARK: 3. State machines

    static let run1 = RunID("r-000000000001")!
    static let run2 = RunID("r-000000000002")!

    static let setupRequests: [Request] = [
        Request(id: 1, operation: .runStart(RunStart(
            run: run1, argv: ["/bin/sh", "-c", "cat"], env: ["PATH=/usr/bin:/bin"], cwd: "/workspace", stdin: 1,
            stdout: 2, stderr: 3, cgroup: true))),
        Request(id: 2, operation: .fileRead(FileRead(path: "out/a.txt", stream: 4, maxBytes: 10_000))),
        Request(id: 3, operation: .fileWrite(FileWrite(path: "in/b.txt", stream: 5, maxBytes: 10_000, mode: 0o644))),
        Request(id: 4, operation: .fileWrite(FileWrite(path: "in/c.txt", stream: 6, maxBytes: 10_000, mode: 0o600))),
        Request(id: 5, operation: .fileList(FileList(path: "."))),
        Request(id: 6, operation: .fileStat(FileStat(path: "out/a.txt"))),
        Request(id: 7, operation: .fileDelete(FileDelete(path: "tmp", recursive: true))),
        Request(id: 8, operation: .runSignal(RunSignal(run: run1, signal: 15))),
        Request(id: 9, operation: .runStart(RunStart(
            run: run2, argv: ["ls"], env: [], cwd: "/", stdin: nil, stdout: 7, stderr: 8, cgroup: false))),
    ]
    static let setupData: [Message] = [
        .data(stream: 5, bytes: [UInt8](repeating: 0x61, count: 100)),
        .data(stream: 6, bytes: [UInt8](repeating: 0x62, count: 50)),
        .data(stream: 6, bytes: []),
    ]
    static let welcome = Welcome(maxFrame: 65_536, heartbeatMillis: 2_000, window: 4_096, session: "s-fuzz")

    static func mustSend(_ state: inout SupervisorConnectionState, _ message: Message, now: UInt64) {
        do {
            try state.willSend(message, now: now)
        } catch {
            check(false, "supervisor willSend(\(message.frameType)) refused: \(error)")
        }
    }

    static let start: UInt64 = 1_000_000_000

    /// The supervisor after `hello`, WELCOME and the setup requests and data.
    static func prepareSupervisor(hello: Hello) -> SupervisorConnectionState? {
        var state = SupervisorConnectionState(now: start)
        guard (try? state.receive(.hello(hello), now: start)) != nil,
              let version = SupervisorConnectionState.version(answering: hello) else { return nil }
        // The version HarnessConnection answers with: the highest both speak.
        var answer = welcome
        answer.protocolVersion = version
        mustSend(&state, .welcome(answer), now: start)
        for request in setupRequests { mustSend(&state, .request(request), now: start) }
        for data in setupData { mustSend(&state, data, now: start) }
        return state
    }

    /// The usual starting point, built once: the state is a value, each input gets a copy.
    static let preparedSupervisor = prepareSupervisor(hello: Hello(harness: "fuzz", pid: 1))!

    static func driveSupervisor(_ frames: [Frame]) {
        var now = start
        var state = preparedSupervisor
        var remaining = frames[...]
        if let first = frames.first, first.type == .hello,
           case .hello(let hello)? = try? MessageCodec.decode(first, sentBy: .harness) {
            remaining = frames.dropFirst()
            guard let prepared = prepareSupervisor(hello: hello) else { return }
            state = prepared
        }

        for frame in remaining {
            now += step
            guard let message = try? MessageCodec.decode(frame, sentBy: .harness) else { continue }
            let action: SupervisorConnectionState.Action?
            do {
                action = try state.receive(message, now: now)
            } catch {
                check(state.phase == .failed, "a violation did not fail the connection")
                return
            }
            switch action {
            case .sendPong(let nonce)?:
                mustSend(&state, .pong(nonce: nonce), now: now)
            case .deliverData(let stream, let bytes)?:
                if let window = state.consumed(stream: stream, bytes: bytes.count) {
                    mustSend(&state, window, now: now)
                }
            case .creditAvailable(let stream, let credit)? where credit > 0:  // empty DATA would end the stream
                let count = min(Int(credit), 100)
                mustSend(&state, .data(stream: stream, bytes: [UInt8](repeating: 0x63, count: count)), now: now)
            case .creditAvailable?:
                break
            case .answerHello?, .deliverResponse?, .deliverEvent?, .endOfStream?, nil:
                break
            }
            do {
                if let ping = try state.tick(now: now) { mustSend(&state, ping, now: now) }
            } catch {
                return
            }
        }
    }

    static let preparedHarness: HarnessConnectionState = {
        var state = HarnessConnectionState()
        do {
            _ = try state.receive(.welcome(welcome))
        } catch {
            fatalError("fuzz oracle: synthetic WELCOME refused: \(error)")
        }
        return state
    }()

    static func driveHarness(_ frames: [Frame]) {
        var state = HarnessConnectionState()
        var remaining = frames[...]
        if let first = frames.first, first.type == .welcome,
           let message = try? MessageCodec.decode(first, sentBy: .supervisor) {
            remaining = frames.dropFirst()
            guard (try? state.receive(message)) != nil else { return }
        } else {
            state = preparedHarness
        }
        for frame in remaining {
            guard let message = try? MessageCodec.decode(frame, sentBy: .supervisor) else { continue }
            let action: HarnessConnectionState.Action?
            do {
                action = try state.receive(message)
            } catch {
                check(state.phase == .failed, "a violation did not fail the harness connection")
                return
            }
            do {
                switch action {
                case .sendPong(let nonce)?:
                    try state.willSend(.pong(nonce: nonce))
                case .deliverData(let stream, let bytes)?:
                    if let window = state.consumed(stream: stream, bytes: bytes.count) { try state.willSend(window) }
                case .creditAvailable(let stream, let credit)? where credit > 0:
                    try state.willSend(.data(stream: stream, bytes: [UInt8](repeating: 0x64, count: min(Int(credit), 100))))
                case .deliverRequest(let request)?:
                    // Answer requests that need no stream work at once.
                    switch request.operation {
                    case .runSignal, .runResize, .fileDelete, .fileMkdir, .fileRename:
                        try state.willSend(.response(.success(id: request.id)))
                    case .fileList:
                        try state.willSend(.response(Response(id: request.id, ok: true, entries: [])))
                    case .fileStat:
                        try state.willSend(.response(.failure(id: request.id, code: "ENOENT", message: "")))
                    case .runStart, .fileRead, .fileWrite:
                        break
                    }
                case .established?, .endOfStream?, .creditAvailable?, nil:
                    break
                }
            } catch {
                check(false, "harness willSend refused: \(error)")
            }
        }
    }
}

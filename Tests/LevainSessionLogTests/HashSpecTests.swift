import Testing
@testable import LevainSessionLog

/// The hash chain recomputed from docs/SESSION_LOG.md alone: a hand-written
/// SHA-256 (FIPS 180-4) over a hand-built byte string, sharing no code with
/// the implementation. The golden hashes were also computed with Python's
/// hashlib from the same spec (they are the test vectors in the doc).
@Suite("Hash chain specification")
struct HashSpecTests {
    // The vectors of docs/SESSION_LOG.md.
    static let hash1 = "114c2e3a203bb4794f3b1b6d3a3e75331cb26b6cc49e5cf87c215f0ff4256a27"
    static let hash2 = "6f7b002b3e34a3dd3feea379f82a01a21219c0b793bc56a58416daf3183cb7de"

    @Test func independentSHA256MatchesKnownVectors() {
        #expect(hex(SpecSHA256.hash(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(SpecSHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(hex(SpecSHA256.hash(long)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func handBuiltEncodingMatchesTheVectors() {
        let first = specHash(sessionID: "sess-1", seq: 1, runID: "run-1", tenant: "acme",
                             time: "2026-11-25T04:36:42.123456Z", type: "run.started",
                             payload: #"{"argv":["/bin/echo","hi"],"pid":42}"#, prevHash: String(repeating: "0", count: 64))
        #expect(first == Self.hash1)
        let second = specHash(sessionID: "sess-1", seq: 2, runID: nil, tenant: "acme",
                              time: "2026-11-25T04:36:42.500000Z", type: "process.exited",
                              payload: #"{"exit_code":0,"note":"café"}"#, prevHash: first)
        #expect(second == Self.hash2)
    }

    @Test func implementationMatchesTheVectors() {
        let first = EventHash.compute(sessionID: "sess-1", seq: 1, runID: "run-1", tenant: "acme",
                                      time: "2026-11-25T04:36:42.123456Z", type: "run.started",
                                      payload: #"{"argv":["/bin/echo","hi"],"pid":42}"#, prevHash: EventHash.genesis)
        #expect(first == Self.hash1)
        let second = EventHash.compute(sessionID: "sess-1", seq: 2, runID: nil, tenant: "acme",
                                       time: "2026-11-25T04:36:42.500000Z", type: "process.exited",
                                       payload: #"{"exit_code":0,"note":"café"}"#, prevHash: first)
        #expect(second == Self.hash2)
    }

    /// The log itself produces the vectors: same inputs, same stored hashes,
    /// and the stored payload text is exactly the canonical encoding.
    @Test func appendedEventsHashAsSpecified() async throws {
        try await withTemporaryLogPath { path in
            let log = try SessionLog(path: path)
            try await log.makeSession("sess-1", tenant: "acme")
            let t1 = try #require(LogTimestamp(rfc3339: "2026-11-25T04:36:42.123456Z"))
            let t2 = try #require(LogTimestamp(rfc3339: "2026-11-25T04:36:42.5Z"))
            let events = try await log.append([
                NewEvent(sessionID: "sess-1", runID: "run-1", tenant: "acme", type: "run.started",
                         payload: ["pid": 42, "argv": ["/bin/echo", "hi"]], time: t1),
                NewEvent(sessionID: "sess-1", tenant: "acme", type: "process.exited",
                         payload: ["note": "café", "exit_code": 0], time: t2),
            ])
            #expect(events.map(\.hash) == [Self.hash1, Self.hash2])
            #expect(events[0].prevHash == String(repeating: "0", count: 64))
            #expect(events[1].prevHash == Self.hash1)
            let stored = try log.events(session: "sess-1")
            #expect(stored == events)
            for event in stored {
                #expect(specHash(sessionID: event.sessionID, seq: event.seq, runID: event.runID,
                                 tenant: event.tenant, time: event.time, type: event.type,
                                 payload: event.payloadJSON, prevHash: event.prevHash) == event.hash)
            }
            try log.close()
        }
    }

    // MARK: - The spec, written out again

    func specHash(sessionID: String, seq: Int64, runID: String?, tenant: String, time: String,
                  type: String, payload: String, prevHash: String) -> String {
        var m: [UInt8] = Array("levain-event-v1\n".utf8)
        func u32(_ v: Int) { m += [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func str(_ s: String) { u32(s.utf8.count); m += Array(s.utf8) }
        str(sessionID)
        for shift in stride(from: 56, through: 0, by: -8) { m.append(UInt8(UInt64(seq) >> UInt64(shift) & 0xFF)) }
        m.append(runID == nil ? 0 : 1)
        str(runID ?? "")
        str(tenant)
        str(time)
        str(type)
        str(payload)
        var chars = Array(prevHash.utf8)[...]
        while !chars.isEmpty {
            m.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
            chars = chars.dropFirst(2)
        }
        return hex(SpecSHA256.hash(m))
    }

    func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// FIPS 180-4 SHA-256, straight from the standard.
enum SpecSHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message
        let bitLength = UInt64(message.count) * 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(bitLength >> UInt64(shift) & 0xFF)) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        for chunk in stride(from: 0, to: data.count, by: 64) {
            var w = [UInt32](repeating: 0, count: 64)
            for t in 0..<16 {
                let i = chunk + t * 4
                w[t] = UInt32(data[i]) << 24 | UInt32(data[i + 1]) << 16 | UInt32(data[i + 2]) << 8 | UInt32(data[i + 3])
            }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for t in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[t] &+ w[t]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d
            h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
        return h.flatMap { [UInt8($0 >> 24), UInt8($0 >> 16 & 0xFF), UInt8($0 >> 8 & 0xFF), UInt8($0 & 0xFF)] }
    }
}

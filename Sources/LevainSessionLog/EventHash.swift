import Crypto

/// The hash chain: `hash = SHA-256(encoding of the event)`, written down byte
/// by byte in docs/SESSION_LOG.md so any tool can verify a log.
///
///     "levain-event-v1\n"                       (16 ASCII bytes)
///     str(session_id)
///     u64be(seq)
///     u8(0) if run_id is NULL else u8(1), then str(run_id or "")
///     str(tenant) str(time) str(type) str(payload)
///     32 raw bytes of prev_hash
///
/// where str(s) = u32be(byte length of s) followed by the UTF-8 bytes of s.
public enum EventHash {
    public static let domain = "levain-event-v1\n"

    /// 64 zeros: the `prev_hash` of every session's first event.
    public static let genesis = String(repeating: "0", count: 64)

    /// The chain hash of an event, as 64 lowercase hex digits.
    public static func compute(
        sessionID: String, seq: Int64, runID: String?, tenant: String,
        time: String, type: String, payload: String, prevHash: String
    ) -> String {
        guard let prev = bytes(fromHex: prevHash) else {
            // Unreachable for hashes we write; verify() checks the format first.
            return String(repeating: "?", count: 64)
        }
        return hex(digest(
            sessionID: sessionID.utf8, seq: seq, runID: runID?.utf8, tenant: tenant.utf8,
            time: time.utf8, type: type.utf8, payload: payload.utf8, prevHash: prev))
    }

    /// The same over raw stored bytes, used by verify() so that a byte
    /// changed on disk is hashed as it is, not as a repaired String.
    static func digest<S: Collection<UInt8>, P: Collection<UInt8>>(
        sessionID: S, seq: Int64, runID: S?, tenant: S,
        time: S, type: S, payload: P, prevHash: [UInt8]
    ) -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 + 6 * 4 + 9 + 32 + sessionID.count + tenant.count + time.count
                               + type.count + payload.count + (runID?.count ?? 0))
        buffer.append(contentsOf: domain.utf8)
        appendString(sessionID, to: &buffer)
        appendBigEndian(UInt64(bitPattern: seq), to: &buffer)
        if let runID {
            buffer.append(1)
            appendString(runID, to: &buffer)
        } else {
            buffer.append(0)
            appendBigEndian(UInt32(0), to: &buffer)
        }
        appendString(tenant, to: &buffer)
        appendString(time, to: &buffer)
        appendString(type, to: &buffer)
        appendString(payload, to: &buffer)
        buffer.append(contentsOf: prevHash)
        return Array(SHA256.hash(data: buffer))
    }

    private static func appendString<C: Collection<UInt8>>(_ bytes: C, to buffer: inout [UInt8]) {
        appendBigEndian(UInt32(truncatingIfNeeded: bytes.count), to: &buffer)
        buffer.append(contentsOf: bytes)
    }

    private static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        var v = value.bigEndian
        withUnsafeBytes(of: &v) { buffer.append(contentsOf: $0) }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func hex<C: Collection<UInt8>>(_ bytes: C) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes exactly 64 lowercase hex digits; nil for anything else.
    static func bytes<C: Collection<UInt8>>(fromHex hex: C) -> [UInt8]? {
        guard hex.count == 64 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(32)
        var high: UInt8 = 0
        for (i, c) in hex.enumerated() {
            let nibble: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            if i % 2 == 0 { high = nibble } else { out.append(high << 4 | nibble) }
        }
        return out
    }

    static func bytes(fromHex hex: String) -> [UInt8]? { bytes(fromHex: hex.utf8) }
}

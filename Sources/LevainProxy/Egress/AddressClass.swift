#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What kind of network an IP address belongs to, as far as the egress proxy
/// cares: only `.global` addresses are reached for a name the operator did
/// not map. Everything else is where a jail could reach the supervisor's own
/// host, its neighbours or a cloud's metadata service (SSRF), so it is
/// refused, including every IPv6 form that embeds such an IPv4 address
/// (mapped, compatible, translated, NAT64, 6to4): the kernel or a gateway
/// would deliver those to the IPv4 address inside.
public enum AddressClass: String, Sendable, Equatable, CaseIterable {
    case global
    case unspecified
    case loopback
    case privateUse = "private"
    case linkLocal = "link-local"
    /// 100.64.0.0/10, carrier-grade NAT: often the provider's own services.
    case sharedAddressSpace = "shared-address-space"
    case cloudMetadata = "cloud-metadata"
    case multicast
    case broadcast
    /// Special-purpose and unallocated space: nothing legitimate answers there.
    case reserved

    public var isGlobal: Bool { self == .global }

    /// The class of an IP literal ("192.0.2.1", "::ffff:10.0.0.1"), or nil
    /// when `text` is not one. Strict: inet_pton, no "127.1" or octal forms
    /// (those are names to getaddrinfo, whose answers are classified too).
    public init?(literal text: String) {
        guard let bytes = AddressClass.parse(text) else { return nil }
        self.init(bytes: bytes)
    }

    /// The class of a raw address: 4 bytes (IPv4) or 16 (IPv6), network order.
    public init(bytes: [UInt8]) {
        switch bytes.count {
        case 4: self = AddressClass.ipv4(bytes[0], bytes[1], bytes[2], bytes[3])
        case 16: self = AddressClass.ipv6(bytes)
        default: self = .reserved
        }
    }

    /// inet_pton for either family: 4 or 16 bytes, or nil.
    public static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func ipv4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> AddressClass {
        switch (a, b, c, d) {
        // 0.0.0.0/8: "this network"; Linux connects 0.0.0.0 to the local host.
        case (0, _, _, _): return .unspecified
        case (127, _, _, _): return .loopback
        case (10, _, _, _): return .privateUse
        case (172, 16...31, _, _): return .privateUse
        case (192, 168, _, _): return .privateUse
        case (169, 254, 169, 254): return .cloudMetadata
        case (169, 254, _, _): return .linkLocal
        case (100, 100, 100, 200): return .cloudMetadata  // Alibaba Cloud
        case (100, 64...127, _, _): return .sharedAddressSpace
        case (192, 0, 0, _): return .reserved  // IETF protocol assignments
        case (192, 0, 2, _), (198, 51, 100, _), (203, 0, 113, _): return .reserved  // documentation
        case (198, 18...19, _, _): return .reserved  // benchmarking
        case (255, 255, 255, 255): return .broadcast
        case (240...255, _, _, _): return .reserved
        case (224...239, _, _, _): return .multicast
        default: return .global
        }
    }

    static func ipv6(_ b: [UInt8]) -> AddressClass {
        func zero(_ range: Range<Int>) -> Bool { b[range].allSatisfy { $0 == 0 } }
        func embedded(at i: Int) -> AddressClass { ipv4(b[i], b[i + 1], b[i + 2], b[i + 3]) }

        if zero(0..<16) { return .unspecified }
        if zero(0..<15) && b[15] == 1 { return .loopback }
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        if zero(0..<10) && b[10] == 0xFF && b[11] == 0xFF { return embedded(at: 12) }
        if zero(0..<12) { return embedded(at: 12) }
        // ::ffff:0:a.b.c.d (SIIT translated).
        if zero(0..<8) && b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0 { return embedded(at: 12) }
        // 64:ff9b::/96 (NAT64, well known): the gateway connects to the IPv4 inside.
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B && zero(4..<12) { return embedded(at: 12) }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B { return .reserved }  // 64:ff9b:1::/48 local NAT64
        // 2002::/16 (6to4): the IPv4 of the relay endpoint is bytes 2...5.
        if b[0] == 0x20 && b[1] == 0x02 {
            let inner = embedded(at: 2)
            return inner.isGlobal ? .global : inner
        }
        // 2001::/32 Teredo hides an IPv4 endpoint; 2001:db8::/32 is documentation.
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00 { return .reserved }
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8 { return .reserved }
        // fd00:ec2::254, the AWS metadata service over IPv6 (inside fc00::/7).
        if b[0] == 0xFD && b[1] == 0x00 && b[2] == 0x0E && b[3] == 0xC2 && zero(4..<14) && b[14] == 0x02 && b[15] == 0x54 {
            return .cloudMetadata
        }
        if b[0] & 0xFE == 0xFC { return .privateUse }  // fc00::/7 unique local
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return .linkLocal }  // fe80::/10
        if b[0] == 0xFE && b[1] & 0xC0 == 0xC0 { return .privateUse }  // fec0::/10 site-local (deprecated)
        if b[0] == 0xFF { return .multicast }
        // Global unicast is 2000::/3; the rest (100::/64 discard, ...) is not routable.
        if b[0] & 0xE0 != 0x20 { return .reserved }
        return .global
    }
}

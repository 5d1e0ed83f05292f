#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import LevainPolicy
import NIOCore
import NIOPosix

/// Turns a destination into the addresses the proxy will connect to, and
/// connects. The proxy resolves names itself so that what it checked is
/// what it connects to: no other resolver gets a say after the check.
enum EgressResolver {
    /// getaddrinfo blocks, so it runs here and never on an event loop.
    /// Shared by every proxy of the process and never shut down (a static
    /// is never deinitialised); a few threads bound the lookups in flight.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// The addresses for `host:port`, refusing (403, "network.address") a
    /// name that is not mapped when ANY of its addresses is not global:
    /// a name with one public and one private address is a DNS-rebinding
    /// tool, not a destination. Fails with an `EgressAnswer`.
    static func resolve(host: String, port: Int, settings: EgressSettings, on loop: any EventLoop,
                        timeout: TimeAmount) -> EventLoopFuture<[SocketAddress]> {
        let name = DomainPattern.normalize(host)
        if let mapped = settings.hosts.first(where: { DomainPattern.normalize($0.key) == name })?.value {
            // The operator's mapping: used as is, exempt from the address check.
            let addresses = mapped.compactMap { try? SocketAddress(ipAddress: $0, port: port) }
            guard !addresses.isEmpty, addresses.count == mapped.count else {
                return loop.makeFailedFuture(EgressAnswer.unreachable("network.hosts", host: host, port: port, message:
                    "the operator's [network.hosts] entry for \(name) is not a list of IP addresses: \(mapped.prefix(4))"))
            }
            return loop.makeSucceededFuture(addresses)
        }
        if AddressClass.parse(name) != nil {
            return loop.makeCompletedFuture(Result { try checked([name], host: host, port: port) })
        }
        let promise = loop.makePromise(of: [SocketAddress].self)
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(EgressAnswer.unreachable("dns", host: host, port: port, message:
                "resolving \(host) took longer than \(timeout.nanoseconds / 1_000_000) ms"))
        }
        pool.runIfActive(eventLoop: loop) { try lookUp(name) }
            .flatMapErrorThrowing { error in
                throw EgressAnswer.unreachable("dns", host: host, port: port, message: "could not resolve \(host): \(error)")
            }
            .flatMapThrowing { try checked($0, host: host, port: port) }
            .whenComplete { result in
                timer.cancel()
                promise.completeWith(result)
            }
        return promise.futureResult
    }

    static func checked(_ texts: [String], host: String, port: Int) throws -> [SocketAddress] {
        for text in texts {
            let cls = AddressClass(literal: text) ?? .reserved
            if !cls.isGlobal {
                let what = text == host ? "\(host) is a \(cls.rawValue) address" : "\(host) resolves to \(text) (\(cls.rawValue))"
                throw EgressAnswer.denied("network.address", host: host, port: port, message:
                    "\(what), which the egress proxy never connects to: only public addresses are reached; if this destination is intended, the operator maps the name in [network.hosts]")
            }
        }
        return try texts.map { try SocketAddress(ipAddress: $0, port: port) }
    }

    struct LookupFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Blocking getaddrinfo: every address of `name`, as text, deduplicated.
    static func lookUp(_ name: String) throws(LookupFailure) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &list)
        guard rc == 0 else {
            throw LookupFailure(description: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }
        var out: [String] = []
        var cursor = list
        while let ai = cursor {
            if let text = numeric(ai.pointee.ai_addr, family: ai.pointee.ai_family), !out.contains(text) {
                out.append(text)
            }
            cursor = ai.pointee.ai_next
        }
        guard !out.isEmpty else {
            throw LookupFailure(description: "no address")
        }
        return out
    }

    private static func numeric(_ sa: UnsafeMutablePointer<sockaddr>?, family: Int32) -> String? {
        guard let sa else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch family {
        case AF_INET:
            var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            guard inet_ntop(AF_INET, &addr, &text, socklen_t(text.count)) != nil else { return nil }
        case AF_INET6:
            var addr = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
            guard inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count)) != nil else { return nil }
        default:
            return nil
        }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Connects to the first of `addresses` that answers, in order, all
    /// attempts within `timeout`. Only these addresses: nothing re-resolves.
    static func connect(_ addresses: [SocketAddress], host: String, port: Int, on loop: any EventLoop,
                        timeout: TimeAmount, tunnel: Bool) -> EventLoopFuture<any Channel> {
        let deadline = NIODeadline.now() + timeout
        @Sendable func attempt(_ index: Int, lastError: (any Error)?) -> EventLoopFuture<any Channel> {
            let remaining = deadline - .now()
            guard index < min(addresses.count, 4), remaining > .milliseconds(1) else {
                let why = lastError.map { "\($0)" } ?? "timed out"
                return loop.makeFailedFuture(EgressAnswer.unreachable("connect", host: host, port: port, message:
                    "could not connect to \(host):\(port) (\(addresses.first?.ipAddress ?? "?")): \(why)"))
            }
            return ClientBootstrap(group: loop)
                .connectTimeout(remaining)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                // A tunnel carries half-closes through; a forwarded request reads to EOF.
                .channelOption(.allowRemoteHalfClosure, value: tunnel)
                .connect(to: addresses[index])
                .flatMapError { error in attempt(index + 1, lastError: error) }
        }
        return attempt(0, lastError: nil)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import LevainAPI
import LevainTools
import Logging
import ServiceLifecycle
import Synchronization

/// `levain serve`: the supervisor behind its control API, until SIGTERM.
public enum SupervisorServer {
    public static func run(config: SupervisorConfig) async throws {
        var logger = Logger(label: "levain")
        logger.logLevel = .notice
        // Descriptors: the soft limit up to the hard one, then a cap on each
        // listener's connections below it (docs/SUPERVISOR.md).
        let openFiles = OpenFilesLimit.raiseSoftLimit().after
        let listenerCount = config.tcpAddress == nil ? 1 : 2
        let maxConnections = config.maxConnections ?? APIConnections.defaultLimit(openFiles: openFiles, listeners: listenerCount)
        if !APIConnections.fits(maxConnections, openFiles: openFiles, listeners: listenerCount) {
            logger.warning("supervisor.max_connections \(maxConnections) per listener does not fit in \(openFiles) open files beside what sessions need; accepts will pause when descriptors run out")
        }
        let supervisor: Supervisor
        do {
            supervisor = try Supervisor(config: config)
            try await supervisor.start()
        } catch {
            throw error
        }
        // Host tools that fail to start are left out, said here and logged;
        // serve goes on (a session's agents get a clear "no tool" instead).
        for problem in await supervisor.startHostTools() {
            logger.error("\(problem)")
        }
        try prepareSocket(config.socketPath)
        let api = APIServer(supervisor: supervisor)
        let groupID = try config.socketGroup.map(groupID)
        // The socket is made 0600 (the umask during bind), then handed to
        // the group when one is granted.
        let previous = umask(0o177)
        let socketPath = config.socketPath
        let timeouts = ConnectionTimeouts(header: config.headerTimeout, idle: config.idleTimeout)
        let ready = ReadyLine(listeners: listenerCount, state: config.stateDirectory, log: config.logPath,
                              maxConnections: maxConnections, openFiles: openFiles)
        let unixConnections = APIConnections(listener: "unix:" + socketPath, limit: maxConnections, timeouts: timeouts)
        let unixApp = Application(
            router: api.router(),
            server: unixConnections.serverBuilder(),
            configuration: ApplicationConfiguration(address: .unixDomainSocket(path: socketPath), serverName: "levain",
                                                    backlog: Self.backlog),
            onServerRunning: { channel in
                await APIConnections.installAcceptPause(on: channel, listener: unixConnections.listener)
                umask(previous)
                // Once serving, with the usual umask back: a serve that
                // cannot bind its socket leaves no warm jail behind.
                await supervisor.startWarmPools()
                if let gid = groupID {
                    if chown(socketPath, 0, gid) != 0 || chmod(socketPath, 0o660) != 0 {
                        let line = "levain: cannot hand \(socketPath) to group \(gid): \(String(cString: strerror(errno))); it stays root-only\n"
                        _ = line.withCString { write(2, $0, strlen($0)) }
                    }
                }
                var st = stat()
                let mode = stat(socketPath, &st) == 0 ? String(st.st_mode & 0o777, radix: 8) : "?"
                ready.listening("unix:\(socketPath) (mode 0\(mode))")
            },
            logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: unixApp)]
        var listeners = [unixConnections]
        if let address = config.tcpAddress {
            guard let tokenFile = config.tokenFile else {
                throw SupervisorError(.invalid, "the TCP listener needs a bearer token in tcp.token_file")
            }
            let tokens = try TokenStore(path: tokenFile)
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                throw SupervisorError(.invalid, "tcp.address must be HOST:PORT, not \(address)")
            }
            var host = String(address[..<colon])
            // "[::1]:7480": the brackets are URL syntax, not the address.
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let tcpConnections = APIConnections(listener: "tcp:" + address, limit: maxConnections, timeouts: timeouts)
            let tcpApp = Application(router: api.router(tokens: tokens),
                                     server: tcpConnections.serverBuilder(),
                                     configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "levain",
                                                                             backlog: Self.backlog),
                                     onServerRunning: { channel in
                                         await APIConnections.installAcceptPause(on: channel, listener: tcpConnections.listener)
                                         let bound = channel.localAddress?.port.map { "\(address.prefix(upTo: colon)):\($0)" } ?? address
                                         ready.listening("tcp:\(bound) (bearer token)")
                                     },
                                     logger: logger)
            services.append(.init(service: tcpApp))
            listeners.append(tcpConnections)
        }
        // Shut down first (the group stops services in reverse order): stop
        // accepting, let runs finish up to the grace, then kill and record,
        // end the API's streams and connections, and close the log.
        services.append(.init(service: ShutdownService(supervisor: supervisor, grace: config.shutdownGrace,
                                                       gate: api.gate, listeners: listeners)))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        unlink(socketPath)
    }

    /// The one line `levain serve` prints on stderr once every listener
    /// is up: where it listens, its state directory and its log.
    final class ReadyLine: Sendable {
        private let pending: Mutex<(left: Int, places: [String])>
        let state: String
        let log: String
        let maxConnections: Int
        let openFiles: UInt64

        init(listeners: Int, state: String, log: String, maxConnections: Int, openFiles: UInt64) {
            pending = Mutex((listeners, []))
            self.state = state
            self.log = log
            self.maxConnections = maxConnections
            self.openFiles = openFiles
        }

        func listening(_ place: String) {
            let places: [String]? = pending.withLock { p in
                p.places.append(place)
                p.left -= 1
                return p.left == 0 ? p.places.sorted { $0.hasPrefix("unix:") && !$1.hasPrefix("unix:") } : nil
            }
            guard let places else { return }
            let line = "levain serve: ready: listening on \(places.joined(separator: " and ")); state \(state); log \(log); "
                + "at most \(maxConnections) connections per listener (\(openFiles) open files)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }

    /// Connections the kernel queues for each listener before they are
    /// accepted (at most net.core.somaxconn).
    static let backlog = 1024

    static func prepareSocket(_ path: String) throws {
        if let slash = path.lastIndex(of: "/") {
            let dir = String(path[..<slash])
            if !dir.isEmpty { _ = mkdir(dir, 0o755) }
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw SupervisorError(.invalid, "\(path) exists and is not a socket; remove it or choose another --socket")
            }
            // A live supervisor there answers; a stale socket (a killed one) does not.
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                throw SupervisorError(.invalid, "socket path \(path) is too long")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
            let connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if connected == 0 { throw SupervisorError(.conflict, "another supervisor is listening on \(path)") }
            unlink(path)
        }
    }

    static func groupID(_ name: String) throws -> gid_t {
        if let id = gid_t(name) { return id }
        guard let g = getgrnam(name) else { throw SupervisorError(.invalid, "no group named \(name) (supervisor.socket_group)") }
        return g.pointee.gr_gid
    }

    static func readSmallText(_ path: String, limit: Int = 4096) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes.prefix(limit), as: UTF8.self)
    }
}

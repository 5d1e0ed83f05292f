#if canImport(Glibc)
import Glibc
#endif
import LevainJSON
import LevainSessionLog
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 client for the control API, over the supervisor's Unix
/// socket (or TCP with a bearer token): what `levain --connect` and the
/// integration tests use. One connection per request; responses can be
/// read whole or streamed with backpressure.
public struct APIClient: Sendable {
    public enum Address: Sendable, Equatable, CustomStringConvertible {
        case unix(String)
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .unix(let p): return "unix:" + p
            case .tcp(let h, let p): return "tcp:\(h):\(p)"
            }
        }

        /// Where `levain serve` listens unless its config says otherwise.
        public static let defaultSocketPath = "/run/levain/levain.sock"

        /// "unix:/run/levain/levain.sock", "unix:PATH", "tcp:HOST:PORT", or a bare path.
        public static func parse(_ text: String) -> Address? {
            if text.hasPrefix("unix:") { return .unix(String(text.dropFirst(5))) }
            if text.hasPrefix("tcp:") {
                let rest = text.dropFirst(4)
                guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else { return nil }
                return .tcp(host: String(rest[..<colon]), port: port)
            }
            if text.hasPrefix("/") { return .unix(text) }
            return nil
        }
    }

    public struct Reply: Sendable {
        public init(status: Int, headers: [(String, String)], body: [UInt8]) {
            self.status = status
            self.headers = headers
            self.body = body
        }

        public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public var json: JSONObject? { try? JSONValue.parseObject(String(decoding: body, as: UTF8.self)) }
        public var text: String { String(decoding: body, as: UTF8.self) }
        /// The API's error message, for a non-2xx reply.
        public var errorMessage: String {
            APIError(status: status, json: json)?.message ?? "HTTP \(status): \(text)"
        }
    }

    public let address: Address
    public let token: String?

    public init(address: Address, token: String? = nil) {
        self.address = address
        self.token = token
    }

    /// A request by method name ("GET", "POST", ...).
    public func request(_ method: String, _ path: String, json: JSONValue? = nil) async throws -> Reply {
        try await request(HTTPMethod(rawValue: method), path, json: json)
    }

    /// A request with a raw body, by method name.
    public func request(_ method: String, _ path: String, body: [UInt8]?, contentType: String? = nil) async throws -> Reply {
        try await request(HTTPMethod(rawValue: method), path, body: body, contentType: contentType)
    }

    public func request(_ method: HTTPMethod, _ path: String, json: JSONValue? = nil) async throws -> Reply {
        var body: [UInt8]? = nil
        if let json { body = Array(json.encoded().utf8) }
        return try await request(method, path, body: body, contentType: json == nil ? nil : "application/json")
    }

    public func request(_ method: HTTPMethod, _ path: String, body: [UInt8]?, contentType: String? = nil) async throws -> Reply {
        var status = 0
        var headers: [(String, String)] = []
        var bytes: [UInt8] = []
        try await stream(method, path, body: body, contentType: contentType) { s, h in
            status = s
            headers = h
        } onChunk: { chunk in
            bytes.append(contentsOf: chunk)
            return true
        }
        return Reply(status: status, headers: headers, body: bytes)
    }

    /// Sends a body of unknown length (chunked), piece by piece as `next`
    /// returns them (nil: the end), and reads the whole reply.
    public func upload(_ method: String, _ path: String, contentType: String = "application/octet-stream",
                       next: @escaping @Sendable () async throws -> [UInt8]?) async throws -> Reply {
        var status = 0
        var headers: [(String, String)] = []
        var bytes: [UInt8] = []
        try await exchange(HTTPMethod(rawValue: method), path, contentType: contentType, send: { outbound in
            while let chunk = try await next() {
                if !chunk.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: chunk)))) }
            }
        }, onHead: { s, h in
            status = s
            headers = h
        }, onChunk: { chunk in
            bytes.append(contentsOf: chunk)
            return true
        })
        return Reply(status: status, headers: headers, body: bytes)
    }

    /// Streams a response's body as NIO buffers (no copy): what a
    /// throughput-sensitive reader uses.
    public func streamBuffers(_ method: String, _ path: String,
                              onHead: (Int, [(String, String)]) throws -> Void,
                              onBuffer: (ByteBuffer) async throws -> Bool) async throws {
        try await exchange(HTTPMethod(rawValue: method), path, contentType: nil, length: 0, send: { _ in },
                           onHead: onHead, onBuffer: onBuffer)
    }

    /// `stream` by method name.
    public func stream(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String? = nil,
                       onHead: (Int, [(String, String)]) throws -> Void,
                       onChunk: ([UInt8]) async throws -> Bool) async throws {
        try await stream(HTTPMethod(rawValue: method), path, body: body, contentType: contentType, onHead: onHead, onChunk: onChunk)
    }

    /// Streams a response: `onHead` with the status, then `onChunk` for
    /// each piece of the body (return false to stop reading).
    public func stream(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, contentType: String? = nil,
                       onHead: (Int, [(String, String)]) throws -> Void,
                       onChunk: ([UInt8]) async throws -> Bool) async throws {
        try await exchange(method, path, contentType: contentType, length: body?.count ?? 0, send: { outbound in
            if let body, !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
        }, onHead: onHead, onChunk: onChunk)
    }

    /// One request on a fresh connection: the head (with Content-Length
    /// when `length` is known, chunked otherwise), `send` for the body,
    /// then the response.
    func exchange(_ method: HTTPMethod, _ path: String, contentType: String?, length: Int? = nil,
                  send: (NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>) async throws -> Void,
                  onHead: (Int, [(String, String)]) throws -> Void,
                  onChunk: ([UInt8]) async throws -> Bool) async throws {
        try await exchange(method, path, contentType: contentType, length: length, send: send, onHead: onHead,
                           onBuffer: { buffer in try await onChunk(Array(buffer.readableBytesView)) })
    }

    func exchange(_ method: HTTPMethod, _ path: String, contentType: String?, length: Int? = nil,
                  send: (NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>) async throws -> Void,
                  onHead: (Int, [(String, String)]) throws -> Void,
                  onBuffer: (ByteBuffer) async throws -> Bool) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let bootstrap = ClientBootstrap(group: group)
            // Output streams are bulk: read big.
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 1 << 20))
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
            }
        }
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        switch address {
        case .unix(let path):
            channel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
        case .tcp(let host, let port):
            channel = try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
        }
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: "levain")
            head.headers.add(name: "Connection", value: "close")
            if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
            if let contentType { head.headers.add(name: "Content-Type", value: contentType) }
            if let length {
                head.headers.add(name: "Content-Length", value: String(length))
            } else {
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            // A server may answer (and close) before the request is all
            // written: a bodiless request is complete after its head, and an
            // early error (413) comes before the body ends. A failed write
            // is then not the outcome: the answer is, if one came.
            var writeError: (any Error)? = nil
            do {
                if length == 0 {
                    try await outbound.write(contentsOf: [.head(head), .end(nil)])
                } else {
                    try await outbound.write(.head(head))
                    try await send(outbound)
                    try await outbound.write(.end(nil))
                }
            } catch {
                writeError = error
            }
            var answered = false
            do {
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        answered = true
                        try onHead(Int(h.status.code), h.headers.map { ($0.name, $0.value) })
                    case .body(let buffer):
                        if try await !onBuffer(buffer) { return }
                    case .end:
                        return
                    }
                }
            } catch {
                throw answered ? error : (writeError ?? error)
            }
            if let writeError, !answered { throw writeError }
        }
    }
}

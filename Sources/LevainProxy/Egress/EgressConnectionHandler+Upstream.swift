import NIOCore
import NIOHTTP1

/// The upstream half of a jail connection: what happens once the
/// destination is connected, for a forwarded request and for a tunnel.
extension EgressConnectionHandler {
    func upstreamReady(_ result: Result<any Channel, any Error>, target: EgressTarget, settings: EgressSettings) {
        guard state == .preparing, let context, let head = requestHead else {
            // The jail went away meanwhile.
            if case .success(let channel) = result { channel.close(promise: nil) }
            return
        }
        switch result {
        case .failure(let error):
            answer(error as? EgressAnswer ?? .unreachable("connect", host: target.host, port: target.port, message: "\(error)"))
        case .success(let channel):
            exchange.address = channel.remoteAddress?.ipAddress
            upstream = channel
            if head.method == .CONNECT {
                startTunnel(context, channel)
            } else {
                startForwarding(context, channel, head: head, target: target, settings: settings)
            }
        }
    }

    // MARK: forwarding

    private func startForwarding(_ context: ChannelHandlerContext, _ channel: any Channel, head: HTTPRequestHead,
                                 target: EgressTarget, settings: EgressSettings) {
        let relay = EgressUpstreamRelay(client: self)
        do {
            // The request goes out framed exactly as the jail framed it (see
            // EgressRules.upstreamHead); the decoder sits after the encoder
            // so it sees the method (a HEAD response has no body).
            var encoding = HTTPRequestEncoder.Configuration()
            encoding.automaticallySetFramingHeaders = false
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
            try sync.addHandler(HTTPRequestEncoder(configuration: encoding))
            try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes,
                                                                         informationalResponseStrategy: .forward)))
            try sync.addHandler(NIOHTTPRequestHeadersValidator())
            try sync.addHandler(relay)
        } catch {
            answer(.unreachable("connect", host: target.host, port: target.port, message: "setting up the upstream connection: \(error)"))
            return
        }
        self.relay = relay
        state = .forwarding
        let sent = context.eventLoop.makePromise(of: Void.self)
        relay.send(.head(EgressRules.upstreamHead(head, target: target, settings: settings)), promise: sent)
        sent.futureResult.assumeIsolated().whenFailure { [self] error in
            // An injected value the header validator refuses, or the upstream gone.
            upstreamClosed(error: error)
        }
        for part in pendingParts { forward(part) }
        pendingParts = []
        relay.flush()
        resumeReading()
    }

    /// A part of the jail's request, on its way upstream.
    func forward(_ part: HTTPServerRequestPart) {
        guard !requestEnded, let relay else { return }
        switch part {
        case .head:
            break
        case .body(let buffer):
            exchange.up(buffer.readableBytes)
            relay.send(.body(.byteBuffer(buffer)))
        case .end(let trailers):
            requestEnded = true
            relay.send(.end(trailers))
            relay.flush()
        }
    }

    var jailWritable: Bool { context?.channel.isWritable ?? false }

    func flushToJail() {
        context?.flush()
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        if writable { resumeReading() }
    }

    func upstreamPart(_ part: HTTPClientResponsePart) {
        guard state == .forwarding, let context, let request = requestHead else { return }
        switch part {
        case .head(let head):
            let code = Int(head.status.code)
            let informational = (100..<200).contains(code) && code != 101
            if !informational {
                responseStarted = true
                exchange.status = code
            }
            let out = EgressRules.jailHead(head, requestMethod: request.method, requestVersion: request.version)
            context.write(wrapOutboundOut(.head(out)), promise: nil)
            if informational { context.flush() }
        case .body(let buffer):
            exchange.down(buffer.readableBytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end(let trailers):
            state = .done
            relay?.client = nil
            upstream?.close(promise: nil)
            let written = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
            written.assumeIsolated().whenSuccess { [exchange] in exchange.end() }
            closeGracefully(context, after: written)
        }
    }

    /// The upstream closed or failed while forwarding: a 502 if nothing of
    /// the response went out yet, a cut-off response otherwise.
    func upstreamClosed(error: (any Error)?) {
        guard state == .forwarding, let context else { return }
        let host = exchange.record.host, port = exchange.record.port
        relay?.client = nil
        upstream?.close(promise: nil)
        if !responseStarted {
            let why = error.map { ": \($0)" } ?? ""
            answer(.unreachable("connect", host: host, port: port, message:
                "\(host):\(port) closed the connection without a response\(why)"))
        } else {
            exchange.note("the upstream closed before the response ended" + (error.map { ": \($0)" } ?? ""))
            state = .done
            context.close(promise: nil)
        }
    }

    // MARK: tunnel

    private func startTunnel(_ context: ChannelHandlerContext, _ channel: any Channel) {
        state = .tunnel
        exchange.status = 200
        let (jailEnd, upstreamEnd) = EgressGlueHandler.pair(exchange)
        let sync = context.pipeline.syncOperations
        do {
            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
            try channel.pipeline.syncOperations.addHandler(upstreamEnd)
            // The 200 goes out raw, then the HTTP handlers leave.
            if let encoder = try? sync.handler(type: HTTPResponseEncoder.self) {
                sync.removeHandler(encoder, promise: nil)
            }
            context.writeAndFlush(NIOAny(ByteBuffer(string: EgressAnswer.connectEstablished)), promise: nil)
            try sync.addHandler(jailEnd)
        } catch {
            channel.close(promise: nil)
            context.close(promise: nil)
            return
        }
        let jail = context.channel
        // Bytes the client sent right after its CONNECT head leave the
        // decoder (leftover bytes are forwarded) into the glue, on a later
        // tick and with no read-complete behind them: flush them then.
        if let decoder = try? sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) {
            let removed = context.eventLoop.makePromise(of: Void.self)
            sync.removeHandler(decoder, promise: removed)
            removed.futureResult.whenComplete { _ in channel.flush() }
        }
        sync.removeHandler(limiter, promise: nil)
        sync.removeHandler(context: context, promise: nil)
        upstream = nil
        // The read held while preparing, now through the glue.
        jail.read()
    }

    /// After the last bytes of a response: close the write side, give the
    /// jail a moment to close its own (so unread request bytes do not turn
    /// the close into a reset that eats the response), then close.
    func closeGracefully(_ context: ChannelHandlerContext, after write: EventLoopFuture<Void>) {
        let linger = limits.linger
        write.assumeIsolated().whenComplete { _ in
            context.close(mode: .output, promise: nil)
            context.eventLoop.assumeIsolated().scheduleTask(in: linger) { context.close(promise: nil) }
        }
    }
}

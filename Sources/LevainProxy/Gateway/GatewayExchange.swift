import AsyncHTTPClient
import Foundation
import LevainClock
import LevainJSON
import LevainPolicy
import NIOCore
import NIOHTTP1

/// One request through the gateway: checked, admitted, sent upstream with
/// the real key, and answered chunk by chunk.
struct GatewayExchange {
    typealias Outbound = NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>

    let gateway: ModelGateway
    let head: HTTPRequestHead
    let body: ByteBuffer
    let started = Monotonic.seconds()

    /// Headers never passed upstream: hop-by-hop ones, the jail's placeholder
    /// credentials, what the gateway sets itself, and the account selectors
    /// of OpenAI (a jail must not pick another organization or project the
    /// operator's key can reach).
    static let droppedRequestHeaders: Set<String> = [
        "host", "authorization", "x-api-key", "content-length", "connection", "keep-alive", "proxy-authorization",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "accept-encoding", "cookie",
        "openai-organization", "openai-project",
    ]
    static let droppedResponseHeaders: Set<String> = [
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "set-cookie",
    ]

    /// Returns false when the connection must close.
    func run(outbound: Outbound, keepAlive: Bool) async -> Bool {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if head.method == .GET, path == "/v1/models" {
            return await models(outbound: outbound, keepAlive: keepAlive)
        }
        guard head.method == .POST, let gatewayAPI = GatewayAPI.at(path) else {
            let served = GatewayAPI.allCases.map { "POST \($0.path)" }.joined(separator: ", ")
            return await refuse(.invalid("request.path", "the gateway serves \(served) and GET /v1/models, not \(head.method) \(path)",
                                         status: .notFound), outbound: outbound, keepAlive: keepAlive)
        }
        let kind = gatewayAPI.providerKind
        let api = gatewayAPI.rawValue
        guard let caller = callerOrNil() else {
            return await refuse(GatewayAnswer(status: .unauthorized, type: "authentication_error",
                                              message: "this key names no live run of this session: use the OPENAI_API_KEY / ANTHROPIC_API_KEY of the run's environment",
                                              decision: .error, rule: "auth", extraHeaders: [("x-levain-error", "auth"), ("x-should-retry", "false")]),
                                kind: kind, api: api, outbound: outbound, keepAlive: keepAlive)
        }
        let settings = gateway.settings()
        var model: String? = nil
        do {
            let request = try GatewayRequest.parse(Array(body.readableBytesView), api: gatewayAPI)
            model = request.model
            let prepared = try await prepare(request, api: api, caller: caller, settings: settings)
            return await forward(prepared, caller: caller, outbound: outbound, keepAlive: keepAlive)
        } catch let answer as GatewayAnswer {
            var r = ModelExchangeRecord(phase: .request, caller: caller, decision: answer.decision, rule: answer.rule,
                                        operation: gatewayAPI.operation, api: api, providerKind: kind)
            r.model = model
            r.message = answer.message
            if let m = model, let entry = settings.catalog[m] { r.provider = entry.provider }
            gateway.record(r)
            return await write(answer, kind: kind, outbound: outbound, keepAlive: keepAlive)
        } catch {
            return await refuse(.upstream("\(error)"), kind: kind, api: api, outbound: outbound, keepAlive: keepAlive)
        }
    }

    // MARK: checks

    struct Prepared {
        var gatewayAPI: GatewayAPI
        var kind: ProviderKind { gatewayAPI.providerKind }
        var api: String { gatewayAPI.rawValue }
        var provider: ProviderConfig
        var entry: ModelEntry
        var body: ByteBuffer
        var stream: Bool
        /// The output cap per choice (what the log's gen_ai.request.max_tokens says).
        var maxTokens: Int
        /// The request's worst-case output: choices × the cap per choice.
        var reservedOutput: UInt64
        var ticket: UsageLedger.Ticket
        var reservedInput: UInt64
        /// From the settings the request was checked with.
        var maxUsageScanBytes: Int
    }

    /// How long a request waits for requests in flight to settle before a
    /// budget they hold refuses it.
    static let pendingWait = 10.0

    private func prepare(_ request: GatewayRequest, api: String, caller: GatewayCaller, settings: GatewaySettings) async throws -> Prepared {
        let model = request.model
        guard let entry = settings.catalog[model] else {
            let known = settings.catalog.keys.sorted().filter { settings.policy.denyingRule(for: $0) == nil }
            throw GatewayAnswer.invalid("models.catalog", "unknown model \"\(model)\"; this gateway serves: \(known.joined(separator: ", "))",
                                        status: .notFound)
        }
        guard let provider = settings.providers[entry.provider] else {
            throw GatewayAnswer.invalid("models.catalog", "model \"\(model)\" names provider \"\(entry.provider)\", which is not configured")
        }
        guard provider.kind == request.api.providerKind else {
            throw GatewayAnswer.invalid("request.api", "model \"\(model)\" is served by \(provider.name), a \(provider.kind.rawValue) provider: call \(GatewayAPI.paths(of: provider.kind))")
        }
        guard settings.allowedProvider(provider.name) else {
            throw GatewayAnswer.denied("models.providers", "provider \"\(provider.name)\" is not allowed by the policy's models.providers")
        }
        if let rule = settings.policy.denyingRule(for: model) {
            throw GatewayAnswer.denied(rule, "model \"\(model)\" is not allowed by the policy's \(rule)")
        }
        // The output cap: checked against the policy, set when absent; the
        // forwarded body is written from the checked request with it.
        let output = try request.outputLimit(under: settings.policy)
        let maxTokens = output.perChoice
        let reservedOutput = output.reserved
        let outBody = ByteBuffer(bytes: request.body(outputCap: output.forwarded))
        let stream = request.stream
        // Admission: every request in flight holds its worst case.
        let policy = settings.policy
        var limits: [UsageLedger.Limit] = []
        if policy.runTokens != nil || policy.runSpend != nil {
            limits.append(.init(scope: .init(.run, caller.runID), tokens: policy.runTokens, spend: policy.runSpend))
        }
        if policy.sessionTokens != nil || policy.sessionSpend != nil {
            limits.append(.init(scope: .init(.session, caller.sessionID), tokens: policy.sessionTokens, spend: policy.sessionSpend))
        }
        if let t = settings.tenantBudget, t.tokens != nil || t.spend != nil {
            limits.append(.init(scope: .init(.tenant, caller.tenant), tokens: t.tokens, spend: t.spend))
        }
        let rate = policy.requestsPerMinute.map { (scope: UsageLedger.Scope(.session, caller.sessionID), perMinute: $0) }
        let inputEstimate = UInt64(outBody.readableBytes) + 64
        let spendEstimate = entry.cost(input: inputEstimate, output: reservedOutput)
        // Refused only by what requests in flight hold: it waits (bounded)
        // for them to settle.
        let admission = await gateway.ledger.admit(limits: limits, rate: rate, tokens: inputEstimate + reservedOutput,
                                                   spend: spendEstimate, waitingUpTo: Self.pendingWait)
        switch admission {
        case .admitted(let ticket):
            return Prepared(gatewayAPI: request.api, provider: provider, entry: entry, body: outBody, stream: stream,
                            maxTokens: maxTokens, reservedOutput: reservedOutput, ticket: ticket, reservedInput: inputEstimate,
                            maxUsageScanBytes: settings.maxUsageScanBytes)
        case .exhausted(let budget, let used, let limit, _):
            let what = budget.hasSuffix("spend") ? String(format: "%.6f of %.6f", used, limit) : "\(UInt64(used)) of \(UInt64(limit)) tokens"
            let source = budget.hasPrefix("tenant") ? "[tenants.\(caller.tenant)] of the supervisor's config" : "models.\(budget) of the policy"
            throw GatewayAnswer.budget(budget, "the \(budget.replacingOccurrences(of: "_", with: " ")) budget is spent: \(what) (\(source))")
        case .rateLimited(let budget, let limit):
            throw GatewayAnswer.budget(budget, "more than \(limit) requests in a minute (models.requests_per_minute of the policy)", retryAfter: 60)
        }
    }

    // MARK: upstream

    private func forward(_ p: Prepared, caller: GatewayCaller, outbound: Outbound, keepAlive: Bool) async -> Bool {
        var r = ModelExchangeRecord(phase: .request, caller: caller, decision: .allowed, operation: p.gatewayAPI.operation, api: p.api,
                                    provider: p.provider.name, providerKind: p.kind, model: p.entry.name,
                                    maxTokens: p.gatewayAPI == .embeddings ? nil : p.maxTokens, stream: p.stream)
        gateway.record(r)
        r.phase = .response
        var request = HTTPClientRequest(url: p.provider.baseURL + p.gatewayAPI.upstreamSuffix)
        request.method = .POST
        for (name, value) in head.headers where !Self.droppedRequestHeaders.contains(name.lowercased()) {
            request.headers.add(name: name, value: value)
        }
        request.headers.replaceOrAdd(name: "accept-encoding", value: "identity")
        if !request.headers.contains(name: "content-type") { request.headers.add(name: "content-type", value: "application/json") }
        switch p.kind {
        case .openai: request.headers.add(name: "authorization", value: "Bearer \(p.provider.apiKey)")
        case .anthropic:
            request.headers.add(name: "x-api-key", value: p.provider.apiKey)
            if !request.headers.contains(name: "anthropic-version") { request.headers.add(name: "anthropic-version", value: "2023-06-01") }
        }
        request.body = .bytes(p.body)
        let sent = Monotonic.seconds()
        let response: HTTPClientResponse
        do {
            response = try await gateway.client.execute(request, timeout: .milliseconds(Int64(p.provider.timeout * 1000)))
        } catch {
            gateway.ledger.settle(p.ticket, input: 0, output: 0, spend: 0, alsoRecord: scopes(caller))
            r.decision = .error
            r.rule = "upstream"
            r.message = "\(p.provider.name) at \(p.provider.baseURL): \(error)"
            r.latencyMillis = (Monotonic.seconds() - started) * 1000
            gateway.record(r)
            return await write(.upstream("the provider \(p.provider.name) did not answer: \(error)"), kind: p.kind, outbound: outbound, keepAlive: keepAlive)
        }
        var headers = HTTPHeaders()
        for (name, value) in response.headers where !Self.droppedResponseHeaders.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let ok = (200..<300).contains(Int(response.status.code))
        var scanner = UsageScanner(api: p.gatewayAPI, stream: p.stream && ok, maxBody: p.maxUsageScanBytes)
        var connectionOK = true
        var complete = false
        var held: ByteBuffer? = nil
        do {
            try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)))
            for try await chunk in response.body {
                if r.firstTokenMillis == nil { r.firstTokenMillis = (Monotonic.seconds() - sent) * 1000 }
                if ok { scanner.feed(chunk) }
                // A whole (not streamed) answer: each chunk goes out when the
                // next arrives and the last waits for the upstream's end, so
                // the exchange is recorded before the client has all of it
                // (its next action is logged after this answer). A stream is
                // passed on at once: a held event would delay every token.
                if !p.stream {
                    if let previous = held {
                        do { try await outbound.write(.body(.byteBuffer(previous))) } catch { connectionOK = false; break }
                    }
                    held = chunk
                    continue
                }
                do { try await outbound.write(.body(.byteBuffer(chunk))) } catch { connectionOK = false; break }
            }
            complete = connectionOK
        } catch {
            connectionOK = false
            r.message = "the answer broke off: \(error)"
        }
        scanner.finish()
        r.status = Int(response.status.code)
        r.responseModel = scanner.model
        r.finishReason = scanner.finishReason
        r.latencyMillis = (Monotonic.seconds() - started) * 1000
        if ok {
            // Unknown usage (a cut-off stream, an answer too big to read) is
            // charged at the request's worst case.
            let input = scanner.inputTokens ?? p.reservedInput
            let output = scanner.outputTokens ?? p.reservedOutput
            if scanner.inputTokens == nil || scanner.outputTokens == nil { r.message = (r.message ?? "") + " usage not reported; charged at the request's worst case" }
            r.inputTokens = input
            r.outputTokens = output
            r.cost = p.entry.cost(input: input, output: output)
            gateway.ledger.settle(p.ticket, input: input, output: output, spend: r.cost ?? 0, alsoRecord: scopes(caller))
            r.decision = complete ? .allowed : .error
        } else {
            gateway.ledger.settle(p.ticket, input: 0, output: 0, spend: 0, alsoRecord: scopes(caller))
            r.inputTokens = 0
            r.outputTokens = 0
            r.cost = 0
            r.decision = .error
            r.rule = "upstream.status"
        }
        // Recorded before the answer's end reaches the client: whatever the
        // client does next is logged after this answer.
        gateway.record(r)
        if connectionOK {
            do {
                if let last = held { try await outbound.write(.body(.byteBuffer(last))) }
                try await outbound.write(.end(nil))
            } catch { connectionOK = false }
        }
        return connectionOK && complete
    }

    private func scopes(_ caller: GatewayCaller) -> [UsageLedger.Scope] {
        [.init(.run, caller.runID), .init(.session, caller.sessionID), .init(.tenant, caller.tenant)]
    }

    // MARK: /v1/models

    private func models(outbound: Outbound, keepAlive: Bool) async -> Bool {
        guard callerOrNil() != nil else {
            return await write(GatewayAnswer(status: .unauthorized, type: "authentication_error", message: "this key names no live run of this session",
                                             decision: .error, rule: "auth"), kind: .openai, outbound: outbound, keepAlive: keepAlive)
        }
        let settings = gateway.settings()
        let data: [JSONValue] = settings.catalog.values.sorted { $0.name < $1.name }
            .filter { settings.policy.denyingRule(for: $0.name) == nil && settings.allowedProvider($0.provider) }
            .map { ["id": .string($0.name), "object": "model", "created": 0, "owned_by": .string($0.provider)] }
        let json = Array(JSONValue.object(["object": "list", "data": .array(data)]).encoded().utf8)
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(json.count))])
        if !keepAlive { headers.add(name: "connection", value: "close") }
        do {
            try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: json))))
            try await outbound.write(.end(nil))
            return true
        } catch { return false }
    }

    // MARK: answers

    /// Records a refusal that came before a model was known, and answers it.
    func refuse(_ answer: GatewayAnswer, kind: ProviderKind? = nil, api: String = "", outbound: Outbound, keepAlive: Bool) async -> Bool {
        var r = ModelExchangeRecord(phase: .request, caller: callerOrNil(), decision: answer.decision, rule: answer.rule,
                                    api: api.isEmpty ? head.uri : api, providerKind: kind)
        r.message = answer.message
        gateway.record(r)
        return await write(answer, kind: kind, outbound: outbound, keepAlive: keepAlive)
    }

    private func write(_ answer: GatewayAnswer, kind: ProviderKind?, outbound: Outbound, keepAlive: Bool) async -> Bool {
        let body = answer.body(for: kind)
        do {
            try await outbound.write(.head(answer.head(for: kind, keepAlive: keepAlive, contentLength: body.readableBytes)))
            try await outbound.write(.body(.byteBuffer(body)))
            try await outbound.write(.end(nil))
            return keepAlive
        } catch { return false }
    }

    // MARK: helpers

    private func callerOrNil() -> GatewayCaller? {
        let key: String?
        if let auth = head.headers.first(name: "authorization"), auth.lowercased().hasPrefix("bearer ") {
            key = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        } else {
            key = head.headers.first(name: "x-api-key")
        }
        guard let key, !key.isEmpty, key.utf8.count <= 256 else { return nil }
        return gateway.identify(key)
    }
}

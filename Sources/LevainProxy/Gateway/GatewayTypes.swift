import LevainPolicy

/// The wire format a provider speaks.
public enum ProviderKind: String, Sendable, Equatable, CaseIterable {
    /// `POST {base_url}/chat/completions`, `GET {base_url}/models`; the key
    /// goes in `Authorization: Bearer`. base_url includes the version
    /// ("https://api.openai.com/v1").
    case openai
    /// `POST {base_url}/v1/messages`; the key goes in `x-api-key`. base_url
    /// is the host ("https://api.anthropic.com").
    case anthropic

    /// `gen_ai.provider.name` of the OpenTelemetry GenAI conventions.
    public var otelName: String { rawValue }
}

/// The model APIs the gateway serves to a jail, each spoken by one kind of
/// provider: the path a run calls, the path upstream (after the provider's
/// base_url), and the name the log gives it (`levain.api`).
public enum GatewayAPI: String, Sendable, Equatable, CaseIterable {
    case chatCompletions = "chat.completions"
    /// OpenAI's Responses API (what the OpenAI Agents SDK calls by default).
    case responses
    case embeddings
    case messages

    public var providerKind: ProviderKind {
        self == .messages ? .anthropic : .openai
    }

    /// The path in the jail: `POST http://127.0.0.1:8790` + this.
    public var path: String {
        switch self {
        case .chatCompletions: "/v1/chat/completions"
        case .responses: "/v1/responses"
        case .embeddings: "/v1/embeddings"
        case .messages: "/v1/messages"
        }
    }

    /// The path after the provider's base_url (OpenAI's includes `/v1`).
    var upstreamSuffix: String {
        switch self {
        case .chatCompletions: "/chat/completions"
        case .responses: "/responses"
        case .embeddings: "/embeddings"
        case .messages: "/v1/messages"
        }
    }

    /// `gen_ai.operation.name`.
    public var operation: String { self == .embeddings ? "embeddings" : "chat" }

    static func at(_ path: String) -> GatewayAPI? { allCases.first { $0.path == path } }

    /// The APIs a provider kind serves, as a sentence ("POST /v1/chat/completions, ...").
    static func paths(of kind: ProviderKind) -> String {
        allCases.filter { $0.providerKind == kind }.map { "POST \($0.path)" }.joined(separator: ", ")
    }
}

/// One upstream of the gateway, from `[providers.NAME]` of the supervisor's
/// config, with its key already read (the key lives only in the supervisor).
public struct ProviderConfig: Sendable, Equatable {
    public var name: String
    public var kind: ProviderKind
    public var baseURL: String
    public var apiKey: String
    public var timeout: Double

    public init(name: String, kind: ProviderKind, baseURL: String, apiKey: String, timeout: Double = 600) {
        self.name = name
        self.kind = kind
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.timeout = timeout
    }
}

/// A model the gateway knows (`[models."NAME"]` of the config): which
/// provider serves it and what a million tokens cost each way.
public struct ModelEntry: Sendable, Equatable {
    public var name: String
    public var provider: String
    public var inputPrice: Double
    public var outputPrice: Double

    public init(name: String, provider: String, inputPrice: Double = 0, outputPrice: Double = 0) {
        self.name = name
        self.provider = provider
        self.inputPrice = inputPrice
        self.outputPrice = outputPrice
    }

    public func cost(input: UInt64, output: UInt64) -> Double {
        (Double(input) * inputPrice + Double(output) * outputPrice) / 1_000_000
    }
}

/// Budgets of a tenant (`[tenants.NAME]` of the config), across its sessions.
public struct TenantBudget: Sendable, Equatable {
    public var tokens: UInt64?
    public var spend: Double?
    public init(tokens: UInt64? = nil, spend: Double? = nil) {
        self.tokens = tokens
        self.spend = spend
    }
}

/// What one session's gateway decides with.
public struct GatewaySettings: Sendable {
    public var providers: [String: ProviderConfig]
    public var catalog: [String: ModelEntry]
    public var policy: Policy.Models
    public var tenantBudget: TenantBudget?
    /// Largest request body read from the jail.
    public var maxBodyBytes: Int
    /// Largest response body kept to read usage from (a non-streamed
    /// answer is passed on as it arrives and also kept up to this size).
    public var maxUsageScanBytes: Int

    public init(providers: [String: ProviderConfig], catalog: [String: ModelEntry], policy: Policy.Models,
                tenantBudget: TenantBudget? = nil, maxBodyBytes: Int = 4 << 20, maxUsageScanBytes: Int = 8 << 20) {
        self.providers = providers
        self.catalog = catalog
        self.policy = policy
        self.tenantBudget = tenantBudget
        self.maxBodyBytes = maxBodyBytes
        self.maxUsageScanBytes = maxUsageScanBytes
    }

    /// The providers the policy lets a run use.
    public func allowedProvider(_ name: String) -> Bool {
        policy.providers.map { $0.contains(name) } ?? true
    }
}

/// Who is calling: the run named by the placeholder key of its environment.
public struct GatewayCaller: Sendable, Equatable {
    public var sessionID: String
    public var runID: String
    public var tenant: String
    public init(sessionID: String, runID: String, tenant: String) {
        self.sessionID = sessionID
        self.runID = runID
        self.tenant = tenant
    }
}

/// One exchange through the gateway, reported twice: when it is decided
/// (`model.request`) and when it ends (`model.response`; not for a refusal).
public struct ModelExchangeRecord: Sendable, Equatable {
    public enum Phase: String, Sendable { case request, response }
    public enum Decision: String, Sendable {
        case allowed
        /// Refused by policy (403).
        case denied
        /// Refused by a budget or the request rate (429).
        case budget
        /// Malformed or unknown (4xx), or the upstream failed (502).
        case error
    }

    public var phase: Phase
    public var caller: GatewayCaller?
    public var decision: Decision
    /// The rule or budget that decided, for a refusal.
    public var rule: String?
    /// "chat" or "embeddings" (the GenAI operation name).
    public var operation: String
    /// "chat.completions", "responses", "embeddings", "messages", "models".
    public var api: String
    public var provider: String?
    public var providerKind: ProviderKind?
    public var model: String?
    public var maxTokens: Int?
    public var stream: Bool
    public var status: Int?
    public var inputTokens: UInt64?
    public var outputTokens: UInt64?
    public var cost: Double?
    public var latencyMillis: Double?
    public var firstTokenMillis: Double?
    public var responseModel: String?
    public var finishReason: String?
    public var message: String?

    public init(phase: Phase, caller: GatewayCaller?, decision: Decision, rule: String? = nil, operation: String = "chat",
                api: String, provider: String? = nil, providerKind: ProviderKind? = nil, model: String? = nil,
                maxTokens: Int? = nil, stream: Bool = false) {
        self.phase = phase
        self.caller = caller
        self.decision = decision
        self.rule = rule
        self.operation = operation
        self.api = api
        self.provider = provider
        self.providerKind = providerKind
        self.model = model
        self.maxTokens = maxTokens
        self.stream = stream
    }
}

import GRDB

/// Model usage summed from the log's `model.response` events (the gateway
/// writes one per answered request, with the OpenTelemetry GenAI names).
public struct ModelUsage: Sendable, Equatable {
    public var requests: Int64 = 0
    public var inputTokens: Int64 = 0
    public var outputTokens: Int64 = 0
    public var cost: Double = 0
    public init() {}
    public var tokens: Int64 { inputTokens + outputTokens }
}

public struct ModelUsageRow: Sendable, Equatable {
    /// The group's key: a model name, a session id, a tenant, a run id.
    public var key: String
    public var usage: ModelUsage
}

extension SessionLog {
    public enum UsageGrouping: String, Sendable, CaseIterable {
        case model, session, tenant, run
        var column: String {
            switch self {
            case .model: "json_extract(payload, '$.\"gen_ai.request.model\"')"
            case .session: "session_id"
            case .tenant: "tenant"
            case .run: "COALESCE(run_id, '')"
            }
        }
    }

    /// Usage of the events matching every filter given, in all and grouped.
    public func modelUsage(session: String? = nil, tenant: String? = nil, run: String? = nil,
                           groupBy: UsageGrouping = .model) throws(SessionLogError) -> (total: ModelUsage, rows: [ModelUsageRow]) {
        try read("cannot sum model usage") { db in
            var conditions = ["type = '\(EventType.modelResponse)'"]
            var arguments: StatementArguments = []
            if let session { conditions.append("session_id = ?"); arguments += [session] }
            if let tenant { conditions.append("tenant = ?"); arguments += [tenant] }
            if let run { conditions.append("run_id = ?"); arguments += [run] }
            let sums = """
                COUNT(*), COALESCE(SUM(json_extract(payload, '$."\(Attribute.genAIUsageInputTokens)"')), 0),
                COALESCE(SUM(json_extract(payload, '$."\(Attribute.genAIUsageOutputTokens)"')), 0),
                COALESCE(SUM(json_extract(payload, '$."\(Attribute.cost)"')), 0.0)
                """
            let whereClause = conditions.joined(separator: " AND ")
            func usage(_ row: Row, from i: Int) -> ModelUsage {
                var u = ModelUsage()
                u.requests = row[i]
                u.inputTokens = row[i + 1]
                u.outputTokens = row[i + 2]
                u.cost = row[i + 3]
                return u
            }
            let totalRow = try Row.fetchOne(db, sql: "SELECT \(sums) FROM events WHERE \(whereClause)", arguments: arguments)
            let total = totalRow.map { usage($0, from: 0) } ?? ModelUsage()
            let rows = try Row.fetchAll(db, sql: """
                SELECT COALESCE(\(groupBy.column), ''), \(sums) FROM events WHERE \(whereClause)
                GROUP BY 1 ORDER BY 1
                """, arguments: arguments).map { ModelUsageRow(key: $0[0], usage: usage($0, from: 1)) }
            return (total, rows)
        }
    }
}

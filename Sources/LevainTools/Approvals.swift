import LevainAPI
import LevainJSON
import LevainSessionLog

/// Tool calls waiting for a person. A call waits here until someone
/// decides (API, `levain approve`), its timeout passes (denied), or it is
/// cancelled: its run ended or its caller went away (denied, with the
/// reason). Each call is decided once; a later decision is refused (409).
public actor Approvals {
    public struct Pending: Sendable {
        public var callID: String
        public var sessionID: String
        public var runID: String?
        public var tool: String
        public var arguments: JSONValue
        public var requestedAt: LogTimestamp
        public var timeout: Double

        public var json: JSONValue {
            var o: JSONObject = ["call_id": .string(callID), "session": .string(sessionID), "tool": .string(tool),
                                 "arguments": arguments, "requested_at": .string(requestedAt.rfc3339), "timeout_s": .double(timeout)]
            o["run"] = runID.map { .string($0) } ?? .null
            return .object(o)
        }
    }

    public struct Decision: Sendable, Equatable {
        public var allow: Bool
        public var by: String
        public var reason: String
        public var timedOut = false
    }

    private var waiting: [String: (Pending, CheckedContinuation<Decision, Never>)] = [:]
    private var early: [String: Decision] = [:]
    /// The last decisions, so that deciding a call again is told it was
    /// decided (and how) rather than that it never existed.
    private var decided: [String: Decision] = [:]
    private var decidedOrder: [String] = []
    static let keptDecisions = 4096

    public init() {}

    /// Waits for a decision on `p`. Cancelled, it is denied by levain with
    /// `cancelReason()`.
    func wait(_ p: Pending, cancelReason: @escaping @Sendable () -> String = { "the call was cancelled" }) async -> Decision {
        let id = p.callID
        let timer = Task { [weak self] in
            try? await Task.sleep(for: .seconds(p.timeout))
            if Task.isCancelled { return }
            await self?.resolve(id, Decision(allow: false, by: "levain", reason: "no decision within \(p.timeout)s", timedOut: true))
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Decision, Never>) in
                if let d = early.removeValue(forKey: id) {
                    record(id, d)
                    c.resume(returning: d)
                    return
                }
                waiting[id] = (p, c)
            }
        } onCancel: {
            Task { await self.resolve(id, Decision(allow: false, by: "levain", reason: cancelReason())) }
        }
    }

    private func resolve(_ id: String, _ d: Decision) {
        if let (_, c) = waiting.removeValue(forKey: id) {
            record(id, d)
            c.resume(returning: d)
        } else if decided[id] == nil && !d.timedOut {
            // Cancelled before it began to wait.
            early[id] = d
        }
    }

    private func record(_ id: String, _ d: Decision) {
        decided[id] = d
        decidedOrder.append(id)
        if decidedOrder.count > Self.keptDecisions {
            let drop = decidedOrder.count - Self.keptDecisions / 2
            for old in decidedOrder.prefix(drop) { decided[old] = nil }
            decidedOrder.removeFirst(drop)
        }
    }

    /// A person's decision; the pending call, or nil when nothing waits
    /// under that id. A call decided already (by a person, its timeout, or
    /// the end of its run) is a conflict.
    public func decide(_ id: String, allow: Bool, by: String, reason: String) throws(APIError) -> Pending? {
        guard let (p, c) = waiting.removeValue(forKey: id) else {
            if let d = decided[id] {
                throw APIError(.conflict, "no tool call \(id) waits for approval: it was \(d.allow ? "allowed" : "denied") already, by \(d.by)\(d.reason.isEmpty ? "" : ": \(d.reason)")", field: "id")
            }
            return nil
        }
        let d = Decision(allow: allow, by: by, reason: reason)
        record(id, d)
        c.resume(returning: d)
        return p
    }

    public func list(session: String? = nil) -> [Pending] {
        waiting.values.map(\.0).filter { session == nil || $0.sessionID == session }.sorted { $0.requestedAt.microsecondsSinceEpoch < $1.requestedAt.microsecondsSinceEpoch }
    }
}

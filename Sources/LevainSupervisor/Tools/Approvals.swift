import LevainSessionLog

/// Tool calls waiting for a person. A call waits here until someone
/// decides (API, `levain approve`), its timeout passes (denied), or its
/// caller goes away (denied as cancelled).
public actor Approvals {
    public struct Pending: Sendable {
        public var callID: String
        public var sessionID: String
        public var runID: String?
        public var tool: String
        public var arguments: JSONValue
        public var requestedAt: LogTimestamp
        public var timeout: Double

        var json: JSONValue {
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

    public init() {}

    /// Waits for a decision on `p`.
    func wait(_ p: Pending) async -> Decision {
        let id = p.callID
        let timer = Task { [weak self] in
            try? await Task.sleep(for: .seconds(p.timeout))
            if Task.isCancelled { return }
            await self?.resolve(id, Decision(allow: false, by: "levain", reason: "no decision within \(p.timeout)s", timedOut: true))
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Decision, Never>) in
                if let d = early.removeValue(forKey: id) { c.resume(returning: d); return }
                waiting[id] = (p, c)
            }
        } onCancel: {
            Task { await self.resolve(id, Decision(allow: false, by: "levain", reason: "the calling run was cancelled")) }
        }
    }

    private func resolve(_ id: String, _ d: Decision) {
        if let (_, c) = waiting.removeValue(forKey: id) { c.resume(returning: d) } else if !d.timedOut { early[id] = d }
    }

    /// A person's decision; the pending call, or nil when nothing waits under that id.
    public func decide(_ id: String, allow: Bool, by: String, reason: String) -> Pending? {
        guard let (p, c) = waiting.removeValue(forKey: id) else { return nil }
        c.resume(returning: Decision(allow: allow, by: by, reason: reason))
        return p
    }

    public func list(session: String? = nil) -> [Pending] {
        waiting.values.map(\.0).filter { session == nil || $0.sessionID == session }.sorted { $0.requestedAt.microsecondsSinceEpoch < $1.requestedAt.microsecondsSinceEpoch }
    }
}

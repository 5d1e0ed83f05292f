import NIOCore

/// The record of one jail connection's request or tunnel, filled in as the
/// exchange goes and reported exactly once: at once for a refusal or an
/// error, when the response is relayed or the jail's connection closes for
/// an allowed exchange.
/// Confined to the jail channel's event loop (upstream channels share it).
final class EgressExchange {
    private let sink: @Sendable (EgressRecord) -> Void
    private let started = NIODeadline.now()
    private(set) var record: EgressRecord
    /// A request head arrived: from here on there is something to report.
    var hasRequest = false
    private(set) var reported = false

    init(sink: @escaping @Sendable (EgressRecord) -> Void) {
        self.sink = sink
        record = EgressRecord(decision: .allowed, rule: "network.allow", method: "", kind: "http", host: "", port: 0)
    }

    func begin(method: String, kind: String, proxyUser: String?) {
        hasRequest = true
        record.method = method
        record.kind = kind
        record.proxyUser = proxyUser
    }

    func target(host: String, port: Int) {
        record.host = host
        record.port = port
    }

    var address: String? {
        get { record.address }
        set { record.address = newValue }
    }
    var status: Int? {
        get { record.status }
        set { record.status = newValue }
    }
    func up(_ n: Int) { record.bytesUp &+= UInt64(n) }
    func down(_ n: Int) { record.bytesDown &+= UInt64(n) }

    /// A note on an allowed exchange (why it ended early); the first one sticks.
    func note(_ message: String) {
        if record.message == nil { record.message = message }
    }

    /// Reports the proxy's own answer: a denial or an error.
    func finish(_ answer: EgressAnswer) {
        hasRequest = true
        record.decision = answer.decision
        record.rule = answer.rule
        record.status = answer.status
        record.message = answer.message
        report()
    }

    /// An allowed exchange is over: the response is relayed, or the jail's
    /// connection closed (a tunnel, a request cut short).
    func end() {
        if hasRequest { report() }
    }

    private func report() {
        guard !reported else { return }
        reported = true
        record.durationMillis = Double((NIODeadline.now() - started).nanoseconds) / 1_000_000
        sink(record)
    }
}

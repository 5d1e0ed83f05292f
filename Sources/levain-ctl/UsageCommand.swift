import LevainAPI
import ArgumentParser
import LevainCLI
import LevainJSON
import LevainSessionLog

/// `levain usage`: tokens and cost of model calls, summed from the log.
struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage",
        abstract: "Sum the tokens and cost of model calls through the gateway.",
        discussion: """
        Reads the model.response events of the session log (the gateway writes
        one per answered request, with gen_ai.usage.input_tokens,
        gen_ai.usage.output_tokens and levain.cost), directly with --state or
        through a supervisor with --connect. Costs are in the currency of the
        prices of the supervisor's [models] config.

        Examples:
          levain usage
          levain usage --tenant acme --by session
          levain usage --session s-0123456789ab --json
        """
    )

    @OptionGroup var source: StateOption
    @Option(help: ArgumentHelp("Only this session's calls.", valueName: "SESSION")) var session: String?
    @Option(help: ArgumentHelp("Only this tenant's calls.", valueName: "TENANT")) var tenant: String?
    @Option(name: .customLong("run"), help: ArgumentHelp("Only this run's calls.", valueName: "RUN")) var runID: String?
    @Option(help: ArgumentHelp("Group rows by model, session, tenant or run.", valueName: "KEY")) var by = "model"

    func validate() throws {
        guard SessionLog.UsageGrouping(rawValue: by) != nil else {
            throw ValidationError("--by \(by): one of \(SessionLog.UsageGrouping.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let result: JSONValue
        switch try LogSource.open(state: source.state) {
        case .daemon(let client):
            var q = ["by=" + percentEncode(by)]
            if let session { q.append("session=" + percentEncode(session)) }
            if let tenant { q.append("tenant=" + percentEncode(tenant)) }
            if let runID { q.append("run=" + percentEncode(runID)) }
            result = .object(try LogSource.daemon(client).get("/v1/usage?" + q.joined(separator: "&")))
        case .file(let log):
            do {
                let u = try log.modelUsage(session: session, tenant: tenant, run: runID, groupBy: SessionLog.UsageGrouping(rawValue: by)!)
                result = APIJSON.usage(u.total, rows: u.rows, by: by)
            } catch {
                throw UserError("\(error)")
            }
        }
        if source.json {
            writeStdout(prettyJSON(result) + "\n")
            return
        }
        var text = by.uppercased().padding(28) + "REQUESTS".padding(10) + "INPUT".padding(12) + "OUTPUT".padding(12) + "COST\n"
        func line(_ key: String, _ o: JSONObject) -> String {
            key.padding(28) + (o["requests"]?.cell ?? "0").padding(10) + (o["input_tokens"]?.cell ?? "0").padding(12)
                + (o["output_tokens"]?.cell ?? "0").padding(12) + formatCost(o["cost"]?.doubleValue ?? 0) + "\n"
        }
        for row in result.objectValue?["rows"]?.arrayValue ?? [] {
            guard let o = row.objectValue else { continue }
            text += line(o["key"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "-", o)
        }
        text += line("total", result.objectValue?["total"]?.objectValue ?? [:])
        writeStdout(text)
    }

    private func formatCost(_ v: Double) -> String {
        let micro = Int64((v * 1_000_000).rounded())
        let whole = micro / 1_000_000, frac = micro % 1_000_000
        let f = String(frac)
        return "\(whole)." + String(repeating: "0", count: 6 - f.count) + f
    }
}

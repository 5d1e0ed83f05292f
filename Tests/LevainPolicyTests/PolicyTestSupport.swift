import Testing
@testable import LevainPolicy

/// `text` as a policy must fail to parse with this line, key and a message
/// containing `fragment`.
func expectPolicyError(_ text: String, line: Int, key: String, _ fragment: String,
                       sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try PolicyLoader.parse(text, file: "p.toml", directory: nil)
        Issue.record("no error for \(text)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.line == line && error.key == key && error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
    }
}

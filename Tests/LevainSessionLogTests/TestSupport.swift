import Foundation
import Testing
@testable import LevainSessionLog

/// A fresh directory under /tmp for one test, removed afterwards.
func withTemporaryLogPath<T>(_ body: (String) async throws -> T) async throws -> T {
    let dir = "/tmp/levain-sessionlog-tests/\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try await body(dir + "/log.sqlite")
}

extension SessionLog {
    /// Inserts a plain open session.
    func makeSession(_ id: String, tenant: String = "", kind: SessionKind = .session) async throws {
        try await insertSession(SessionRecord(id: id, tenant: tenant, kind: kind, policy: "default"))
    }
}

/// Expects `body` to throw a SessionLogError with `code`; returns it.
@discardableResult
func expectLogError(_ code: SessionLogError.Code, sourceLocation: SourceLocation = #_sourceLocation,
                    _ body: () async throws -> Void) async -> SessionLogError? {
    do {
        try await body()
        Issue.record("expected a \(code) error, nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as SessionLogError {
        if error.code != code {
            Issue.record("expected a \(code) error, got \(error.code): \(error)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a SessionLogError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

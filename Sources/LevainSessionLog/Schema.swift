import GRDB

/// The schema, as GRDB migrations. A migration, once shipped, never changes:
/// add "v2" and so on.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Statuses are not CHECK-constrained: SQLite cannot alter a CHECK
            // without rebuilding the table, and a reader that meets a value it
            // does not know reports a malformed row instead.
            try db.execute(sql: """
                CREATE TABLE sessions (
                    id TEXT PRIMARY KEY NOT NULL,
                    tenant TEXT NOT NULL DEFAULT '',
                    kind TEXT NOT NULL,
                    policy TEXT NOT NULL,
                    labels TEXT NOT NULL DEFAULT '{}',
                    status TEXT NOT NULL,
                    workspace TEXT,
                    limits TEXT NOT NULL DEFAULT '{}',
                    created_at TEXT NOT NULL,
                    closed_at TEXT,
                    supervisor TEXT
                );
                CREATE INDEX sessions_tenant_status ON sessions(tenant, status);
                CREATE INDEX sessions_status ON sessions(status);

                CREATE TABLE runs (
                    id TEXT PRIMARY KEY NOT NULL,
                    session_id TEXT NOT NULL REFERENCES sessions(id),
                    tenant TEXT NOT NULL DEFAULT '',
                    status TEXT NOT NULL,
                    request TEXT NOT NULL,
                    idempotency_key TEXT,
                    attempt INTEGER NOT NULL DEFAULT 1,
                    exit_code INTEGER,
                    signal INTEGER,
                    error TEXT,
                    created_at TEXT NOT NULL,
                    started_at TEXT,
                    finished_at TEXT,
                    retry_policy TEXT NOT NULL DEFAULT 'fail',
                    UNIQUE (session_id, idempotency_key)
                );
                CREATE INDEX runs_status ON runs(status);

                -- UNIQUE (session_id, seq) is also the (session_id, seq) index
                -- every per-session read and the chain head lookup use.
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY,
                    session_id TEXT NOT NULL REFERENCES sessions(id),
                    seq INTEGER NOT NULL,
                    run_id TEXT,
                    tenant TEXT NOT NULL DEFAULT '',
                    time TEXT NOT NULL,
                    type TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    prev_hash TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    UNIQUE (session_id, seq)
                );
                CREATE INDEX events_run ON events(run_id);
                """)
        }
        return migrator
    }

    static let tables = ["sessions", "runs", "events"]

    /// Every migration above, in order (the direct writer checks a log has
    /// exactly these before it writes).
    static let migrationIdentifiers = ["v1"]
}

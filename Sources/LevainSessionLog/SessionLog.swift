#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import GRDB

/// The session log: one SQLite database (WAL) holding the hash-chained
/// `events` and the `sessions` and `runs` state tables.
///
/// Writers are `levain serve` and `levain run`, possibly at the same time in
/// separate processes: every write transaction is `BEGIN IMMEDIATE` and reads
/// the chain heads it extends inside the transaction, so SQLite's file locks
/// (with a 5 s busy timeout) are what keeps chains consistent, not this
/// object's memory. Every write returns only after its transaction committed
/// with `synchronous = FULL`, i.e. after the WAL was fsynced, except a write
/// asked for as `.written` (see `Durability`): committed with `synchronous =
/// NORMAL`, made durable by the next FULL commit's fsync of the same WAL.
///
/// Reads are synchronous and short (WAL readers never wait for the writer).
public final class SessionLog: Sendable {
    public static let defaultPath = "/var/lib/levain/log.sqlite"
    /// How long a write waits for another process holding the write lock.
    public static let busyTimeout: Double = 5

    public let path: String
    public let isReadOnly: Bool
    let pool: any DatabaseWriter
    let committer: GroupCommitter?
    /// Whether writes commit (see `writeFailure`).
    let health = WriteHealth()

    /// Opens (a writer: creates and migrates) the log at `path`.
    ///
    /// A read-only open never creates or migrates anything: a missing file is
    /// `.logNotFound`, a file without the schema is `.notASessionLog`.
    /// `singleConnection`: one connection (no reader pool), for a short-lived
    /// writer such as a one-shot `levain run`: it opens in a fraction of the
    /// time a pool takes.
    public init(path: String = SessionLog.defaultPath, readOnly: Bool = false, singleConnection: Bool = false) throws(SessionLogError) {
        guard !path.isEmpty, !path.utf8.contains(0) else {
            throw SessionLogError(.invalidArgument, "the session log path is empty or contains NUL")
        }
        self.path = path
        self.isReadOnly = readOnly

        let existed = Self.fileExists(path)
        if readOnly, !existed {
            throw SessionLogError(.logNotFound, "no session log at \(path)")
        }
        if !readOnly, !existed {
            try Self.makeParentDirectory(of: path)
            // The log holds commands and environments: root only. Creating
            // the (empty) file first gives it 0600, and SQLite gives the -wal
            // and -shm files the database file's mode.
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                closeDescriptor(fd)
            } else if errno != EEXIST {
                let code = errno
                throw SessionLogError(.openFailed, "cannot create \(path): \(String(cString: strerror(code)))")
            }
        }

        var config = Configuration()
        config.label = "levain.session-log"
        config.readonly = readOnly
        config.busyMode = .timeout(Self.busyTimeout)
        config.foreignKeysEnabled = true
        config.maximumReaderCount = 4
        config.prepareDatabase { db in
            // Readers never commit; this matters for the writer, which GRDB
            // sets to NORMAL when it enables WAL (re-applied below).
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }

        let pool: any DatabaseWriter
        do {
            if singleConnection && !readOnly {
                let queue = try DatabaseQueue(path: path, configuration: config)
                // The log is always in WAL mode (a pool sets it; so must we
                // when we are the first to open the file).
                try queue.writeWithoutTransaction { db in
                    let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode")
                    if mode?.lowercased() != "wal" { try db.execute(sql: "PRAGMA journal_mode = WAL") }
                }
                pool = queue
            } else {
                pool = try DatabasePool(path: path, configuration: config)
            }
        } catch {
            throw SessionLogError.wrap(error, "cannot open the session log at \(path)")
        }
        self.pool = pool

        if readOnly {
            self.committer = nil
            let complete = try mapErrors("cannot read the session log at \(path)") {
                try pool.read { db in try Schema.migrator.hasCompletedMigrations(db) }
            }
            guard complete else {
                throw SessionLogError(.notASessionLog, "\(path) is not a Levain session log (no schema)")
            }
            return
        }

        try mapErrors("cannot open the session log at \(path) for writing") {
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                let level = try Int.fetchOne(db, sql: "PRAGMA synchronous")
                guard level == 2 else {
                    throw SessionLogError(.database, "PRAGMA synchronous = FULL did not take (got \(level ?? -1))")
                }
                // Checkpoint every 4000 WAL frames (16 MB) rather than 1000:
                // a checkpoint costs two fsyncs on the commit path, and the
                // same hot index pages are copied once instead of four times.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 4000")
                // Concurrent sessions each keep a hot tail page in both
                // indexes: 16 MB of page cache holds them for ~2000 sessions
                // (measured +8% at 256 writers over the 2 MB default).
                try db.execute(sql: "PRAGMA cache_size = -16000")
            }
        }
        try Self.migrate(pool, path: path)
        self.committer = GroupCommitter(pool: pool, health: health)
    }

    private static func migrate(_ pool: any DatabaseWriter, path: String) throws(SessionLogError) {
        let migrator = Schema.migrator
        let superseded = try mapErrors("cannot read the schema of \(path)") {
            try pool.read { db in try migrator.hasBeenSuperseded(db) }
        }
        if superseded {
            throw SessionLogError(.newerSchema, "\(path) was written by a newer Levain (unknown schema migrations)")
        }
        do {
            try migrator.migrate(pool)
        } catch {
            // Another process may have migrated between our check and our
            // transaction (GRDB checks outside the migration's transaction).
            let done = (try? pool.read { db in try migrator.hasCompletedMigrations(db) }) ?? false
            if !done {
                throw SessionLogError.wrap(error, "cannot create the schema of \(path)")
            }
        }
    }

    /// Stops accepting writes, waits for queued writes to commit, checkpoints
    /// the WAL into the database file, and closes every connection.
    public func close() throws(SessionLogError) {
        if let committer {
            committer.close()
            // Waits for queued writes (they run on the same writer queue).
            // The checkpoint is best effort: another process may be reading.
            pool.writeWithoutTransaction { db in _ = try? db.checkpoint(.truncate) }
        }
        try mapErrors("cannot close the session log") { try pool.close() }
    }

    /// Copies the WAL into the database file (`wal_checkpoint(TRUNCATE)`).
    public func checkpoint() throws(SessionLogError) {
        guard !isReadOnly else { throw SessionLogError(.readOnly, "the session log is open read-only") }
        try mapErrors("cannot checkpoint the session log") {
            try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        }
    }

    /// When a write returns. Every write is in the log file when it
    /// returns, in order, seen by every reader and by the next start after
    /// a crash of this process; they differ only on a power loss.
    public enum Durability: Sendable, Equatable {
        /// Fsynced before it returns: for every state a client is told
        /// (accepted, finished with status N) and cleanup state.
        case durable
        /// Committed to the WAL but not fsynced: durable with the next
        /// `.durable` write (one fsync covers both), lost by a power loss
        /// before it. For states the submitter has not been told yet, such as a
        /// `wait: true` run's `run.queued`, whose answer waits for the
        /// durable `run.finished` behind it.
        case written
    }

    /// Counters of this instance's writer (other processes not included).
    public struct Statistics: Sendable, Equatable {
        /// Write transactions committed.
        public var transactions = 0
        /// Events committed.
        public var events = 0
        /// State changes committed.
        public var changes = 0
        /// Write requests (append/record calls) committed.
        public var requests = 0
        /// Of those, transactions that fsynced the WAL (at least one of
        /// their requests was `.durable`).
        public var syncedTransactions = 0
        /// Transactions that failed to commit (every request in them failed).
        public var failedTransactions = 0
        /// The largest number of events committed by one transaction.
        public var largestTransaction = 0
    }

    public var statistics: Statistics { committer?.statistics ?? Statistics() }

    // MARK: - Files

    static func fileExists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    private static func makeParentDirectory(of path: String) throws(SessionLogError) {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return }
        let parent = String(path[..<slash])
        guard !parent.isEmpty, !fileExists(parent) else { return }
        try makeParentDirectory(of: parent)
        if mkdir(parent, 0o700) != 0, errno != EEXIST {
            let code = errno
            throw SessionLogError(.openFailed, "cannot create directory \(parent): \(String(cString: strerror(code)))")
        }
    }
}

private func closeDescriptor(_ fd: Int32) {
    #if canImport(Glibc)
    _ = Glibc.close(fd)
    #elseif canImport(Musl)
    _ = Musl.close(fd)
    #elseif canImport(Darwin)
    _ = Darwin.close(fd)
    #endif
}

// MARK: - Test hooks (internal: reached through `@testable import`)

extension SessionLog {
    /// Raw SQL on the writer connection, outside the chain: how the tamper
    /// tests play the attacker.
    func executeRawSQL(_ sql: String) throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: sql) }
        // Writes on the writer's own connection do not change its
        // data_version, so the committer cannot notice them by itself.
        committer?.invalidateHeads()
    }

    /// One value from the writer connection (e.g. `PRAGMA synchronous`).
    func writerValue(_ sql: String) throws -> String? {
        try pool.writeWithoutTransaction { db in try String.fetchOne(db, sql: sql) }
    }
}

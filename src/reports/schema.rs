//! The report store's tables, and the migration of a database written by an earlier
//! spfd. The version lives in SQLite's `user_version`: 0 is the first layout (one
//! report per reporting org and report id, no trust), [`VERSION`] the current one.

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// The layout this spfd writes.
pub const VERSION: i64 = 2;

/// The reports table, by name (the migration builds it beside the old one).
///
/// - `trust`: `verified`, `vouched` or `unverified` (see [`super::store::Trust`]).
/// - `signer`: for verified reports, the DKIM d= that vouches for the reporting
///   organisation; organisations are counted by it, so one signer is one
///   organisation whatever names its reports claim.
/// - `digest`: SHA-256 of the report's content, to tell a second copy (a duplicate)
///   from a different report under the same key (a conflict). NULL for reports
///   stored before digests existed: they count as the same content.
/// - `conflict`: 1 when another report with the same key and different content is
///   stored too.
fn reports_table(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (
    id INTEGER PRIMARY KEY,
    org TEXT NOT NULL,
    report_id TEXT NOT NULL,
    domain TEXT NOT NULL,
    begin INTEGER NOT NULL,
    end INTEGER NOT NULL,
    email TEXT,
    schema TEXT NOT NULL,
    generator TEXT,
    p TEXT, sp TEXT, np TEXT, adkim TEXT, aspf TEXT, pct TEXT, testing TEXT,
    source TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    trust TEXT NOT NULL DEFAULT 'unverified',
    signer TEXT,
    digest TEXT,
    conflict INTEGER NOT NULL DEFAULT 0
);"
    )
}

/// Everything but the reports table; `IF NOT EXISTS` throughout, so it also completes
/// a database of the first layout.
const OTHER_TABLES: &str = "
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY,
    report INTEGER NOT NULL REFERENCES reports (id),
    domain TEXT NOT NULL,
    begin INTEGER NOT NULL,
    source_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    dkim_eval TEXT,
    spf_eval TEXT,
    dkim_aligned INTEGER NOT NULL,
    spf_aligned INTEGER NOT NULL,
    reasons TEXT,
    header_from TEXT NOT NULL,
    envelope_from TEXT,
    envelope_to TEXT,
    -- Copies of auth_results kept on the row so that a summary reads one table:
    -- the passing DKIM d= (space-separated) and the first SPF-checked domain.
    dkim_pass_domains TEXT NOT NULL,
    spf_domain TEXT
);
CREATE INDEX IF NOT EXISTS rows_domain_begin ON rows (domain, begin);
CREATE TABLE IF NOT EXISTS auth_results (
    row INTEGER NOT NULL REFERENCES rows (id),
    kind TEXT NOT NULL,
    domain TEXT NOT NULL,
    detail TEXT,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_results_row ON auth_results (row);
CREATE TABLE IF NOT EXISTS import_errors (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

/// The indexes of the current layout: the duplicate key, and the dates retention
/// expires by (so that an expiry with nothing to do is one index probe).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS reports_domain_begin ON reports (domain, begin);
CREATE INDEX IF NOT EXISTS reports_key ON reports (org, report_id, begin, end, domain);
CREATE INDEX IF NOT EXISTS reports_begin ON reports (begin);
CREATE INDEX IF NOT EXISTS rows_begin ON rows (begin);
CREATE INDEX IF NOT EXISTS import_errors_at ON import_errors (at);
";

/// Brings the database to [`VERSION`]: creates it when empty, migrates the first
/// layout. One immediate transaction, so two processes opening the same file at
/// once migrate it once.
pub fn prepare(conn: &mut Connection) -> rusqlite::Result<()> {
    if version(conn)? >= VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if version(&tx)? < VERSION {
        if has_table(&tx, "reports")? {
            migrate_v0(&tx)?;
        } else {
            tx.execute_batch(&reports_table("reports"))?;
        }
        tx.execute_batch(OTHER_TABLES)?;
        tx.execute_batch(INDEXES)?;
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()
}

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The first layout kept one report per (org, report id) by a table constraint,
/// which SQLite cannot drop: the table is rebuilt with the same ids (rows point at
/// them). Its reports predate trust levels, so they are `unverified`: with the
/// default `trust = "verified"` they stop counting until `trust = "all"`.
fn migrate_v0(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    const COLUMNS: &str = "id, org, report_id, domain, begin, end, email, schema, generator, \
                           p, sp, np, adkim, aspf, pct, testing, source, imported_at";
    tx.execute_batch(&reports_table("reports_v2"))?;
    tx.execute_batch(&format!(
        "INSERT INTO reports_v2 ({COLUMNS}) SELECT {COLUMNS} FROM reports;
         DROP TABLE reports;
         ALTER TABLE reports_v2 RENAME TO reports;"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first layout, as spfd wrote it before trust levels.
    const V0: &str = "
CREATE TABLE reports (
    id INTEGER PRIMARY KEY, org TEXT NOT NULL, report_id TEXT NOT NULL, domain TEXT NOT NULL,
    begin INTEGER NOT NULL, end INTEGER NOT NULL, email TEXT, schema TEXT NOT NULL, generator TEXT,
    p TEXT, sp TEXT, np TEXT, adkim TEXT, aspf TEXT, pct TEXT, testing TEXT,
    source TEXT NOT NULL, imported_at INTEGER NOT NULL, UNIQUE (org, report_id));
INSERT INTO reports (id, org, report_id, domain, begin, end, schema, source, imported_at)
    VALUES (7, 'Receiver', 'r-1', 'firm.test', 100, 200, 'rfc7489', 'a.xml', 300);
";

    #[test]
    fn a_first_layout_database_is_migrated_once_and_keeps_its_reports() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V0).unwrap();
        prepare(&mut conn).unwrap();
        prepare(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let (id, trust, conflict): (i64, String, i64) = conn
            .query_row("SELECT id, trust, conflict FROM reports", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((id, trust.as_str(), conflict), (7, "unverified", 0));
        // The old constraint is gone: the same (org, id) over another range is stored.
        conn.execute(
            "INSERT INTO reports (org, report_id, domain, begin, end, schema, source, imported_at) \
             VALUES ('Receiver', 'r-1', 'firm.test', 86500, 86600, 'rfc7489', 'b.xml', 300)",
            [],
        )
        .unwrap();
    }
}

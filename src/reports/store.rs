//! The report store: SQLite at `state_dir/reports.sqlite`. Every record row is kept
//! (with its DKIM and SPF results in `auth_results`), indexed by domain and date;
//! a report is stored once per (reporting org, report id).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::model::Report;

pub const FILE_NAME: &str = "reports.sqlite";

/// Why the store failed; names the database file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
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
    UNIQUE (org, report_id)
);
CREATE INDEX IF NOT EXISTS reports_domain_begin ON reports (domain, begin);
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

/// What happened to one report handed to [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same (org, report id) was stored before: nothing was added.
    Duplicate,
}

pub struct Store {
    path: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens (or creates) `state_dir/reports.sqlite`.
    pub fn open_in(state_dir: &Path) -> Result<Store, StoreError> {
        let _ = crate::state::create_dir(state_dir);
        Store::open(&state_dir.join(FILE_NAME))
    }

    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        make_owner_only(path);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Whether the database file exists (without creating it).
    pub fn exists_in(state_dir: &Path) -> bool {
        state_dir.join(FILE_NAME).exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores reports in one transaction; `source` names where each came from.
    pub fn insert(&mut self, reports: &[(&Report, &str)], now: i64) -> Result<Vec<Inserted>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut out = Vec::with_capacity(reports.len());
        for (report, source) in reports {
            out.push(insert_one(&tx, report, source, now).map_err(err)?);
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Keeps one error per unreadable report, for `spfd reports summary` to show.
    pub fn record_error(&self, source: &str, message: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO import_errors (source, message, at) VALUES (?1, ?2, ?3)",
                params![source, message, now],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Whether any report is stored for the domain.
    pub fn has_reports(&self, domain: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM reports WHERE domain = ?1 LIMIT 1",
                [domain],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.error(e))
    }
}

fn insert_one(
    tx: &rusqlite::Transaction<'_>,
    r: &Report,
    source: &str,
    now: i64,
) -> rusqlite::Result<Inserted> {
    match insert_report(tx, r, source, now)? {
        Some(id) => {
            insert_rows(tx, r, id)?;
            Ok(Inserted::New)
        }
        None => Ok(Inserted::Duplicate),
    }
}

/// The report's own row; `None` when (org, report id) is already stored.
fn insert_report(
    tx: &rusqlite::Transaction<'_>,
    r: &Report,
    source: &str,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    let p = &r.policy;
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO reports (org, report_id, domain, begin, end, email, schema, generator, \
             p, sp, np, adkim, aspf, pct, testing, source, imported_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?
        .execute(params![
            r.org_name,
            r.report_id,
            p.domain,
            r.begin,
            r.end,
            r.email,
            r.schema.as_str(),
            r.generator,
            p.p,
            p.sp,
            p.np,
            p.adkim,
            p.aspf,
            p.pct,
            p.testing,
            source,
            now
        ])?;
    Ok((added > 0).then(|| tx.last_insert_rowid()))
}

fn insert_rows(tx: &rusqlite::Transaction<'_>, r: &Report, report_id: i64) -> rusqlite::Result<()> {
    let domain = &r.policy.domain;
    let mut row_stmt = tx.prepare_cached(
        "INSERT INTO rows (report, domain, begin, source_ip, count, disposition, dkim_eval, spf_eval, \
         dkim_aligned, spf_aligned, reasons, header_from, envelope_from, envelope_to, dkim_pass_domains, spf_domain) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    let mut auth_stmt = tx.prepare_cached(
        "INSERT INTO auth_results (row, kind, domain, detail, result) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for row in &r.rows {
        let reasons = (!row.reasons.is_empty()).then(|| row.reasons.join(","));
        let dkim_pass: Vec<&str> = row
            .dkim
            .iter()
            .filter(|a| a.result == "pass")
            .map(|a| a.domain.as_str())
            .collect();
        let spf_domain = row.spf.first().map(|a| &a.domain).or(row.envelope_from.as_ref());
        row_stmt.execute(params![
            report_id,
            domain,
            r.begin,
            row.source_ip.to_string(),
            row.count as i64,
            row.disposition,
            row.dkim_eval,
            row.spf_eval,
            row.dkim_aligned(),
            row.spf_aligned(),
            reasons,
            row.header_from,
            row.envelope_from,
            row.envelope_to,
            dkim_pass.join(" "),
            spf_domain
        ])?;
        let row_id = tx.last_insert_rowid();
        for (kind, results) in [("dkim", &row.dkim), ("spf", &row.spf)] {
            for a in results {
                auth_stmt.execute(params![row_id, kind, a.domain, a.detail, a.result])?;
            }
        }
    }
    Ok(())
}

/// SQLite creates files 0644 less the umask, and its -wal and -shm files with the
/// database's mode: the database is made owner-only before SQLite opens it, and files
/// an older version left open to others are closed to them. A failure (a store owned by
/// another user) is logged; SQLite's own open says whether the store can be used.
fn make_owner_only(path: &Path) {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for (i, file) in files.iter().enumerate() {
        let open_to_others = crate::state::mode_of(file).is_some_and(|m| m & 0o077 != 0);
        let missing_database = i == 0 && !file.exists();
        if (open_to_others || missing_database)
            && let Err(e) = crate::state::make_private(file)
        {
            tracing::warn!(file = %crate::logging::Escaped(&file.display()), "cannot make the report store owner-only: {e}");
        }
    }
}

//! The report store: SQLite at `state_dir/reports.sqlite` (tables in
//! [`super::schema`]). Every record row is kept (with its DKIM and SPF results in
//! `auth_results`), indexed by domain and date. A report's key is (reporting org,
//! report id, date range, policy domain): a second copy of the same content is a
//! duplicate and not stored; a different report under the same key is stored and
//! both are flagged as a conflict, so a forged report stored first never hides the
//! genuine one. Each report carries how far it is trusted ([`Trust`]).

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

/// What happened to one report handed to [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same key and content were stored before: nothing was added (the stored
    /// copy's trust is raised when this copy is trusted more).
    Duplicate,
    /// Another report with the same key and different content is stored: this one
    /// is stored too, and both are flagged.
    Conflict,
}

/// How far a stored report is trusted as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Arrived by mail without a DKIM signature aligned with the reporting
    /// organisation: anyone can send it.
    Unverified,
    /// Read from a `dir:` source or `spfd reports import`: the operator put it there.
    Vouched,
    /// Arrived by mail with a passing DKIM signature aligned with the reporting
    /// organisation's domain.
    Verified,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Unverified => "unverified",
            Trust::Vouched => "vouched",
            Trust::Verified => "verified",
        }
    }

    fn parse(text: &str) -> Trust {
        match text {
            "verified" => Trust::Verified,
            "vouched" => Trust::Vouched,
            _ => Trust::Unverified,
        }
    }
}

/// The trust of one report, and for a verified one the DKIM d= that vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessed {
    pub trust: Trust,
    pub signer: Option<String>,
}

impl Assessed {
    pub const VOUCHED: Assessed = Assessed {
        trust: Trust::Vouched,
        signer: None,
    };
    pub const UNVERIFIED: Assessed = Assessed {
        trust: Trust::Unverified,
        signer: None,
    };
}

/// One report handed to [`Store::insert`]: where it came from and how far it is trusted.
pub struct Incoming<'a> {
    pub report: &'a Report,
    pub source: &'a str,
    pub assessed: &'a Assessed,
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
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        super::schema::prepare(&mut conn).map_err(err)?;
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

    /// Stores reports in one transaction.
    pub fn insert(&mut self, reports: &[Incoming<'_>], now: i64) -> Result<Vec<Inserted>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut out = Vec::with_capacity(reports.len());
        for incoming in reports {
            out.push(insert_one(&tx, incoming, now).map_err(err)?);
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

    /// Retention: deletes every report whose date range begins before `cutoff` (Unix),
    /// with its rows and their results, and the import errors recorded before it.
    /// Returns the number of reports deleted. With nothing to delete this is a few
    /// index probes, so every import and summary may call it.
    pub fn expire(&mut self, cutoff: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM auth_results WHERE row IN (SELECT id FROM rows WHERE begin < ?1)",
            [cutoff],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM rows WHERE begin < ?1", [cutoff])
            .map_err(err)?;
        let reports = tx
            .execute("DELETE FROM reports WHERE begin < ?1", [cutoff])
            .map_err(err)?;
        tx.execute("DELETE FROM import_errors WHERE at < ?1", [cutoff])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(reports)
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
    incoming: &Incoming<'_>,
    now: i64,
) -> rusqlite::Result<Inserted> {
    let r = incoming.report;
    let digest = content_digest(r);
    let stored = same_key(tx, r)?;
    // A copy stored before digests existed counts as the same content.
    if let Some((id, trust)) = stored
        .iter()
        .find(|(_, _, d)| d.as_deref().is_none_or(|d| d == digest))
        .map(|(id, trust, _)| (*id, *trust))
    {
        if incoming.assessed.trust > trust {
            tx.prepare_cached("UPDATE reports SET trust = ?1, signer = ?2 WHERE id = ?3")?
                .execute(params![
                    incoming.assessed.trust.as_str(),
                    incoming.assessed.signer,
                    id
                ])?;
        }
        return Ok(Inserted::Duplicate);
    }
    let conflict = !stored.is_empty();
    let id = insert_report(tx, incoming, &digest, conflict, now)?;
    insert_rows(tx, r, id)?;
    if !conflict {
        return Ok(Inserted::New);
    }
    let ids: Vec<i64> = stored.iter().map(|(id, _, _)| *id).collect();
    for other in ids {
        tx.prepare_cached("UPDATE reports SET conflict = 1 WHERE id = ?1")?
            .execute([other])?;
    }
    Ok(Inserted::Conflict)
}

/// Reports stored under the key of `r`: id, trust and content digest.
fn same_key(
    tx: &rusqlite::Transaction<'_>,
    r: &Report,
) -> rusqlite::Result<Vec<(i64, Trust, Option<String>)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, trust, digest FROM reports \
         WHERE org = ?1 AND report_id = ?2 AND begin = ?3 AND end = ?4 AND domain = ?5",
    )?;
    let found = stmt.query_map(
        params![r.org_name, r.report_id, r.begin, r.end, r.policy.domain],
        |row| Ok((row.get(0)?, Trust::parse(&row.get::<_, String>(1)?), row.get(2)?)),
    )?;
    found.collect()
}

/// SHA-256 over every field a receiver wrote (not the repairs noted while reading),
/// each length-prefixed, so two copies of one report give the same digest.
fn content_digest(r: &Report) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |text: &str| {
        ctx.update(&(text.len() as u64).to_be_bytes());
        ctx.update(text.as_bytes());
    };
    let p = &r.policy;
    for text in [&r.org_name, &r.report_id, &p.domain] {
        field(text);
    }
    field(r.email.as_deref().unwrap_or(""));
    field(&format!("{} {}", r.begin, r.end));
    for opt in [&p.adkim, &p.aspf, &p.p, &p.sp, &p.np, &p.pct, &p.testing] {
        field(opt.as_deref().unwrap_or("-"));
    }
    for row in &r.rows {
        field(&format!("{} {} {}", row.source_ip, row.count, row.disposition));
        for opt in [
            &row.dkim_eval,
            &row.spf_eval,
            &row.envelope_from,
            &row.envelope_to,
        ] {
            field(opt.as_deref().unwrap_or("-"));
        }
        field(&row.header_from);
        field(&row.reasons.join(","));
        for a in row.dkim.iter().chain(&row.spf) {
            field(&format!(
                "{} {} {}",
                a.domain,
                a.detail.as_deref().unwrap_or("-"),
                a.result
            ));
        }
    }
    let digest = ctx.finish();
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The report's own row; returns its id.
fn insert_report(
    tx: &rusqlite::Transaction<'_>,
    incoming: &Incoming<'_>,
    digest: &str,
    conflict: bool,
    now: i64,
) -> rusqlite::Result<i64> {
    let r = incoming.report;
    let p = &r.policy;
    tx.prepare_cached(
        "INSERT INTO reports (org, report_id, domain, begin, end, email, schema, generator, \
         p, sp, np, adkim, aspf, pct, testing, source, imported_at, trust, signer, digest, conflict) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
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
        incoming.source,
        now,
        incoming.assessed.trust.as_str(),
        incoming.assessed.signer,
        digest,
        conflict
    ])?;
    Ok(tx.last_insert_rowid())
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
            // Beyond i64 (a forged count): stored as the largest value, which every
            // query skips as an error row, never as a negative count.
            i64::try_from(row.count).unwrap_or(i64::MAX),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ip: &str, count: u64) -> Report {
        let xml = format!(
            "<feedback><report_metadata><org_name>R</org_name><email>d@r.test</email>\
             <report_id>1</report_id><date_range><begin>86400</begin><end>172799</end></date_range>\
             </report_metadata><policy_published><domain>firm.test</domain><p>none</p></policy_published>\
             <record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
             <disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>\
             <identifiers><header_from>firm.test</header_from></identifiers></record></feedback>"
        );
        super::super::xml::parse(xml.as_bytes()).unwrap()
    }

    fn put(store: &mut Store, r: &Report, assessed: &Assessed) -> Inserted {
        let incoming = Incoming {
            report: r,
            source: "test",
            assessed,
        };
        store.insert(&[incoming], 0).unwrap()[0]
    }

    fn column(store: &Store, sql: &str) -> Vec<String> {
        let mut stmt = store.conn().prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn a_trusted_copy_raises_the_trust_and_a_different_one_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_in(dir.path()).unwrap();
        let genuine = report("192.0.2.1", 10);
        // A replay without a signature first, then the signed original: one report,
        // now verified.
        assert_eq!(put(&mut store, &genuine, &Assessed::UNVERIFIED), Inserted::New);
        let signed = Assessed {
            trust: Trust::Verified,
            signer: Some("r.test".into()),
        };
        assert_eq!(put(&mut store, &genuine, &signed), Inserted::Duplicate);
        assert_eq!(
            put(&mut store, &genuine, &Assessed::UNVERIFIED),
            Inserted::Duplicate
        );
        assert_eq!(column(&store, "SELECT trust FROM reports"), ["verified"]);
        assert_eq!(column(&store, "SELECT signer FROM reports"), ["r.test"]);
        // Same key, other content: kept, and both flagged.
        let other = report("192.0.2.1", 11);
        assert_eq!(put(&mut store, &other, &Assessed::UNVERIFIED), Inserted::Conflict);
        assert_eq!(
            column(&store, "SELECT CAST(conflict AS TEXT) FROM reports ORDER BY id"),
            ["1", "1"]
        );
        // Expiry by the date range's start.
        assert_eq!(store.expire(86400).unwrap(), 0);
        assert_eq!(store.expire(86401).unwrap(), 2);
        assert!(column(&store, "SELECT source_ip FROM rows").is_empty());
    }
}

//! Read-side queries of the store: per-domain totals and per-source aggregates over
//! a period, answered by SQL over the (domain, begin) indexes.
//!
//! Every sum over message counts is SQLite's `TOTAL` (a float that never fails,
//! where `SUM` stops the whole query on an integer overflow) of rows whose count is
//! within `0..=`[`MAX_ROW_COUNT`], and is added up in Rust with saturating
//! arithmetic. A row outside that range (a forged count, or a count beyond i64 that
//! an earlier spfd stored as negative) is an error row: skipped and counted apart.
//! Each query counts the reports [`EvidenceTrust`] admits.

use std::collections::BTreeMap;

use rusqlite::params;

use super::store::{Store, StoreError};
pub use crate::config::EvidenceTrust;

/// The largest message count one row may carry to be counted: more than any
/// receiver reports for one source in one day.
pub const MAX_ROW_COUNT: i64 = 1_000_000_000;

/// Totals of a domain over a period (of the reports the trust setting counts, unless
/// said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    pub reports: u64,
    /// Distinct UTC days on which a report's range begins.
    pub days: u64,
    pub receivers: u64,
    /// Distinct reporting organisations: the DKIM signer of a verified report, the
    /// organisation name of any other (so one signer is one organisation, whatever
    /// names its reports claim).
    pub organisations: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Of every report of the period: those that arrived by mail without an aligned
    /// DKIM signature, and their messages (with `trust = "verified"`, not counted
    /// anywhere else).
    pub unverified_reports: u64,
    pub unverified_messages: u64,
    /// Of every report of the period: those stored beside another with the same key
    /// and different content.
    pub conflicts: u64,
}

/// One source address over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub ip: String,
    pub messages: u64,
    pub dkim_aligned: u64,
    pub spf_aligned: u64,
    pub dmarc_pass: u64,
    /// d= of passing DKIM signatures (aligned or not), by messages.
    pub dkim_domains: BTreeMap<String, u64>,
    /// Envelope (MAIL FROM) and SPF-checked domains, by messages.
    pub envelope_domains: BTreeMap<String, u64>,
}

/// A count TOTAL returned: never negative, saturated at u64::MAX.
fn whole(total: f64) -> u64 {
    total.max(0.0) as u64
}

/// The SQL condition on a report's trust: `?3` is whether every report counts.
const TRUSTED: &str = "(?3 OR trust != 'unverified')";

impl Store {
    pub fn overview(&self, domain: &str, since: i64, trust: EvidenceTrust) -> Result<Overview, StoreError> {
        let all = trust == EvidenceTrust::All;
        let mut o = self
            .conn()
            .query_row(
                &format!(
                    "SELECT COUNT(*), COUNT(DISTINCT begin / 86400), COUNT(DISTINCT org), \
                     COUNT(DISTINCT COALESCE(signer, LOWER(org))), MIN(begin), MAX(end) \
                     FROM reports WHERE domain = ?1 AND begin >= ?2 AND {TRUSTED}"
                ),
                params![domain, since, all],
                |r| {
                    Ok(Overview {
                        reports: r.get::<_, i64>(0)?.max(0) as u64,
                        days: r.get::<_, i64>(1)?.max(0) as u64,
                        receivers: r.get::<_, i64>(2)?.max(0) as u64,
                        organisations: r.get::<_, i64>(3)?.max(0) as u64,
                        first: r.get(4)?,
                        last: r.get(5)?,
                        ..Overview::default()
                    })
                },
            )
            .map_err(|e| self.error(e))?;
        self.doubts(domain, since, &mut o).map_err(|e| self.error(e))?;
        Ok(o)
    }

    /// The unverified, conflicting and error counts of every report of the period.
    fn doubts(&self, domain: &str, since: i64, o: &mut Overview) -> rusqlite::Result<()> {
        (o.unverified_reports, o.conflicts) = self.conn().query_row(
            "SELECT TOTAL(trust = 'unverified'), TOTAL(conflict != 0) FROM reports \
             WHERE domain = ?1 AND begin >= ?2",
            params![domain, since],
            |r| Ok((whole(r.get(0)?), whole(r.get(1)?))),
        )?;
        // The join with the reports table is paid only when there is something to find.
        if o.unverified_reports > 0 {
            o.unverified_messages = self.conn().query_row(
                "SELECT TOTAL(r.count) FROM rows r JOIN reports p ON p.id = r.report \
                 WHERE r.domain = ?1 AND r.begin >= ?2 AND r.count BETWEEN 0 AND ?3 AND p.trust = 'unverified'",
                params![domain, since, MAX_ROW_COUNT],
                |r| Ok(whole(r.get(0)?)),
            )?;
        }
        Ok(())
    }

    /// Whether the period holds a report that the trust setting leaves out.
    fn leaves_out(&self, domain: &str, since: i64, trust: EvidenceTrust) -> rusqlite::Result<bool> {
        if trust == EvidenceTrust::All {
            return Ok(false);
        }
        self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM reports WHERE domain = ?1 AND begin >= ?2 AND trust = 'unverified')",
            params![domain, since],
            |r| r.get(0),
        )
    }

    /// Every source of the domain in the period, most messages first.
    pub fn sources(
        &self,
        domain: &str,
        since: i64,
        trust: EvidenceTrust,
    ) -> Result<Vec<SourceStats>, StoreError> {
        self.sources_and_errors(domain, since, trust)
            .map(|(list, _)| list)
    }

    /// [`Store::sources`], and the rows of the counted reports skipped for a count
    /// outside `0..=MAX_ROW_COUNT` (found in the same pass).
    pub fn sources_and_errors(
        &self,
        domain: &str,
        since: i64,
        trust: EvidenceTrust,
    ) -> Result<(Vec<SourceStats>, u64), StoreError> {
        let (by_ip, errors) = self
            .leaves_out(domain, since, trust)
            .and_then(|some| self.source_totals(domain, since, some))
            .map_err(|e| self.error(e))?;
        let mut out: Vec<SourceStats> = by_ip.into_values().collect();
        out.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.ip.cmp(&b.ip)));
        Ok((out, errors))
    }

    /// One pass over the rows (the auth domains are copied onto each row at import),
    /// joined with their reports only when some are to be left out for their trust;
    /// also the number of error rows.
    fn source_totals(
        &self,
        domain: &str,
        since: i64,
        leave_out: bool,
    ) -> rusqlite::Result<(BTreeMap<String, SourceStats>, u64)> {
        let (join, trusted) = if leave_out {
            ("JOIN reports p ON p.id = r.report", "AND p.trust != 'unverified'")
        } else {
            ("", "")
        };
        // `ok`: the row's count is possible; sums are over such rows only.
        let mut stmt = self.conn().prepare_cached(&format!(
            "SELECT r.source_ip, r.dkim_pass_domains, r.spf_domain, TOTAL(ok), TOTAL(NOT ok), \
             TOTAL(ok * r.count), TOTAL(ok * r.count * (r.dkim_aligned != 0)), \
             TOTAL(ok * r.count * (r.spf_aligned != 0)), \
             TOTAL(ok * r.count * (r.dkim_aligned != 0 OR r.spf_aligned != 0)) \
             FROM (SELECT *, count BETWEEN 0 AND ?3 AS ok FROM rows) r {join} \
             WHERE r.domain = ?1 AND r.begin >= ?2 {trusted} \
             GROUP BY r.source_ip, r.dkim_pass_domains, r.spf_domain"
        ))?;
        let mut rows = stmt.query(params![domain, since, MAX_ROW_COUNT])?;
        let mut by_ip: BTreeMap<String, SourceStats> = BTreeMap::new();
        let mut errors = 0u64;
        while let Some(r) = rows.next()? {
            errors = errors.saturating_add(whole(r.get(4)?));
            if whole(r.get(3)?) == 0 {
                continue;
            }
            let ip: String = r.get(0)?;
            let dkim: String = r.get(1)?;
            let spf: Option<String> = r.get(2)?;
            let n = whole(r.get(5)?);
            let s = by_ip.entry(ip.clone()).or_insert_with(|| SourceStats {
                ip,
                ..SourceStats::default()
            });
            s.messages = s.messages.saturating_add(n);
            s.dkim_aligned = s.dkim_aligned.saturating_add(whole(r.get(6)?));
            s.spf_aligned = s.spf_aligned.saturating_add(whole(r.get(7)?));
            s.dmarc_pass = s.dmarc_pass.saturating_add(whole(r.get(8)?));
            for d in dkim.split(' ').filter(|d| !d.is_empty()) {
                let e = s.dkim_domains.entry(d.to_string()).or_default();
                *e = e.saturating_add(n);
            }
            if let Some(d) = spf {
                let e = s.envelope_domains.entry(d).or_default();
                *e = e.saturating_add(n);
            }
        }
        Ok((by_ip, errors))
    }

    /// Import errors recorded since a time.
    pub fn error_count(&self, since: i64) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM import_errors WHERE at >= ?1",
                [since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }
}

impl Store {
    /// Distinct days of reports of the domain that saw `p` published.
    pub fn days_with_policy(
        &self,
        domain: &str,
        p: &str,
        since: i64,
        trust: EvidenceTrust,
    ) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT COUNT(DISTINCT begin / 86400) FROM reports \
                     WHERE domain = ?1 AND begin >= ?2 AND {TRUSTED} AND p = ?4"
                ),
                params![domain, since, trust == EvidenceTrust::All, p],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }
}

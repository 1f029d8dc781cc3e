//! Read-side queries of the store: per-domain totals and per-source aggregates over
//! a period, answered by SQL over the (domain, begin) indexes.

use std::collections::BTreeMap;

use rusqlite::params;

use super::store::{Store, StoreError};

/// Totals of a domain over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    pub reports: u64,
    /// Distinct UTC days on which a report's range begins.
    pub days: u64,
    pub receivers: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
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

impl Store {
    pub fn overview(&self, domain: &str, since: i64) -> Result<Overview, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT begin / 86400), COUNT(DISTINCT org), MIN(begin), MAX(end) \
                 FROM reports WHERE domain = ?1 AND begin >= ?2",
                params![domain, since],
                |r| {
                    Ok(Overview {
                        reports: r.get::<_, i64>(0)? as u64,
                        days: r.get::<_, i64>(1)? as u64,
                        receivers: r.get::<_, i64>(2)? as u64,
                        first: r.get(3)?,
                        last: r.get(4)?,
                    })
                },
            )
            .map_err(|e| self.error(e))
    }

    /// Every source of the domain in the period, most messages first.
    pub fn sources(&self, domain: &str, since: i64) -> Result<Vec<SourceStats>, StoreError> {
        let by_ip = self.source_totals(domain, since).map_err(|e| self.error(e))?;
        let mut out: Vec<SourceStats> = by_ip.into_values().collect();
        out.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.ip.cmp(&b.ip)));
        Ok(out)
    }

    /// One pass over the rows (the auth domains are copied onto each row at import).
    fn source_totals(&self, domain: &str, since: i64) -> rusqlite::Result<BTreeMap<String, SourceStats>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT source_ip, dkim_pass_domains, spf_domain, SUM(count), SUM(count * dkim_aligned), \
             SUM(count * spf_aligned), SUM(count * MAX(dkim_aligned, spf_aligned)) \
             FROM rows WHERE domain = ?1 AND begin >= ?2 GROUP BY source_ip, dkim_pass_domains, spf_domain",
        )?;
        let mut rows = stmt.query(params![domain, since])?;
        let mut by_ip: BTreeMap<String, SourceStats> = BTreeMap::new();
        while let Some(r) = rows.next()? {
            let ip: String = r.get(0)?;
            let dkim: String = r.get(1)?;
            let spf: Option<String> = r.get(2)?;
            let n = r.get::<_, i64>(3)? as u64;
            let s = by_ip.entry(ip.clone()).or_insert_with(|| SourceStats {
                ip,
                ..SourceStats::default()
            });
            s.messages += n;
            s.dkim_aligned += r.get::<_, i64>(4)? as u64;
            s.spf_aligned += r.get::<_, i64>(5)? as u64;
            s.dmarc_pass += r.get::<_, i64>(6)? as u64;
            for d in dkim.split(' ').filter(|d| !d.is_empty()) {
                *s.dkim_domains.entry(d.to_string()).or_default() += n;
            }
            if let Some(d) = spf {
                *s.envelope_domains.entry(d).or_default() += n;
            }
        }
        Ok(by_ip)
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
    pub fn days_with_policy(&self, domain: &str, p: &str, since: i64) -> Result<u64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(DISTINCT begin / 86400) FROM reports WHERE domain = ?1 AND p = ?2 AND begin >= ?3",
                params![domain, p, since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }
}

//! Policy files: one TOML file per mail domain, read and validated into a
//! [`ValidPolicy`], the only form the rest of spfd accepts.
//!
//! ```toml
//! domain = "example.com"        # the mail domain
//! zone = "_spf.example.com"     # default "_spf.<domain>"; may be the domain itself
//! ttl = 300
//! [spf]
//! record = "v=spf1 mx include:_spf.google.com ~all"
//! mode = "flatten"              # flatten (default) | macro | passthrough
//! [dmarc]                       # see dmarc.rs
//! [dkim.<selector>]             # see dkim.rs
//! ```

pub mod dkim;
pub mod dmarc;
pub mod size;
pub mod transfer;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, SourceFile};
use crate::names::{self, Rules};
use crate::spf;
use crate::tsig::Keyring;
use crate::txt;
use crate::zonefile;

pub use dkim::DkimRecord;
pub use dmarc::DmarcRecord;

/// The TTL of published records when a policy does not say.
pub const DEFAULT_TTL: u32 = 300;
/// RFC 2181 8: TTLs are at most 2^31 - 1.
const MAX_TTL: i64 = i32::MAX as i64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    domain: Spanned<String>,
    zone: Option<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
    spf: Option<Spanned<RawSpf>>,
    dmarc: Option<Spanned<dmarc::DmarcSection>>,
    dkim: Option<BTreeMap<Spanned<String>, Spanned<dkim::DkimSection>>>,
    transfer: Option<transfer::RawTransfer>,
    zone_file: Option<Spanned<String>>,
    backend: Option<Spanned<String>>,
    /// A `[tsig.NAME]` key of the server config for the transfers from `backend`.
    backend_tsig: Option<Spanned<String>>,
    /// `dnssec = false`: this zone stays unsigned when `[dnssec]` is on.
    dnssec: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpf {
    record: Spanned<String>,
    mode: Option<Spanned<String>>,
}

/// How the SPF record is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfMode {
    /// Expand includes and publish an equivalent record within the lookup limit.
    Flatten,
    /// One macro term; answers synthesised per client address.
    Macro,
    /// Published as written.
    Passthrough,
}

impl SpfMode {
    fn parse(text: &str) -> Option<SpfMode> {
        match text.to_ascii_lowercase().as_str() {
            "flatten" => Some(SpfMode::Flatten),
            "macro" => Some(SpfMode::Macro),
            "passthrough" => Some(SpfMode::Passthrough),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpfMode::Flatten => "flatten",
            SpfMode::Macro => "macro",
            SpfMode::Passthrough => "passthrough",
        }
    }
}

/// The SPF part of a policy. The record is kept as its text only (the parsed form is
/// rebuilt where it is needed: a few times per refresh, not for every zone held).
#[derive(Debug, Clone)]
pub struct SpfPolicy {
    /// The record as text (`v=spf1` and its terms, normalised), computed once: it
    /// identifies the version of the record flattening results were computed for.
    pub text: String,
    /// The mode the owner asked for.
    pub mode: SpfMode,
    /// DNS lookups the record's own terms cost a receiver (RFC 7208 4.6.4).
    lookup_terms: usize,
}

impl SpfPolicy {
    fn new(record: &spf::Record, mode: SpfMode) -> Self {
        SpfPolicy {
            text: record.to_string(),
            mode,
            lookup_terms: record.lookup_terms(),
        }
    }

    /// The parsed record.
    pub fn record(&self) -> spf::Record {
        spf::Record::parse(&self.text).expect("the normalised text of a validated record parses")
    }

    /// The record as written, split between terms: what passthrough mode publishes,
    /// and what flatten mode publishes until its first expansion succeeds.
    pub fn published_strings(&self) -> Vec<String> {
        let record = self.record();
        let mut words = vec!["v=spf1"];
        words.extend(record.terms().iter().map(|t| t.text()));
        txt::split_words(words)
    }
}

/// A policy that passed every check. Built only by [`load`].
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    pub path: PathBuf,
    /// The mail domain (lower case, absolute).
    pub domain: Name,
    /// The zone spfd is authoritative for (lower case, absolute).
    pub zone: Name,
    /// `domain` and `zone` as text (absolute), computed once for lookups by name.
    pub domain_text: String,
    pub zone_text: String,
    /// `zone` as the snapshot's key.
    pub zone_lower: hickory_proto::rr::LowerName,
    pub ttl: u32,
    pub spf: Option<SpfPolicy>,
    pub dmarc: Option<DmarcRecord>,
    pub dkim: Vec<DkimRecord>,
    /// The policy's own `[transfer]` table, narrowing the server's for this zone.
    pub transfer: Option<transfer::PolicyTransfer>,
    /// The zone's other records, from `zone_file` (only when the zone is the domain).
    pub zone_data: Option<std::sync::Arc<crate::zonefile::ZoneData>>,
    /// The primary the zone's other records are transferred from (AXFR), instead of a
    /// zone file (only when the zone is the domain).
    pub backend: Option<std::net::SocketAddr>,
    /// The key the SOA queries and transfers to `backend` are signed with, and its
    /// NOTIFYs must be signed with (`backend_tsig`).
    pub backend_tsig: Option<crate::tsig::TsigKey>,
    /// False when the policy opts out of DNSSEC signing (`dnssec = false`).
    pub dnssec: bool,
}

impl ValidPolicy {
    /// Lookups a receiver spends on the published SPF record itself: its own lookup
    /// terms, plus the owner's `redirect=` to the zone when the zone is not the domain.
    /// Lookups inside the targets of `include` and `redirect` are not counted here.
    pub fn spf_direct_lookups(&self) -> Option<usize> {
        let spf = self.spf.as_ref()?;
        Some(spf.lookup_terms + usize::from(self.zone != self.domain))
    }
}

impl ValidPolicy {
    /// The names this policy publishes in its zone, which a zone file or a backend's
    /// copy of the zone may not hold.
    pub fn managed(&self) -> zonefile::Managed {
        let dkim: Vec<Option<DkimRecord>> = self.dkim.iter().cloned().map(Some).collect();
        let below = published_below(self.dmarc.is_some(), &dkim);
        managed_names(self.spf.as_ref(), &below, &self.zone)
    }
}

fn managed_names(spf: Option<&SpfPolicy>, below: &[String], zone: &Name) -> zonefile::Managed {
    zonefile::Managed {
        spf: spf.is_some(),
        macros: spf.is_some_and(|s| s.mode == SpfMode::Macro),
        names: below
            .iter()
            .filter_map(|p| Name::from_ascii(format!("{p}.{zone}")).ok())
            .collect(),
    }
}

/// A policy and the warnings found while validating it.
#[derive(Debug)]
pub struct Loaded {
    pub policy: ValidPolicy,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates one policy file. On failure, every diagnostic (errors and
/// warnings) is returned.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let src = SourceFile::read(path).map_err(|d| vec![d])?;
    parse(&src)
}

/// A policy read without the server config: a `backend_tsig` names no key.
pub fn parse(src: &SourceFile) -> Result<Loaded, Vec<Diagnostic>> {
    parse_with_files(src, &Keyring::new()).0
}

/// [`parse`] with the server config's TSIG keys, and the other files the policy reads
/// (its zone file and the files that includes), valid or not: the reload service
/// watches them.
pub fn parse_with_files(src: &SourceFile, keys: &Keyring) -> (Result<Loaded, Vec<Diagnostic>>, Vec<PathBuf>) {
    let raw: RawPolicy = match toml::from_str(&src.text) {
        Ok(raw) => raw,
        Err(e) => return (Err(vec![src.toml_error(&e)]), Vec::new()),
    };
    let mut diags = Diagnostics::new(src);
    let mut files = Vec::new();
    let policy = validate(raw, &mut diags, &mut files, keys);
    (finish(policy, diags), files)
}

fn finish(policy: Option<ValidPolicy>, diags: Diagnostics) -> Result<Loaded, Vec<Diagnostic>> {
    match policy {
        Some(policy) if !diags.has_errors() => Ok(Loaded {
            policy,
            warnings: diags.items,
        }),
        _ => Err(diags.items),
    }
}

fn validate(
    raw: RawPolicy,
    diags: &mut Diagnostics,
    files: &mut Vec<PathBuf>,
    keys: &Keyring,
) -> Option<ValidPolicy> {
    let src = diags.source();
    let base_dir = src.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let domain = parse_name(&raw.domain, "domain", Rules::Host, diags);
    let zone = match (&raw.zone, &domain) {
        (Some(zone), _) => parse_name(zone, "zone", Rules::Service, diags),
        (None, Some(domain)) => default_zone(&raw.domain, domain, diags),
        (None, None) => None,
    };
    let ttl = raw
        .ttl
        .as_ref()
        .map_or(Some(DEFAULT_TTL), |t| validate_ttl(t, diags));
    let spf = raw.spf.map(|s| {
        let span = s.span();
        validate_spf(s, diags).filter(|spf| size::check("SPF", &spf.published_strings(), span, diags))
    });
    let domain_text = raw.domain.get_ref().trim_end_matches('.').to_ascii_lowercase();
    let dmarc = raw.dmarc.map(|d| {
        let span = d.span();
        let dmarc = d.into_inner().validate(&domain_text, span.clone(), diags)?;
        size::check("DMARC", &txt::split_plain(&dmarc.txt()), span, diags).then_some(dmarc)
    });
    let dkim: Vec<Option<DkimRecord>> = raw
        .dkim
        .unwrap_or_default()
        .into_iter()
        .map(|(selector, section)| {
            let span = section.span();
            let dkim = section
                .into_inner()
                .validate(&selector, span.clone(), &base_dir, diags)?;
            let what = format!("DKIM {}", dkim.selector);
            size::check(&what, &txt::split_plain(&dkim.txt()), span, diags).then_some(dkim)
        })
        .collect();
    if spf.is_none() && dmarc.is_none() && dkim.is_empty() {
        diags.warning(
            0..0,
            "the policy has no [spf], [dmarc] or [dkim.<selector>] section: the zone serves only SOA and NS",
        );
    }
    let transfer = raw.transfer.map(|t| transfer::validate(t, diags));
    let (domain, zone) = (domain?, zone?);
    let below = published_below(dmarc.is_some(), &dkim);
    check_name_lengths(&raw.domain, [&domain, &zone], &below, diags);
    let backend = raw
        .backend
        .as_ref()
        .and_then(|b| validate_backend(b, raw.zone_file.is_some(), &domain, &zone, diags));
    let backend_tsig = raw
        .backend_tsig
        .as_ref()
        .and_then(|name| backend_key(name, raw.backend.is_some(), keys, diags));
    let zone_data = match &raw.zone_file {
        None => None,
        Some(file) => {
            let managed = managed_names(spf.as_ref().and_then(|s| s.as_ref()), &below, &zone);
            let sites = ZoneSite {
                domain: &domain,
                zone: &zone,
                base_dir: &base_dir,
            };
            Some(load_zone_file(file, &sites, &managed, diags, files)?)
        }
    };
    Some(ValidPolicy {
        path: src.path.clone(),
        domain_text: domain.to_string(),
        zone_text: zone.to_string(),
        zone_lower: hickory_proto::rr::LowerName::new(&zone),
        domain,
        zone,
        ttl: ttl?,
        spf: spf.flatten(),
        dmarc: dmarc.flatten(),
        dkim: dkim.into_iter().collect::<Option<Vec<_>>>()?,
        transfer,
        zone_data,
        backend,
        backend_tsig,
        dnssec: raw.dnssec.unwrap_or(true),
    })
}

/// `backend_tsig = "NAME"`: one of the server config's `[tsig.NAME]` keys, beside a
/// `backend`.
fn backend_key(
    name: &Spanned<String>,
    backend: bool,
    keys: &Keyring,
    diags: &mut Diagnostics,
) -> Option<crate::tsig::TsigKey> {
    let text = name.get_ref();
    if !backend {
        diags.error(
            name.span(),
            "backend_tsig signs the transfers from a backend: add backend = \"ADDRESS:PORT\" or remove backend_tsig",
        );
        return None;
    }
    let key = keys.get(text).cloned();
    if key.is_none() {
        let defined: Vec<&str> = keys.keys().map(String::as_str).collect();
        diags.error(
            name.span(),
            format!(
                "backend_tsig {text:?} names no key: add a [tsig.{text}] table with algorithm and secret_file to the server config (keys defined: {})",
                if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
            ),
        );
    }
    key
}

/// `backend = "192.0.2.10:53"` (the port may be left out): an address, the zone the
/// domain itself, and no zone file beside it.
fn validate_backend(
    raw: &Spanned<String>,
    zone_file: bool,
    domain: &Name,
    zone: &Name,
    diags: &mut Diagnostics,
) -> Option<std::net::SocketAddr> {
    let text = raw.get_ref();
    let addr = text
        .parse::<std::net::SocketAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()));
    let problem = match addr {
        None => Some(format!(
            "backend {text:?} is not an address: write the primary's IP address and port, as \"192.0.2.10:53\""
        )),
        Some(_) if zone_file => {
            Some("backend and zone_file are two sources of the same records: keep one".into())
        }
        Some(_) if zone != domain => Some(format!(
            "backend serves the whole zone of the domain: it needs zone = \"{}\"",
            domain.to_string().trim_end_matches('.')
        )),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        diags.error(raw.span(), problem);
        return None;
    }
    addr
}

/// Where a zone file's records go.
struct ZoneSite<'a> {
    domain: &'a Name,
    zone: &'a Name,
    base_dir: &'a Path,
}

/// Reads `zone_file` (relative to the policy file): the zone must be the domain
/// itself, and no record may sit at a name the policy publishes.
fn load_zone_file(
    file: &Spanned<String>,
    site: &ZoneSite<'_>,
    managed: &zonefile::Managed,
    diags: &mut Diagnostics,
    files: &mut Vec<PathBuf>,
) -> Option<std::sync::Arc<zonefile::ZoneData>> {
    if site.zone != site.domain {
        diags.error(
            file.span(),
            format!(
                "zone_file serves the whole zone of the domain: it needs zone = \"{}\" (the zone is {})",
                site.domain.to_string().trim_end_matches('.'),
                site.zone
            ),
        );
        return None;
    }
    let path = site.base_dir.join(file.get_ref());
    let (loaded, read) = zonefile::load(&path, site.zone);
    files.extend(read);
    match loaded {
        Err(problems) => {
            problems.into_iter().for_each(|d| diags.push(d));
            None
        }
        Ok((data, warnings)) => {
            warnings.into_iter().for_each(|d| diags.push(d));
            let conflicts = zonefile::check::managed(&data, site.zone, managed);
            let failed = !conflicts.is_empty();
            conflicts.into_iter().for_each(|d| diags.push(d));
            (!failed).then(|| std::sync::Arc::new(data))
        }
    }
}

/// A name of the policy file, absolute and lower-cased; an error names the field.
fn parse_name(raw: &Spanned<String>, what: &str, rules: Rules, diags: &mut Diagnostics) -> Option<Name> {
    names::parse_name(raw.get_ref(), rules)
        .map_err(|why| diags.error(raw.span(), format!("{what} {:?} {why}", raw.get_ref())))
        .ok()
}

/// `_spf.<domain>`, when that is short enough to be a name.
fn default_zone(raw: &Spanned<String>, domain: &Name, diags: &mut Diagnostics) -> Option<Name> {
    names::parse_name(&format!("_spf.{domain}"), Rules::Service)
        .map_err(|why| {
            let message = format!(
                "domain {:?}: the default zone _spf.{domain} {why}; write a shorter zone",
                raw.get_ref()
            );
            diags.error(raw.span(), message)
        })
        .ok()
}

/// The labels put before the apex: `_dmarc` and `<selector>._domainkey`.
fn published_below(dmarc: bool, dkim: &[Option<DkimRecord>]) -> Vec<String> {
    let dmarc = dmarc.then(|| "_dmarc".to_string());
    let keys = dkim
        .iter()
        .flatten()
        .map(|k| format!("{}._domainkey", k.selector));
    dmarc.into_iter().chain(keys).collect()
}

/// The names published below the zone (and those the owner adds below the domain)
/// must be names: [`names::prepend`] relies on it when the snapshot is built.
fn check_name_lengths(raw: &Spanned<String>, apexes: [&Name; 2], below: &[String], diags: &mut Diagnostics) {
    for apex in apexes {
        for prefix in below {
            let name = format!("{prefix}.{apex}");
            if let Err(why) = names::check_name(&name, Rules::Service) {
                let message = format!(
                    "domain {:?}: the record name {name} {why}; use a shorter zone or selector",
                    raw.get_ref()
                );
                diags.error(raw.span(), message);
                return;
            }
        }
    }
}

fn validate_ttl(ttl: &Spanned<i64>, diags: &mut Diagnostics) -> Option<u32> {
    let value = *ttl.get_ref();
    if !(1..=MAX_TTL).contains(&value) {
        diags.error(
            ttl.span(),
            format!("ttl must be between 1 and {MAX_TTL} seconds; got {value}"),
        );
        return None;
    }
    if value < 60 {
        diags.warning(
            ttl.span(),
            format!(
                "ttl {value} is very short: receivers will ask again for every message; 300 or more is usual"
            ),
        );
    }
    Some(value as u32)
}

fn validate_spf(raw: Spanned<RawSpf>, diags: &mut Diagnostics) -> Option<SpfPolicy> {
    let raw = raw.into_inner();
    let mode = match &raw.mode {
        None => SpfMode::Flatten,
        Some(m) => match SpfMode::parse(m.get_ref()) {
            Some(mode) => mode,
            None => {
                diags.error(
                    m.span(),
                    format!(
                        "spf mode must be one of flatten, macro, passthrough; got {:?}",
                        m.get_ref()
                    ),
                );
                return None;
            }
        },
    };
    let record = parse_spf_record(&raw.record, diags)?;
    if mode == SpfMode::Macro {
        let span = raw.mode.as_ref().map_or(raw.record.span(), |m| m.span());
        diags.warning(
            span,
            "spf mode \"macro\": a few receivers do not implement SPF macros (RFC 7208 7) and will not \
             find your senders; mode = \"flatten\" works with every receiver while it fits 10 lookups",
        );
    }
    Some(SpfPolicy::new(&record, mode))
}

/// The record, its syntax and target names checked, its warnings pushed; errors
/// point at their byte of the record in the file.
fn parse_spf_record(raw: &Spanned<String>, diags: &mut Diagnostics) -> Option<spf::Record> {
    let mut report = |offset: usize, message: &str, error: bool| {
        let at = value_offset(diags.source(), raw, offset);
        let message = format!("spf record: {message}");
        if error {
            diags.error(at..at, message);
        } else {
            diags.warning(at..at, message);
        }
    };
    let record = spf::Record::parse(raw.get_ref())
        .map_err(|e| report(e.offset, &e.message, true))
        .ok()?;
    let name_errors = record.name_errors();
    for e in &name_errors {
        report(e.offset, &e.message, true);
    }
    if !name_errors.is_empty() {
        return None;
    }
    for w in record.warnings() {
        report(w.offset, &w.message, false);
    }
    Some(record)
}

/// The position in the file of byte `offset` of a string value: exact when the value
/// is written without escapes, else the start of the value.
fn value_offset(src: &SourceFile, value: &Spanned<String>, offset: usize) -> usize {
    let span: Range<usize> = value.span();
    let raw = src.text.get(span.clone()).unwrap_or("");
    let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    let inner = raw.get(quote..raw.len().saturating_sub(quote)).unwrap_or("");
    if inner == value.get_ref() {
        span.start + quote + offset
    } else {
        span.start
    }
}

//! IMAP sources: `imaps://` (TLS with the Mozilla roots) or `imap://` (plain, for
//! loopback and tests). A round logs in, selects the mailbox, searches the messages
//! not yet seen (since `imap_since` when set), asks their sizes, fetches them at most
//! `imap_batch` and [`BATCH_BYTES`] at a time without marking them, stores each batch,
//! and only then flags it `\Seen`; so a failure anywhere re-reads at most one batch
//! (duplicates are ignored). A message larger than `imap_max_message_bytes` is never
//! fetched,
//! and one that could not be read is flagged [`FAILED_KEYWORD`] as well as seen, so
//! neither is met again. A broken connection is opened again, up to [`ATTEMPTS`] times
//! per round (a refused login is not retried until the next round); the next round
//! starts afresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::warn;

use tokio_util::sync::CancellationToken;

use super::decode::Limits;
use super::ingest::{ImportStats, Importer, Outcome, Provenance, Served};
use super::store::Store;
use crate::config::{ReportSource, Reports};

/// Connections opened per round before it gives up until the next one.
pub const ATTEMPTS: usize = 3;
/// How a refused login's error starts: it is not retried within the round.
const LOGIN_REFUSED: &str = "login refused for";
/// Connecting, the TLS handshake and each command may take this long.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of messages fetched in one batch (a larger message comes alone).
pub const BATCH_BYTES: u64 = 32 << 20;
/// The keyword set on a message that could not be read (besides `\Seen`).
pub const FAILED_KEYWORD: &str = "$SpfdFailed";
/// UIDs per size query.
const SIZES_PER_QUERY: usize = 1000;

/// What a round stores: the decoding bounds, the served domains, and shutdown.
#[derive(Debug, Clone)]
pub struct Filter {
    pub limits: Limits,
    pub served: Option<Served>,
    pub stop: CancellationToken,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

type Session = async_imap::Session<Box<dyn Stream>>;

#[derive(Debug, Clone)]
pub struct ImapSettings {
    password_file: Option<PathBuf>,
    batch: usize,
    since: Option<String>,
    ca_file: Option<PathBuf>,
    max_message: u64,
    /// How fetched mail is trusted (its DKIM checked, normally).
    provenance: Provenance,
}

impl ImapSettings {
    pub fn from_config(reports: &Reports) -> Self {
        ImapSettings {
            password_file: reports.password_file.clone(),
            batch: reports.imap_batch,
            since: reports.imap_since.clone(),
            ca_file: reports.imap_ca_file.clone(),
            max_message: reports.imap_max_message_bytes,
            provenance: Provenance::Unchecked,
        }
    }

    pub fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }

    /// One round on one IMAP source; the error says which source and what failed.
    pub async fn poll(
        &self,
        source: &ReportSource,
        state_dir: &Path,
        filter: Filter,
    ) -> Result<ImportStats, String> {
        let ReportSource::Imap { host, mailbox, .. } = source else {
            return Ok(ImportStats::default());
        };
        let name = format!("imap {host}/{mailbox}");
        let password = self.password().map_err(|e| format!("{name}: {e}"))?;
        let mut total = ImportStats::default();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self
                .session_round(source, &password, state_dir, &filter, &mut total)
                .await
            {
                Ok(()) => return Ok(total),
                // A refused login does not get better by asking again (and servers
                // lock out accounts that keep trying).
                Err(e) if e.starts_with(LOGIN_REFUSED) => return Err(format!("{name}: {e}")),
                Err(e) => {
                    warn!("{name}: attempt {attempt} of {ATTEMPTS}: {e}");
                    last = e;
                }
            }
            if filter.stop.is_cancelled() {
                return Ok(total);
            }
        }
        Err(format!("{name}: {last}"))
    }

    fn password(&self) -> Result<String, String> {
        let path = self
            .password_file
            .as_ref()
            .ok_or("no password_file in [reports]")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn session_round(
        &self,
        source: &ReportSource,
        password: &str,
        state_dir: &Path,
        filter: &Filter,
        total: &mut ImportStats,
    ) -> Result<(), String> {
        let mut session = login(source, password, self.ca_file.as_deref()).await?;
        let ReportSource::Imap { mailbox, host, .. } = source else {
            return Ok(());
        };
        timed(session.select(mailbox)).await?;
        let mut query = "UNSEEN".to_string();
        if let Some(since) = self.since.as_deref().and_then(imap_date) {
            query += &format!(" SINCE {since}");
        }
        let mut uids: Vec<u32> = timed(session.uid_search(&query)).await?.into_iter().collect();
        uids.sort_unstable();
        let sizes = sizes(&mut session, &uids).await?;
        let name = |uid: u32| format!("imap://{host}/{mailbox};UID={uid}");
        let (large, fitting): (Vec<_>, Vec<_>) =
            sizes.into_iter().partition(|(_, size)| *size > self.max_message);
        if !large.is_empty() {
            let refused = large.iter().map(|&(uid, size)| (name(uid), size)).collect();
            total.add(refuse_large(state_dir.to_path_buf(), refused, self.max_message).await?);
            flag(
                &mut session,
                &large.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
                true,
            )
            .await?;
        }
        for batch in batches(&fitting, self.batch) {
            if filter.stop.is_cancelled() {
                break;
            }
            let bodies = fetch(&mut session, &set_of(&batch), &name).await?;
            let (stats, outcomes) = store_batch(
                state_dir.to_path_buf(),
                filter.clone(),
                self.provenance.clone(),
                bodies,
            )
            .await?;
            total.add(stats);
            for failed in [false, true] {
                let wanted = if failed { Outcome::Failed } else { Outcome::Read };
                let uids: Vec<u32> = outcomes
                    .iter()
                    .filter(|(_, o)| *o == wanted)
                    .map(|(u, _)| *u)
                    .collect();
                flag(&mut session, &uids, failed).await?;
            }
        }
        let _ = timed(session.logout()).await;
        Ok(())
    }
}

/// `1,5,7`.
fn set_of(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The RFC822.SIZE of each message, asked before any is fetched.
async fn sizes(session: &mut Session, uids: &[u32]) -> Result<Vec<(u32, u64)>, String> {
    let mut out = Vec::with_capacity(uids.len());
    for chunk in uids.chunks(SIZES_PER_QUERY) {
        let stream = timed(session.uid_fetch(set_of(chunk), "(UID RFC822.SIZE)")).await?;
        let fetched: Vec<_> = timed(stream.try_collect::<Vec<_>>()).await?;
        out.extend(
            fetched
                .iter()
                .filter_map(|f| Some((f.uid?, u64::from(f.size.unwrap_or(u32::MAX))))),
        );
    }
    out.sort_unstable();
    Ok(out)
}

/// Groups of at most `count` messages and [`BATCH_BYTES`] (a larger message alone).
fn batches(sizes: &[(u32, u64)], count: usize) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut bytes = 0;
    for &(uid, size) in sizes {
        match out.last_mut() {
            Some(last) if last.len() < count && bytes + size <= BATCH_BYTES => {
                last.push(uid);
                bytes += size;
            }
            _ => {
                out.push(vec![uid]);
                bytes = size;
            }
        }
    }
    out
}

/// Flags messages `\Seen`, and [`FAILED_KEYWORD`] too when `failed`.
async fn flag(session: &mut Session, uids: &[u32], failed: bool) -> Result<(), String> {
    if uids.is_empty() {
        return Ok(());
    }
    let flags = match failed {
        true => format!("+FLAGS.SILENT (\\Seen {FAILED_KEYWORD})"),
        false => "+FLAGS.SILENT (\\Seen)".to_string(),
    };
    let flagged = timed(session.uid_store(set_of(uids), &flags)).await?;
    timed(flagged.try_collect::<Vec<_>>()).await?;
    Ok(())
}

async fn timed<T, E: std::fmt::Display>(f: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

async fn login(source: &ReportSource, password: &str, ca_file: Option<&Path>) -> Result<Session, String> {
    let ReportSource::Imap {
        tls,
        user,
        host,
        port,
        ..
    } = source
    else {
        return Err("not an IMAP source".into());
    };
    let tcp = timed(TcpStream::connect((host.as_str(), *port))).await?;
    let stream: Box<dyn Stream> = if *tls {
        Box::new(tls_connect(host, tcp, ca_file).await?)
    } else {
        Box::new(tcp)
    };
    let mut client = async_imap::Client::new(stream);
    timed(client.read_response())
        .await?
        .ok_or("the server closed the connection before its greeting")?;
    match tokio::time::timeout(TIMEOUT, client.login(user, password)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(format!("{LOGIN_REFUSED} {user}: {e}")),
        Err(_) => Err(format!("login as {user}: no answer within {TIMEOUT:?}")),
    }
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
    ca_file: Option<&Path>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        add_pem_roots(&mut roots, path)?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    timed(connector.connect(name, tcp)).await
}

/// Every certificate of a PEM file as a trust anchor.
fn add_pem_roots(roots: &mut tokio_rustls::rustls::RootCertStore, path: &Path) -> Result<(), String> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(())
}

/// The messages of a UID set, without setting `\Seen` (BODY.PEEK).
async fn fetch(
    session: &mut Session,
    set: &str,
    name: &(dyn Fn(u32) -> String + Sync),
) -> Result<Vec<(u32, String, Vec<u8>)>, String> {
    let stream = timed(session.uid_fetch(set, "(UID BODY.PEEK[])")).await?;
    let fetched: Vec<_> = timed(stream.try_collect::<Vec<_>>()).await?;
    Ok(fetched
        .iter()
        .filter_map(|f| {
            let uid = f.uid?;
            Some((uid, name(uid), f.body()?.to_vec()))
        })
        .collect())
}

/// Stores a batch; what became of each message, by UID.
async fn store_batch(
    state_dir: PathBuf,
    filter: Filter,
    provenance: Provenance,
    bodies: Vec<(u32, String, Vec<u8>)>,
) -> Result<(ImportStats, Vec<(u32, Outcome)>), String> {
    tokio::task::spawn_blocking(move || {
        let mut store = Store::open_in(&state_dir).map_err(|e| e.to_string())?;
        let mut importer = Importer::new(&mut store, filter.limits)
            .with_provenance(provenance)
            .served(filter.served)
            .stop_on(filter.stop);
        importer.set_aside_in(Some(format!("the mailbox, flagged {FAILED_KEYWORD}")));
        let mut outcomes = Vec::with_capacity(bodies.len());
        for (uid, name, body) in &bodies {
            outcomes.push((*uid, importer.add(name, body).map_err(|e| e.to_string())?));
        }
        Ok((importer.finish().map_err(|e| e.to_string())?, outcomes))
    })
    .await
    .map_err(|e| format!("storing a batch panicked: {e}"))?
}

/// One error line (and one stored error) per message too large to fetch.
async fn refuse_large(
    state_dir: PathBuf,
    refused: Vec<(String, u64)>,
    max: u64,
) -> Result<ImportStats, String> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open_in(&state_dir).map_err(|e| e.to_string())?;
        let mut stats = ImportStats::default();
        for (name, size) in refused {
            let why = format!(
                "{size} bytes is more than the {max} fetched of one message; not fetched, \
                 flagged {FAILED_KEYWORD} in the mailbox"
            );
            store
                .record_error(&name, &why, super::ingest::now())
                .map_err(|e| e.to_string())?;
            stats.inputs += 1;
            stats.errors.push(format!("{name}: {why}"));
        }
        Ok(stats)
    })
    .await
    .map_err(|e| format!("storing a batch panicked: {e}"))?
}

/// `2026-01-31` as IMAP writes dates: `31-Jan-2026`.
fn imap_date(day: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, rest) = day.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    let month = MONTHS.get(m.parse::<usize>().ok()?.checked_sub(1)?)?;
    Some(format!("{}-{month}-{y}", d.parse::<u32>().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn imap_dates() {
        assert_eq!(super::imap_date("2026-01-05").as_deref(), Some("5-Jan-2026"));
        assert_eq!(super::imap_date("2026-12-31").as_deref(), Some("31-Dec-2026"));
        assert_eq!(super::imap_date("2026-13-01"), None);
    }
}

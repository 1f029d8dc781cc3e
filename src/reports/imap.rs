//! IMAP sources: `imaps://` (TLS with the Mozilla roots) or `imap://` (plain, for
//! loopback and tests). A round logs in, selects the mailbox, searches the messages
//! not yet seen (since `imap_since` when set), fetches them `imap_batch` at a time
//! without marking them, stores each batch, and only then flags it `\Seen`; so a
//! failure anywhere re-reads at most one batch (duplicates are ignored). A broken
//! connection is opened again, up to [`ATTEMPTS`] times per round (a refused login is
//! not retried until the next round); the next round starts afresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::warn;

use super::decode::Limits;
use super::ingest::{ImportStats, Importer, Provenance};
use super::store::Store;
use crate::config::{ReportSource, Reports};

/// Connections opened per round before it gives up until the next one.
pub const ATTEMPTS: usize = 3;
/// How a refused login's error starts: it is not retried within the round.
const LOGIN_REFUSED: &str = "login refused for";
/// Connecting, the TLS handshake and each command may take this long.
const TIMEOUT: Duration = Duration::from_secs(60);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

type Session = async_imap::Session<Box<dyn Stream>>;

#[derive(Debug, Clone)]
pub struct ImapSettings {
    password_file: Option<PathBuf>,
    batch: usize,
    since: Option<String>,
    ca_file: Option<PathBuf>,
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
        limits: Limits,
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
                .session_round(source, &password, state_dir, limits, &mut total)
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
        limits: Limits,
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
        for chunk in uids.chunks(self.batch) {
            let set = chunk.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let bodies = fetch(&mut session, &set, host, mailbox).await?;
            let stats = store_batch(state_dir.to_path_buf(), limits, self.provenance.clone(), bodies).await?;
            total.add(stats);
            let flagged = timed(session.uid_store(&set, "+FLAGS.SILENT (\\Seen)")).await?;
            timed(flagged.try_collect::<Vec<_>>()).await?;
        }
        let _ = timed(session.logout()).await;
        Ok(())
    }
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
    host: &str,
    mailbox: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let stream = timed(session.uid_fetch(set, "(UID BODY.PEEK[])")).await?;
    let fetched: Vec<_> = timed(stream.try_collect::<Vec<_>>()).await?;
    Ok(fetched
        .iter()
        .filter_map(|f| {
            let body = f.body()?.to_vec();
            let name = format!("imap://{host}/{mailbox};UID={}", f.uid.unwrap_or_default());
            Some((name, body))
        })
        .collect())
}

async fn store_batch(
    state_dir: PathBuf,
    limits: Limits,
    provenance: Provenance,
    bodies: Vec<(String, Vec<u8>)>,
) -> Result<ImportStats, String> {
    tokio::task::spawn_blocking(move || {
        let mut store = Store::open_in(&state_dir).map_err(|e| e.to_string())?;
        let mut importer = Importer::new(&mut store, limits).with_provenance(provenance);
        for (name, body) in &bodies {
            importer.add(name, body).map_err(|e| e.to_string())?;
        }
        importer.finish().map_err(|e| e.to_string())
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

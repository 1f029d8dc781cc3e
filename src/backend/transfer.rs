//! One zone transfer from a backend: its SOA serial over TCP, then AXFR (RFC 5936),
//! both signed with TSIG when the policy names `backend_tsig` (every response must then
//! verify). A transfer counts only when it is complete: it opens and closes with the
//! same SOA, within `[backend]`'s record, byte and time bounds; reading stops at the
//! first bound passed, so a hostile primary costs at most those bounds. The zone is
//! then checked like a zone file; records at names spfd manages are left out (the old
//! primary may still hold the SPF record spfd now publishes).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

use crate::config::BackendConfig;
use crate::diag::Severity;
use crate::tsig::{StreamVerifier, TsigKey, unix_now};
use crate::zonefile::{self, Managed, Place, ZoneData};

/// How long one exchange (connect, SOA, or each AXFR message) may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The SOA timers of a copy, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot reach the backend: {0}")]
    Connect(String),
    #[error("the backend answered {0}")]
    Refused(ResponseCode),
    #[error("the backend's answer is not a DNS response to the request: {0}")]
    Malformed(String),
    #[error("TSIG: {0}")]
    Tsig(String),
    #[error("the transfer has no SOA record")]
    NoSoa,
    #[error("the transfer ended after {0} records without its closing SOA")]
    Incomplete(usize),
    #[error("the closing SOA (serial {closing}) differs from the opening one (serial {opening})")]
    SoaChanged { opening: u32, closing: u32 },
    #[error("the transfer has records after its closing SOA")]
    AfterClosingSoa,
    #[error("the transfer passed [backend] max_records ({0})")]
    TooManyRecords(usize),
    #[error("the transfer passed [backend] max_bytes ({0})")]
    TooManyBytes(u64),
    #[error("the transfer took longer than [backend] transfer_timeout ({0:?})")]
    TooSlow(Duration),
    #[error("the transferred zone is not valid: {0}")]
    Invalid(String),
}

/// One request to the backend over TCP and the responses to it, in order.
struct Exchange {
    stream: TcpStream,
    id: u16,
    /// Verifies the responses when the request was signed.
    verifier: Option<StreamVerifier>,
    /// Bytes received so far, length prefixes included.
    received: u64,
}

impl Exchange {
    async fn open(
        backend: SocketAddr,
        apex: &Name,
        rtype: RecordType,
        key: Option<&TsigKey>,
    ) -> Result<Exchange, TransferError> {
        let mut request = Message::query();
        request.add_query(Query::query(apex.clone(), rtype));
        let verifier = match key {
            Some(key) => {
                request
                    .finalize(&key.signer, unix_now())
                    .map_err(|e| TransferError::Tsig(e.to_string()))?;
                let mac = request
                    .signature()
                    .map(|s| s.data.mac.clone())
                    .unwrap_or_default();
                Some(StreamVerifier::new(key.clone(), mac))
            }
            None => None,
        };
        let bytes = request
            .to_vec()
            .map_err(|e| TransferError::Malformed(e.to_string()))?;
        let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(backend))
            .await
            .map_err(|_| TransferError::Connect("timed out".into()))?
            .map_err(|e| TransferError::Connect(e.to_string()))?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        tokio::time::timeout(TIMEOUT, stream.write_all(&framed))
            .await
            .map_err(|_| TransferError::Connect("timed out".into()))?
            .map_err(|e| TransferError::Connect(e.to_string()))?;
        Ok(Exchange {
            stream,
            id: request.metadata.id,
            verifier,
            received: 0,
        })
    }

    /// The next response, `None` when the backend closed the connection between two;
    /// a response past `max_bytes` is not read.
    async fn next(&mut self, max_bytes: u64) -> Result<Option<Message>, TransferError> {
        let stalled = |_| TransferError::Connect("the backend stopped answering".into());
        let mut len = [0u8; 2];
        match tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut len))
            .await
            .map_err(stalled)?
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(TransferError::Connect(e.to_string())),
        }
        let len = usize::from(u16::from_be_bytes(len));
        self.received += 2 + len as u64;
        if self.received > max_bytes {
            return Err(TransferError::TooManyBytes(max_bytes));
        }
        let mut bytes = vec![0u8; len];
        tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut bytes))
            .await
            .map_err(stalled)?
            .map_err(|e| TransferError::Connect(e.to_string()))?;
        let message = Message::from_vec(&bytes).map_err(|e| TransferError::Malformed(e.to_string()))?;
        if let Some(verifier) = &mut self.verifier {
            verifier
                .verify(&bytes, message.signature().is_some())
                .map_err(TransferError::Tsig)?;
        }
        if message.metadata.id != self.id || message.metadata.message_type != MessageType::Response {
            return Err(TransferError::Malformed("another id, or not a response".into()));
        }
        if message.metadata.response_code != ResponseCode::NoError {
            return Err(TransferError::Refused(message.metadata.response_code));
        }
        Ok(Some(message))
    }
}

/// The serial and timers of the backend's zone.
pub async fn soa(backend: SocketAddr, apex: &Name, key: Option<&TsigKey>) -> Result<Timers, TransferError> {
    let mut exchange = Exchange::open(backend, apex, RecordType::SOA, key).await?;
    let response = exchange
        .next(u64::from(u16::MAX) + 2)
        .await?
        .ok_or_else(|| TransferError::Connect("the backend closed the connection".into()))?;
    response
        .answers
        .iter()
        .filter(|r| r.name == *apex)
        .find_map(timers)
        .ok_or(TransferError::NoSoa)
}

/// The whole zone, complete and within `limits`, checked and without the names spfd
/// manages.
pub async fn axfr(
    backend: SocketAddr,
    apex: &Name,
    key: Option<&TsigKey>,
    managed: &Managed,
    limits: &BackendConfig,
) -> Result<(ZoneData, Timers), TransferError> {
    let records = tokio::time::timeout(limits.transfer_timeout, receive(backend, apex, key, limits))
        .await
        .map_err(|_| TransferError::TooSlow(limits.transfer_timeout))??;
    let timers = records.first().and_then(timers).ok_or(TransferError::NoSoa)?;
    let data = into_zone_data(backend, apex, records, managed)?;
    Ok((data, timers))
}

/// The records of one AXFR stream, the opening SOA first, the closing one left out.
async fn receive(
    backend: SocketAddr,
    apex: &Name,
    key: Option<&TsigKey>,
    limits: &BackendConfig,
) -> Result<Vec<Record>, TransferError> {
    let mut exchange = Exchange::open(backend, apex, RecordType::AXFR, key).await?;
    let mut records: Vec<Record> = Vec::new();
    while let Some(message) = exchange.next(limits.max_bytes).await? {
        let mut answers = message.answers.into_iter();
        while let Some(record) = answers.next() {
            if records.len() >= limits.max_records {
                return Err(TransferError::TooManyRecords(limits.max_records));
            }
            let Some(opening) = records.first() else {
                if record.record_type() != RecordType::SOA || record.name != *apex {
                    return Err(TransferError::NoSoa);
                }
                records.push(record);
                continue;
            };
            if record.record_type() != RecordType::SOA {
                records.push(record);
                continue;
            }
            // RFC 5936 2.2: the SOA that closes the stream is the one that opened it.
            if record.data != opening.data || record.name != opening.name {
                let serial = |r: &Record| timers(r).map_or(0, |t| t.serial);
                return Err(TransferError::SoaChanged {
                    opening: serial(opening),
                    closing: serial(&record),
                });
            }
            // The primary may keep the connection open for another request: only the
            // rest of this message is looked at.
            if answers.next().is_some() {
                return Err(TransferError::AfterClosingSoa);
            }
            if exchange.verifier.as_ref().is_some_and(|v| !v.ends_signed()) {
                return Err(TransferError::Tsig("the last message is not signed".into()));
            }
            return Ok(records);
        }
    }
    Err(TransferError::Incomplete(records.len()))
}
/// The transferred records as zone data: DNSSEC records dropped (spfd signs itself or
/// not at all), the zone checked like a zone file, managed names left out.
fn into_zone_data(
    backend: SocketAddr,
    apex: &Name,
    records: Vec<Record>,
    managed: &Managed,
) -> Result<ZoneData, TransferError> {
    let place = Place {
        file: 0,
        line: 0,
        column: 0,
    };
    let mut data = ZoneData {
        records: Vec::with_capacity(records.len()),
        files: vec![super::source_name(backend)],
        expired: false,
    };
    for record in records {
        if record.record_type().is_dnssec() && record.record_type() != RecordType::DS {
            continue;
        }
        if let Some(why) = zonefile::check::managed_problem(&record, apex, managed) {
            warn!(zone = %apex, backend = %backend, "not served from the backend: {} {}: {why}", record.name, record.record_type());
            continue;
        }
        data.records.push((record, place));
    }
    let problems = zonefile::check::structure(&mut data, apex);
    let errors: Vec<String> = problems
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.message.clone())
        .collect();
    if !errors.is_empty() {
        return Err(TransferError::Invalid(errors.join("; ")));
    }
    Ok(data)
}

fn timers(record: &Record) -> Option<Timers> {
    match &record.data {
        RData::SOA(soa) => Some(Timers {
            serial: soa.serial,
            refresh: soa.refresh.max(1) as u32,
            retry: soa.retry.max(1) as u32,
            expire: soa.expire.max(1) as u32,
        }),
        _ => None,
    }
}

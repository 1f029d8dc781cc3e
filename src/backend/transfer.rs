//! One zone transfer from a backend: its SOA serial over TCP, then AXFR (RFC 5936)
//! with hickory's client, checked like a zone file; records at names spfd manages are
//! left out (the old primary may still hold the SPF record spfd now publishes).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tracing::warn;

use crate::diag::Severity;
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
    #[error("the transfer has no SOA record")]
    NoSoa,
    #[error("the transferred zone is not valid: {0}")]
    Invalid(String),
}

async fn client(backend: SocketAddr) -> Result<Client<TokioRuntimeProvider>, TransferError> {
    let provider = TokioRuntimeProvider::new();
    let (stream, sender) = TcpClientStream::new(backend, None, Some(TIMEOUT), provider);
    let stream = tokio::time::timeout(TIMEOUT, stream)
        .await
        .map_err(|_| TransferError::Connect("timed out".into()))?
        .map_err(|e| TransferError::Connect(e.to_string()))?;
    let (client, background) = Client::<TokioRuntimeProvider>::with_timeout(stream, sender, TIMEOUT);
    tokio::spawn(background);
    Ok(client)
}

/// The serial and timers of the backend's zone.
pub async fn soa(backend: SocketAddr, apex: &Name) -> Result<Timers, TransferError> {
    let mut client = client(backend).await?;
    let response = client
        .query(apex.clone(), DNSClass::IN, RecordType::SOA)
        .await
        .map_err(|e| TransferError::Connect(e.to_string()))?;
    if response.metadata.response_code != ResponseCode::NoError {
        return Err(TransferError::Refused(response.metadata.response_code));
    }
    response
        .answers
        .iter()
        .find_map(timers)
        .ok_or(TransferError::NoSoa)
}

/// The whole zone, checked and without the names spfd manages.
pub async fn axfr(
    backend: SocketAddr,
    apex: &Name,
    managed: &Managed,
) -> Result<(ZoneData, Timers), TransferError> {
    let mut client = client(backend).await?;
    let mut stream = client.zone_transfer(apex.clone(), None);
    let mut records: Vec<Record> = Vec::new();
    while let Some(message) = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .map_err(|_| TransferError::Connect("the transfer stalled".into()))?
    {
        let message = message.map_err(|e| TransferError::Connect(e.to_string()))?;
        if message.metadata.response_code != ResponseCode::NoError {
            return Err(TransferError::Refused(message.metadata.response_code));
        }
        records.extend(message.answers.iter().cloned());
    }
    // RFC 5936 2.2: the SOA opens and closes the stream.
    let timers = records.first().and_then(timers).ok_or(TransferError::NoSoa)?;
    if records.len() > 1 && records.last().is_some_and(|r| r.record_type() == RecordType::SOA) {
        records.pop();
    }
    let data = into_zone_data(backend, apex, records, managed)?;
    Ok((data, timers))
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

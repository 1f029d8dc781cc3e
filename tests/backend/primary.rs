//! A misbehaving primary for example.test: a DNS server over TCP on 127.0.0.1 port 0
//! that answers SOA queries and AXFR with what the test chose: the whole zone, a stream
//! that stops before its closing SOA, one whose closing SOA differs from the opening
//! one, one that never ends (small or large records), or one that trickles a record
//! every half second. It counts what it was asked and the streams the client cut.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::{A, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What an AXFR request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Whole,
    StopsEarly,
    ClosingSoaDiffers,
    /// Messages of 100 A records, without end.
    Endless,
    /// Messages of one TXT record of 60,000 bytes, without end.
    EndlessLarge,
    /// One A record every half second, without end.
    Trickle,
}

/// What the primary was asked, and how many streams ended because the client left.
#[derive(Debug, Default)]
pub struct Seen {
    pub soa: AtomicUsize,
    pub axfr: AtomicUsize,
    pub cut: AtomicUsize,
}

impl Seen {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

pub struct Primary {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    serving: Arc<Mutex<(u32, Stream)>>,
}

impl Primary {
    pub async fn start(serial: u32) -> Primary {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let serving = Arc::new(Mutex::new((serial, Stream::Whole)));
        let (s, v) = (seen.clone(), serving.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, v.clone(), s.clone()));
            }
        });
        Primary { addr, seen, serving }
    }

    /// The serial the SOA answers carry from now on, and the next transfers' stream.
    pub fn serve(&self, serial: u32, stream: Stream) {
        *self.serving.lock().unwrap() = (serial, stream);
    }
}

async fn handle(mut conn: TcpStream, serving: Arc<Mutex<(u32, Stream)>>, seen: Arc<Seen>) {
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut bytes).await.is_err() {
            return;
        }
        let request = Message::from_vec(&bytes).unwrap();
        let (serial, stream) = *serving.lock().unwrap();
        match request.queries[0].query_type() {
            RecordType::SOA => {
                seen.soa.fetch_add(1, Ordering::SeqCst);
                if send(&mut conn, &request, vec![soa(serial)]).await.is_err() {
                    return;
                }
            }
            RecordType::AXFR => {
                seen.axfr.fetch_add(1, Ordering::SeqCst);
                if axfr(&mut conn, &request, serial, stream).await.is_err() {
                    seen.cut.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            _ => return,
        }
    }
}

async fn axfr(conn: &mut TcpStream, request: &Message, serial: u32, stream: Stream) -> std::io::Result<()> {
    let mut opening = vec![soa(serial)];
    opening.extend(body(serial));
    match stream {
        Stream::Whole => {
            opening.push(soa(serial));
            send(conn, request, opening).await
        }
        Stream::StopsEarly => send(conn, request, opening).await,
        Stream::ClosingSoaDiffers => {
            opening.push(soa(serial + 1));
            send(conn, request, opening).await
        }
        Stream::Endless | Stream::EndlessLarge | Stream::Trickle => {
            send(conn, request, opening).await?;
            for i in 0u32.. {
                let records = match stream {
                    Stream::Endless => (0..100)
                        .map(|j| a(&format!("n{i}-{j}"), [192, 0, 2, 7]))
                        .collect(),
                    Stream::EndlessLarge => vec![large(&format!("t{i}"))],
                    _ => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        vec![a(&format!("slow{i}"), [192, 0, 2, 8])]
                    }
                };
                send(conn, request, records).await?;
            }
            Ok(())
        }
    }
}

/// The zone between its SOA records: `www` and `only<serial>` tell the versions apart.
fn body(serial: u32) -> Vec<Record> {
    vec![
        Record::from_rdata(name("@"), 300, RData::NS(NS(name("ns1")))),
        a("ns1", [192, 0, 2, 53]),
        a("www", [192, 0, 2, serial as u8]),
        a(&format!("only{serial}"), [192, 0, 2, 99]),
    ]
}

async fn send(conn: &mut TcpStream, request: &Message, records: Vec<Record>) -> std::io::Result<()> {
    let mut response = Message::response(request.id, OpCode::Query);
    response.metadata.authoritative = true;
    response.add_query(request.queries[0].clone());
    response.add_answers(records);
    let bytes = response.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    conn.write_all(&framed).await
}

fn name(label: &str) -> Name {
    match label {
        "@" => Name::from_ascii("example.test.").unwrap(),
        _ => Name::from_ascii(format!("{label}.example.test.")).unwrap(),
    }
}

/// Retry 1 s: a failed transfer is tried again a second later.
fn soa(serial: u32) -> Record {
    let data = SOA::new(name("ns1"), name("hostmaster"), serial, 3600, 1, 3600, 300);
    Record::from_rdata(name("@"), 300, RData::SOA(data))
}

fn a(label: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(label), 300, RData::A(A(Ipv4Addr::from(ip))))
}

fn large(label: &str) -> Record {
    let text = vec!["x".repeat(250); 240];
    Record::from_rdata(name(label), 300, RData::TXT(TXT::new(text)))
}

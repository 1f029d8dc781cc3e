//! Talking to the primary over TCP: finding the zone that holds a name (an SOA query),
//! the SPF records already at the head, sending an update; and the server's `[push]`
//! service, which pushes every zone a swap changes, retrying until the primary takes
//! it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{Pushed, STATE_FILE, Target, Update, is_spf, owned_records};
use crate::snapshot::Zone;
use crate::tsig::unix_now;
use crate::xfr::notify::ZoneSwap;

/// How long one exchange with the primary may take.
const TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Updates in flight at once (the first swap pushes every zone).
const IN_FLIGHT: usize = 8;

/// One request and its answer over TCP, signed with the target's key when it has one
/// (and the answer checked against it).
pub async fn exchange(target: &Target, mut message: Message) -> Result<Message, String> {
    let mut verifier = match &target.key {
        Some(key) => message
            .finalize(&key.signer, unix_now())
            .map_err(|e| format!("cannot sign: {e}"))?,
        None => None,
    };
    let bytes = message.to_vec().map_err(|e| e.to_string())?;
    let talk = async {
        let mut stream = TcpStream::connect(target.primary).await?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(TIMEOUT, talk).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(format!("{}: {e}", target.primary)),
        Err(_) => return Err(format!("{}: no answer in {TIMEOUT:?}", target.primary)),
    };
    match verifier.as_mut() {
        Some(v) => v
            .verify(&answer)
            .map(|r| r.into_message())
            .map_err(|e| format!("{}: answer fails TSIG: {e}", target.primary)),
        None => Message::from_vec(&answer).map_err(|e| e.to_string()),
    }
}

fn question(name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::new(
        crate::xfr::notify::message_id(),
        MessageType::Query,
        OpCode::Query,
    );
    m.add_query(Query::query(name.clone(), rtype));
    m
}

/// The primary's zone that holds `name`: the owner of the SOA in its answer to an SOA
/// query (the answer at an apex, the authority section below one).
pub async fn find_zone(target: &Target, name: &Name) -> Result<Name, String> {
    let answer = exchange(target, question(name, RecordType::SOA)).await?;
    let code = answer.metadata.response_code;
    if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(format!(
            "{} answered {code} for the SOA of {name}: is it the primary of the zone that holds it?",
            target.primary
        ));
    }
    answer
        .answers
        .iter()
        .chain(&answer.authorities)
        .find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(name))
        .map(|r| r.name.to_lowercase())
        .ok_or_else(|| {
            format!(
                "{} gave no SOA for {name}: it does not serve a zone holding it",
                target.primary
            )
        })
}

/// The SPF records at `head` on the primary.
async fn spf_at(target: &Target, head: &Name) -> Result<Vec<Record>, String> {
    let answer = exchange(target, question(head, RecordType::TXT)).await?;
    Ok(answer
        .answers
        .into_iter()
        .filter(|r| r.name.to_lowercase() == head.to_lowercase() && is_spf(&r.data))
        .collect())
}

/// The update that makes the primary publish what `zone` serves (or, with `zone` None,
/// removes what spfd wrote for `head`).
pub async fn plan(
    target: &Target,
    head: &Name,
    zone: Option<&Zone>,
    previous: &BTreeSet<String>,
) -> Result<Update, String> {
    let add = match zone {
        Some(zone) => owned_records(zone).ok_or_else(|| {
            if zone.wire.zone.macros.is_some() {
                format!("{head} is in SPF macro mode: its per-address answers cannot be written into a zone; use flatten mode")
            } else {
                format!("{head} is served whole by spfd (zone_file or backend): spfd is its primary, there is nothing to push")
            }
        })?,
        None => Vec::new(),
    };
    let primary_zone = find_zone(target, head).await?;
    let old_spf = spf_at(target, head).await?;
    Ok(Update::new(primary_zone, head.clone(), old_spf, add, previous))
}

/// Sends an update; Ok when the primary answered NOERROR.
pub async fn send(target: &Target, update: &Update) -> Result<(), String> {
    let answer = exchange(target, update.message(crate::xfr::notify::message_id())).await?;
    match answer.metadata.response_code {
        ResponseCode::NoError => Ok(()),
        code => Err(format!(
            "{} refused the update of zone {}: {code}",
            target.primary, update.zone
        )),
    }
}

/// The names of the last push, kept in the state directory.
pub struct PushState {
    dir: PathBuf,
    pushed: Mutex<Pushed>,
}

impl PushState {
    pub fn load(dir: PathBuf) -> PushState {
        let pushed = crate::state::load_json(&dir, STATE_FILE)
            .ok()
            .flatten()
            .unwrap_or_default();
        PushState {
            dir,
            pushed: Mutex::new(pushed),
        }
    }

    pub fn previous(&self, head: &Name) -> BTreeSet<String> {
        let pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
        pushed
            .get(&head.to_lowercase().to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers what an accepted update wrote.
    pub fn record(&self, head: &Name, names: BTreeSet<String>) {
        let mut pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
        let key = head.to_lowercase().to_string();
        if names.is_empty() {
            pushed.remove(&key);
        } else {
            pushed.insert(key, names);
        }
        if let Err(e) = crate::state::save_json(&self.dir, STATE_FILE, &*pushed) {
            warn!(dir = %self.dir.display(), "cannot save {STATE_FILE}: {e}");
        }
    }
}

/// Plans, sends and remembers one push.
pub async fn push_zone(
    target: &Target,
    state: &PushState,
    head: &Name,
    zone: Option<&Zone>,
) -> Result<Update, String> {
    let update = plan(target, head, zone, &state.previous(head)).await?;
    send(target, &update).await?;
    state.record(head, update.names());
    Ok(update)
}

/// The `[push]` mode of `spfd serve`: every zone a swap adds, changes or removes is
/// pushed, retried with backoff until the primary takes it; a newer version replaces
/// one still being retried.
pub async fn run(
    target: Arc<Target>,
    state: Arc<PushState>,
    mut swaps: mpsc::UnboundedReceiver<Vec<ZoneSwap>>,
) {
    let mut pending: HashMap<LowerName, AbortHandle> = HashMap::new();
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(batch) = swaps.recv().await {
        pending.retain(|_, task| !task.is_finished());
        for swap in batch {
            if swap.new.as_ref().is_some_and(|z| z.wire.zone.macros.is_some()) {
                warn!(zone = %swap.apex, "not pushed: macro mode answers cannot be written into a zone");
                continue;
            }
            let (target, state, limit) = (target.clone(), state.clone(), limit.clone());
            let apex = swap.apex.clone();
            let task = tokio::spawn(async move {
                let head = Name::from(swap.apex.clone());
                let mut delay = FIRST_RETRY;
                loop {
                    let result = {
                        let _permit = limit.acquire().await;
                        push_zone(&target, &state, &head, swap.new.as_deref()).await
                    };
                    match result {
                        Ok(update) => {
                            info!(zone = %update.zone, head = %head, records = update.add.len(), "pushed");
                            return;
                        }
                        Err(e) => warn!(head = %head, "push failed, retrying in {delay:?}: {e}"),
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY);
                }
            });
            if let Some(old) = pending.insert(apex, task.abort_handle()) {
                old.abort();
            }
        }
    }
    for task in pending.values() {
        task.abort();
    }
}

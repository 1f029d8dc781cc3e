//! The flattening service: keeps every flatten-mode policy's published chain current.
//!
//! It learns the policies in service from the reload service, expands each one through
//! the shared [`Upstream`], packs the result, and hands changed chains to the reload
//! service (the one writer of the snapshot). Each policy is refreshed when the upstream
//! answers it depends on expire, within `[refresh_min, refresh_max]`, jittered. A failed
//! expansion never replaces a published chain.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashSet;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::flatten::{self, LastGood};
use crate::policy::{SpfMode, ValidPolicy};
use crate::published::{Entry, Published, StoredChain};
use crate::upstream::{Source, Upstream};

use super::settings::{Clock, Settings, Status};
use super::status::{BoardCell, BoardWriter, HeldRange, PolicyStatus, State, UpstreamChange};

const LAST_GOOD_FILE: &str = "flatten-memory.json";

struct Scheduled {
    policy: Arc<ValidPolicy>,
    due: Instant,
}

/// Tells the snapshot writer that published results changed.
pub type OnPublish = Box<dyn Fn() + Send>;

pub struct Flattener<S: Source> {
    upstream: Arc<Upstream<S>>,
    published: Arc<Published>,
    last_good: LastGood,
    settings: Settings,
    clock: Clock,
    schedule: BTreeMap<String, Scheduled>,
    status: HashMap<String, Status>,
    /// The addresses of each expanded term (`include:_spf.example.net`) as last seen,
    /// shared by every policy that uses it, so that each upstream change is logged once,
    /// as a diff.
    last_terms: HashMap<String, String>,
    /// The last-good keys each domain's last expansions depended on: an entry is kept
    /// while any domain in service uses it, whatever order policies expand in.
    used: HashMap<String, BTreeSet<String>>,
    /// Called when published results changed (the snapshot writer rebuilds).
    on_publish: OnPublish,
    shutdown: CancellationToken,
    ready: crate::service::Ready,
    /// Every policy's status, for readers outside the service.
    board: Arc<BoardCell>,
    board_writer: BoardWriter,
    /// When each domain's published result last changed (Unix time).
    last_change: HashMap<String, u64>,
    /// Cheap deterministic jitter source.
    jitter_state: u64,
    /// Whether results loaded from the state file were matched against the policies.
    pruned_state: bool,
}

impl<S: Source> Flattener<S> {
    pub fn new(
        upstream: Arc<Upstream<S>>,
        published: Arc<Published>,
        settings: Settings,
        on_publish: OnPublish,
    ) -> Self {
        let last_good = match crate::state::load_json::<LastGood>(&settings.state_dir, LAST_GOOD_FILE) {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                warn!(dir = %settings.state_dir.display(), "cannot read the last good upstream results, starting empty: {e}");
                LastGood::default()
            }
        };
        Flattener {
            upstream,
            published,
            last_good,
            settings,
            clock: Clock::start(),
            schedule: BTreeMap::new(),
            status: HashMap::new(),
            last_terms: HashMap::new(),
            used: HashMap::new(),
            on_publish,
            shutdown: CancellationToken::new(),
            ready: crate::service::Ready::new(),
            board: Arc::new(BoardCell::default()),
            board_writer: BoardWriter::default(),
            last_change: HashMap::new(),
            jitter_state: 0x9e37_79b9_7f4a_7c15,
            pruned_state: false,
        }
    }

    pub fn status(&self, domain: &str) -> Option<&Status> {
        self.status.get(domain)
    }

    /// Runs until the policy channel closes.
    /// Runs until the policy channel closes or [`Self::shutdown_token`] is cancelled;
    /// what changed is saved before it returns. Ready after the first round.
    pub async fn run(mut self, mut policies: watch::Receiver<Vec<Arc<ValidPolicy>>>) {
        use futures_util::FutureExt;
        loop {
            let step = std::panic::AssertUnwindSafe(self.step(&mut policies))
                .catch_unwind()
                .await;
            match step {
                Ok(true) => {}
                Ok(false) => break,
                Err(panic) => {
                    // Per-policy panics are caught deeper down; this is the net for the
                    // loop itself. Go on, without spinning.
                    error!(
                        "internal error in the flattening service: {}; it goes on",
                        crate::os::panic_message(&*panic)
                    );
                    tokio::time::sleep(self.settings.refresh_min).await;
                }
            }
        }
        self.persist();
    }

    /// One turn: follow the policies, expand what is due, wait. False when it is time
    /// to stop.
    async fn step(&mut self, policies: &mut watch::Receiver<Vec<Arc<ValidPolicy>>>) -> bool {
        let current = policies.borrow_and_update().clone();
        self.sync(&current);
        self.refresh_due().await;
        self.ready.set();
        let next = self.schedule.values().map(|s| s.due).min();
        let stop = self.shutdown.clone();
        tokio::select! {
            changed = policies.changed() => changed.is_ok(),
            _ = sleep_until(next) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// Cancelling it ends [`Self::run`] after the policy being expanded.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Ready once the first round of expansions is done.
    pub fn ready(&self) -> crate::service::ReadyWatch {
        self.ready.subscribe()
    }

    /// Sends alerts for status changes (failures, staleness, provider changes, records
    /// near the lookup limit).
    pub fn with_alerts(mut self, alerts: crate::alerts::Alerts) -> Self {
        self.board_writer.alerts = alerts;
        self
    }

    /// Writes its status board into `board` (shared with readers made before it).
    pub fn with_board(mut self, board: Arc<BoardCell>) -> Self {
        self.board = board;
        self
    }

    /// The status board, swapped after every round that changed a status.
    pub fn board(&self) -> Arc<BoardCell> {
        self.board.clone()
    }

    /// Follows the policies in service: new or changed flatten-mode and macro-mode
    /// policies are due now; others leave the schedule. Policies are compared by
    /// pointer (the reloader keeps an unchanged policy's `Arc`), so a swap after one
    /// edit costs a pass over pointers, not a string per policy.
    pub fn sync(&mut self, policies: &[Arc<ValidPolicy>]) {
        let now = Instant::now();
        let expanded = |p: &&Arc<ValidPolicy>| p.spf.as_ref().is_some_and(|s| s.mode != SpfMode::Passthrough);
        let current: FxHashSet<*const ValidPolicy> =
            policies.iter().filter(expanded).map(Arc::as_ptr).collect();
        let scheduled: FxHashSet<*const ValidPolicy> =
            self.schedule.values().map(|s| Arc::as_ptr(&s.policy)).collect();
        for policy in policies.iter().filter(expanded) {
            if scheduled.contains(&Arc::as_ptr(policy)) {
                continue;
            }
            let policy = policy.clone();
            match self.schedule.get_mut(&policy.domain_text) {
                // Another policy in service claims the domain (the snapshot refuses the
                // second claimant): it keeps it.
                Some(s) if current.contains(&Arc::as_ptr(&s.policy)) => {}
                Some(s) if same_source(&s.policy, &policy) => s.policy = policy,
                _ => {
                    let domain = policy.domain_text.clone();
                    self.schedule.insert(domain, Scheduled { policy, due: now });
                }
            }
        }
        let before = self.schedule.len();
        self.schedule
            .retain(|_, s| current.contains(&Arc::as_ptr(&s.policy)));
        if self.used.len() > self.schedule.len() {
            let schedule = &self.schedule;
            self.used.retain(|d, _| schedule.contains_key(d));
        }
        let gone: Vec<String> = self
            .board
            .load()
            .policies
            .keys()
            .filter(|d| !self.schedule.contains_key(*d))
            .cloned()
            .collect();
        for domain in gone {
            self.board_writer.remove(&domain);
            self.last_change.remove(&domain);
        }
        self.board_writer.publish(&self.board);
        // Results of domains no longer served go; so do those in the state file that
        // no policy claims any more (checked once, on the first sync).
        if self.schedule.len() != before || !self.pruned_state {
            let schedule = &self.schedule;
            self.published.retain(|d| schedule.contains_key(d));
            self.pruned_state = true;
        }
    }

    /// Expands every policy that is due; publishes and persists what changed.
    pub async fn refresh_due(&mut self) -> usize {
        let now = Instant::now();
        let due: Vec<Arc<ValidPolicy>> = self
            .schedule
            .values()
            .filter(|s| s.due <= now)
            .map(|s| s.policy.clone())
            .collect();
        let mut changed = 0;
        let started = std::time::Instant::now();
        for policy in &due {
            if self.shutdown.is_cancelled() {
                break;
            }
            let (published, next) = self.refresh_guarded(policy).await;
            changed += usize::from(published);
            if let Some(s) = self.schedule.get_mut(&policy.domain.to_string()) {
                s.due = Instant::now() + next;
            }
        }
        let failed = due
            .iter()
            .filter(|p| matches!(self.status.get(&p.domain.to_string()), Some(Status::Failed(_))))
            .count();
        if changed > 0 || failed > 0 {
            info!(
                refreshed = due.len(),
                changed,
                failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "expansion round"
            );
        }
        self.board_writer.publish(&self.board);
        let remembered = self.last_good.take_changed();
        if changed > 0 || remembered {
            self.persist();
        }
        if changed > 0 {
            (self.on_publish)();
        }
        if !due.is_empty() {
            self.upstream.purge_expired();
        }
        changed
    }

    /// [`Self::refresh_one`], with a panic caught: logged as an internal error on that
    /// policy, whose published records stay, and tried again at `refresh_min`.
    async fn refresh_guarded(&mut self, policy: &ValidPolicy) -> (bool, Duration) {
        use futures_util::FutureExt;
        let outcome = std::panic::AssertUnwindSafe(self.refresh_one(policy))
            .catch_unwind()
            .await;
        match outcome {
            Ok(result) => result,
            Err(panic) => {
                let why = format!("internal error: {}", crate::os::panic_message(&*panic));
                // Whatever the expansion touched before it stopped stays remembered.
                self.last_good.take_touched();
                self.failed(policy.domain_text.clone(), why)
            }
        }
    }

    /// One policy: returns whether its published chain changed, and when to look again.
    async fn refresh_one(&mut self, policy: &ValidPolicy) -> (bool, Duration) {
        let domain = policy.domain.to_string();
        let spf = policy.spf.as_ref().expect("flatten policies have [spf]");
        let opts = flatten::ExpandOptions {
            now: self.clock.unix_now(),
            hold_down: self.settings.hold_down,
            max_stale: self.settings.max_stale,
        };
        let owner_redirect = policy.zone != policy.domain;
        let expanded = flatten::expand(
            &*self.upstream,
            &domain,
            &spf.record(),
            &mut self.last_good,
            &opts,
        )
        .await;
        self.note_used(&domain, expanded.as_ref().ok());
        let expansion = match expanded {
            Ok(expansion) => expansion,
            Err(e) => return self.failed(domain, format!("cannot expand the SPF record: {e}")),
        };
        let chain = flatten::pack(&expansion, &policy.zone.to_ascii(), owner_redirect);
        let lookups = match (&chain, spf.mode) {
            (Ok(chain), SpfMode::Flatten) => chain.lookups,
            (Err(e), SpfMode::Flatten) => {
                return self.failed(domain, format!("cannot publish the flattened SPF record: {e}"));
            }
            // Macro mode (passthrough policies are not expanded).
            _ => {
                let needed = macro_lookups(&expansion, owner_redirect);
                if needed > flatten::MAX_LOOKUPS {
                    return self.failed(
                        domain,
                        format!(
                            "cannot publish macro answers: an answer needs {needed} DNS lookups ({} for \
                             the domain's redirect to the zone, 1 for the zone's redirect to the answer, \
                             {} for terms receivers must evaluate) but receivers allow {} (RFC 7208 4.6.4)",
                            usize::from(owner_redirect),
                            needed - 1 - usize::from(owner_redirect),
                            flatten::MAX_LOOKUPS
                        ),
                    );
                }
                needed
            }
        };
        let stale = self.report(&domain, &expansion);
        let chain = chain.ok().map(|c| StoredChain {
            head: c.head.into(),
            parts: c.parts.into(),
            lookups: c.lookups,
            tag: c.tag,
        });
        let now = self.clock.unix_now();
        let entry = Entry::new(policy.zone_text.clone(), spf.text.clone(), &expansion, chain, now);
        let changed = self.published.set(&domain, entry, now, u64::from(policy.ttl) * 2);
        if changed {
            tracing::debug!(domain = %domain, mode = spf.mode.as_str(), lookups, "SPF expansion published");
        }
        if changed || !self.last_change.contains_key(&domain) {
            self.last_change.insert(domain.clone(), now);
        }
        self.post_status(&domain, spf.mode, Some(lookups), stale.clone(), &expansion, now);
        let status = stale.map_or(Status::Published { lookups }, Status::Stale);
        self.status.insert(domain, status);
        (changed, self.next_refresh(&expansion))
    }

    /// Logs an expansion's warnings and changes; returns the staleness error, if any.
    fn report(&mut self, domain: &str, expansion: &flatten::Expansion) -> Option<String> {
        let mut stale = None;
        for w in &expansion.warnings {
            match w.level {
                flatten::Level::Error => {
                    error!(domain = %domain, "{}: {}", w.key, w.message);
                    stale = Some(format!("{}: {}", w.key, w.message));
                }
                flatten::Level::Warning => warn!(domain = %domain, "{}: {}", w.key, w.message),
            }
        }
        self.log_diff(domain, expansion);
        stale
    }

    /// A failed expansion: the published records stay; try again at `refresh_min`.
    fn failed(&mut self, domain: String, why: String) -> (bool, Duration) {
        error!(domain = %domain, "{why}; the last good record stays published");
        let board = self.board.load();
        let before = board.policies.get(&domain);
        let mode = self
            .schedule
            .get(&domain)
            .and_then(|s| s.policy.spf.as_ref())
            .map_or("flatten", |spf| spf.mode.as_str());
        let status = PolicyStatus {
            domain: domain.clone(),
            mode,
            state: State::Error,
            lookups: before.and_then(|b| b.lookups),
            last_expansion: self.clock.unix_now(),
            last_change: self.last_change.get(&domain).copied(),
            held: before.map(|b| b.held.clone()).unwrap_or_default(),
            error: Some(why.clone()),
            changes: self.changes_for(&domain),
        };
        self.board_writer.set(status);
        self.status.insert(domain, Status::Failed(why));
        (false, self.settings.refresh_min)
    }

    /// This round's status of a policy whose expansion was published.
    fn post_status(
        &mut self,
        domain: &str,
        mode: SpfMode,
        lookups: Option<usize>,
        stale: Option<String>,
        expansion: &flatten::Expansion,
        now: u64,
    ) {
        let held = expansion
            .details
            .iter()
            .flat_map(|d| {
                d.held_until.iter().map(|(until, range)| HeldRange {
                    term: d.key.clone(),
                    range: range.clone(),
                    until: *until,
                })
            })
            .collect();
        let status = PolicyStatus {
            domain: domain.to_string(),
            mode: mode.as_str(),
            state: if stale.is_some() { State::Stale } else { State::Ok },
            lookups,
            last_expansion: now,
            last_change: self.last_change.get(domain).copied(),
            held,
            error: stale,
            changes: self.changes_for(domain),
        };
        self.board_writer.set(status);
    }

    /// The recent upstream changes of the terms `domain` uses.
    fn changes_for(&self, domain: &str) -> Vec<UpstreamChange> {
        let terms = self.used.get(domain).into_iter().flatten().map(String::as_str);
        self.board_writer.changes_of(terms)
    }

    /// The earliest expiry of the upstream answers the expansion used, clamped and
    /// jittered by up to a tenth so that many policies do not refresh in step.
    fn next_refresh(&mut self, expansion: &flatten::Expansion) -> Duration {
        let now = Instant::now();
        let earliest = expansion
            .queried
            .iter()
            .filter_map(|(name, rtype)| self.upstream.expires_at(name, *rtype))
            .min()
            .map_or(self.settings.refresh_max, |e| e.saturating_duration_since(now));
        let base = earliest.clamp(self.settings.refresh_min, self.settings.refresh_max);
        self.jitter_state ^= self.jitter_state << 13;
        self.jitter_state ^= self.jitter_state >> 7;
        self.jitter_state ^= self.jitter_state << 17;
        let tenth = base.as_millis() as u64 / 10;
        base + Duration::from_millis(if tenth == 0 { 0 } else { self.jitter_state % tenth })
    }

    /// Logs, per expanded term, the addresses added and removed since it was last seen.
    fn log_diff(&mut self, domain: &str, expansion: &flatten::Expansion) {
        for d in &expansion.details {
            // What the provider publishes now: a range it dropped shows as removed when
            // it is dropped, not when its hold-down ends.
            let (v4, v6) = (d.v4.difference(&d.held_v4), d.v6.difference(&d.held_v6));
            let nets: Vec<String> = v4
                .to_nets()
                .iter()
                .map(|n| format!("ip4:{n}"))
                .chain(v6.to_nets().iter().map(|n| format!("ip6:{n}")))
                .collect();
            let line = nets.join(" ");
            match self.last_terms.get(&d.key) {
                Some(old) if *old == line => {}
                Some(old) => {
                    let (added, removed) = word_diff(old, &line);
                    info!(term = %d.key, seen_by = domain, added = %added, removed = %removed, "upstream change");
                    self.board_writer.changed(UpstreamChange {
                        at: self.clock.unix_now(),
                        term: d.key.clone(),
                        added: added.split_whitespace().map(String::from).collect(),
                        removed: removed.split_whitespace().map(String::from).collect(),
                    });
                    self.last_terms.insert(d.key.clone(), line);
                }
                None => {
                    self.last_terms.insert(d.key.clone(), line);
                }
            }
        }
    }

    /// Records which last-good entries `domain` depends on: exactly those an expansion
    /// made of fresh answers touched; after a failure or a fall back on last good
    /// results, those as well as every one it used before (the terms it could not
    /// reach still need theirs).
    fn note_used(&mut self, domain: &str, expansion: Option<&flatten::Expansion>) {
        let touched = self.last_good.take_touched();
        let fresh = expansion.is_some_and(|e| !e.details.iter().any(|d| d.from_last_good));
        let used = self.used.entry(domain.to_string()).or_default();
        if fresh {
            *used = touched;
        } else {
            used.extend(touched);
        }
    }

    /// Forgets the last-good entries no domain in service uses, once every domain in
    /// service has been expanded since the start (before that, an entry loaded from
    /// the state file may belong to a domain not yet expanded).
    fn prune_last_good(&mut self) -> usize {
        if !self.schedule.keys().all(|d| self.used.contains_key(d)) {
            return 0;
        }
        let keep: std::collections::HashSet<&str> = self
            .used
            .values()
            .flat_map(|keys| keys.iter().map(String::as_str))
            .collect();
        self.last_good.prune(|key| keep.contains(key))
    }

    fn persist(&mut self) {
        let pruned = self.prune_last_good();
        if pruned > 0 {
            tracing::debug!(pruned, "forgot last good results no policy uses");
        }
        let dir = &self.settings.state_dir;
        if let Err(e) = self.published.save(dir) {
            warn!(dir = %dir.display(), "cannot save published records: {e}");
        }
        if let Err(e) = crate::state::save_json(dir, LAST_GOOD_FILE, &self.last_good) {
            warn!(dir = %dir.display(), "cannot save the last good upstream results: {e}");
        }
    }
}

/// Words of `new` missing from `old`, and of `old` missing from `new`.
fn word_diff(old: &str, new: &str) -> (String, String) {
    let old: std::collections::BTreeSet<&str> = old.split_whitespace().collect();
    let new: std::collections::BTreeSet<&str> = new.split_whitespace().collect();
    let added: Vec<&str> = new.difference(&old).copied().collect();
    let removed: Vec<&str> = old.difference(&new).copied().collect();
    (added.join(" "), removed.join(" "))
}

fn same_source(a: &ValidPolicy, b: &ValidPolicy) -> bool {
    a.zone == b.zone && a.ttl == b.ttl && a.spf.as_ref().map(|s| &s.text) == b.spf.as_ref().map(|s| &s.text)
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

/// What a receiver spends in macro mode on the worst address: the owner's redirect to
/// the zone, the apex's redirect to the per-address answer, and the live terms that
/// answer carries.
fn macro_lookups(expansion: &flatten::Expansion, owner_redirect: bool) -> usize {
    usize::from(owner_redirect)
        + 1
        + crate::snapshot::macro_table::answer_lookups(&expansion.rules, &expansion.terminal)
}

//! The flattening service with controlled time (tokio's paused clock) and an in-memory
//! upstream: TTL-driven refresh shared by many policies, a provider growing and
//! shrinking under hold-down, an outage with last good results growing stale, and a
//! restart during an outage.

#[path = "common/world.rs"]
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use spfd::diag::SourceFile;
use spfd::policy::{self, ValidPolicy};
use spfd::published::Published;
use spfd::refresh::{Flattener, Settings, Status};
use spfd::upstream::Upstream;
use world::{World, WorldSource};

const PROVIDER: &str = "_spf.prov.test";

fn policy(domain: &str, record: &str) -> Arc<ValidPolicy> {
    policy_in(domain, record, "flatten")
}

fn policy_in(domain: &str, record: &str, mode: &str) -> Arc<ValidPolicy> {
    let text = format!("domain = \"{domain}\"\n[spf]\nrecord = \"{record}\"\nmode = \"{mode}\"\n");
    Arc::new(
        policy::parse(&SourceFile::new(format!("/p/{domain}.toml"), text))
            .unwrap()
            .policy,
    )
}

struct Bench {
    published: Arc<Published>,
    flattener: Flattener<WorldSource>,
    /// How often the flattener said published results changed.
    notified: Arc<AtomicUsize>,
    state: tempfile::TempDir,
}

fn settings(state: &std::path::Path) -> Settings {
    Settings {
        refresh_min: Duration::from_secs(30),
        refresh_max: Duration::from_secs(3600),
        max_stale: Duration::from_secs(6 * 3600),
        hold_down: Duration::from_secs(48 * 3600),
        state_dir: state.to_path_buf(),
    }
}

impl Bench {
    fn new(world: Arc<World>, state: tempfile::TempDir) -> Bench {
        let published = Arc::new(Published::load(state.path()).unwrap());
        let upstream = Arc::new(Upstream::new(WorldSource(world.clone())));
        let notified = Arc::new(AtomicUsize::new(0));
        let count = notified.clone();
        let on_publish = Box::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
        });
        let flattener = Flattener::new(upstream, published.clone(), settings(state.path()), on_publish);
        Bench {
            published,
            flattener,
            notified,
            state,
        }
    }

    fn head(&self, domain: &str) -> String {
        self.published
            .get(&format!("{domain}."))
            .and_then(|e| e.head())
            .unwrap_or_default()
    }

    /// Lets `secs` of (paused) time pass, refreshing whatever falls due on the way.
    async fn run_for(&mut self, secs: u64) {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < end {
            tokio::time::advance(Duration::from_secs(10)).await;
            self.flattener.refresh_due().await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn many_policies_share_one_upstream_query_per_ttl() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/24 -all", 300);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let policies: Vec<Arc<ValidPolicy>> = (0..300)
        .map(|i| {
            policy(
                &format!("d{i}.test"),
                &format!("v=spf1 include:{PROVIDER} ip4:203.0.113.{} -all", i % 250),
            )
        })
        .collect();
    bench.flattener.sync(&policies);
    assert_eq!(bench.flattener.refresh_due().await, 300);
    assert_eq!(
        world.asked(PROVIDER, RecordType::TXT),
        1,
        "one query for 300 policies"
    );
    assert!(
        bench.head("d7.test").contains("ip4:192.0.2.0/24"),
        "{}",
        bench.head("d7.test")
    );

    // Within the TTL nothing is asked again; after it, once more for all of them.
    bench.run_for(280).await;
    assert_eq!(world.asked(PROVIDER, RecordType::TXT), 1);
    bench.run_for(120).await;
    assert_eq!(world.asked(PROVIDER, RecordType::TXT), 2);
}

#[tokio::test(start_paused = true)]
async fn a_provider_grows_at_once_and_shrinks_only_after_the_hold_down() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/25 -all", 60);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let p = policy("grow.test", &format!("v=spf1 include:{PROVIDER} -all"));
    bench.flattener.sync(std::slice::from_ref(&p));
    bench.flattener.refresh_due().await;
    assert_eq!(bench.head("grow.test"), "v=spf1 ip4:192.0.2.0/25 -all");

    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/25 ip4:198.51.100.0/24 -all", 60);
    bench.run_for(120).await;
    assert_eq!(
        bench.head("grow.test"),
        "v=spf1 ip4:192.0.2.0/25 ip4:198.51.100.0/24 -all"
    );

    // The provider drops a range: it stays authorised for the hold-down (48 h).
    world.txt(PROVIDER, "v=spf1 ip4:198.51.100.0/24 -all", 60);
    bench.run_for(47 * 3600).await;
    assert!(
        bench.head("grow.test").contains("ip4:192.0.2.0/25"),
        "{}",
        bench.head("grow.test")
    );
    bench.run_for(2 * 3600).await;
    assert_eq!(bench.head("grow.test"), "v=spf1 ip4:198.51.100.0/24 -all");
}

/// Two policies that include the same provider, each with its own other terms: when
/// the provider drops a range, both keep it for the whole hold-down (one policy's
/// expansion never forgets the other's last good results), the hold-down is in the
/// state file, and it survives a restart.
#[tokio::test(start_paused = true)]
async fn a_dropped_range_is_held_down_in_every_policy_that_includes_the_provider() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/25 ip4:198.51.100.0/24 -all", 60);
    world.txt("_spf.other.test", "v=spf1 ip4:203.0.113.0/24 -all", 60);
    world.a("mail.one.test", &["192.0.2.200"], 60);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let one = policy(
        "one.test",
        &format!("v=spf1 a:mail.one.test include:{PROVIDER} -all"),
    );
    let two = policy(
        "two.test",
        &format!("v=spf1 include:_spf.other.test include:{PROVIDER} ~all"),
    );
    // A third policy that does not use the provider, expanded in between.
    let three = policy("three.test", "v=spf1 include:_spf.other.test -all");
    let both = [one.clone(), three, two.clone()];
    bench.flattener.sync(&both);
    assert_eq!(bench.flattener.refresh_due().await, 3);
    assert_eq!(bench.notified.load(Ordering::Relaxed), 1, "one notice per round");

    world.txt(PROVIDER, "v=spf1 ip4:198.51.100.0/24 -all", 60);
    bench.run_for(3600).await;
    for domain in ["one.test", "two.test"] {
        assert!(
            bench.head(domain).contains("192.0.2.0/25"),
            "{domain}: {}",
            bench.head(domain)
        );
    }
    // The status board says what is held, until when, and what the provider changed.
    let board = bench.flattener.board();
    for domain in ["one.test.", "two.test."] {
        let status = board.load().policies[domain].clone();
        assert_eq!(status.state, spfd::refresh::State::Ok);
        assert_eq!(status.held.len(), 1, "{status:?}");
        assert_eq!(status.held[0].range, "192.0.2.0/25");
        let dropped_at = status.changes[0].at;
        assert_eq!(status.held[0].until, dropped_at + 48 * 3600, "{status:?}");
        assert_eq!(status.changes[0].removed, ["ip4:192.0.2.0/25"], "{status:?}");
        assert_eq!(status.changes[0].term, format!("include:{PROVIDER}"));
    }
    assert!(board.load().policies["three.test."].held.is_empty());
    let memory = std::fs::read_to_string(bench.state.path().join("flatten-memory.json")).unwrap();
    assert!(memory.contains("\"held\""), "the hold-down is saved: {memory}");

    // A restart (its clock starts again from the wall clock, an hour before the
    // first run's paused clock ended): still held 20 h on, released after 48 h.
    let state = std::mem::replace(&mut bench.state, tempfile::tempdir().unwrap());
    drop(bench);
    let mut again = Bench::new(world.clone(), state);
    again.flattener.sync(&both);
    again.run_for(20 * 3600).await;
    for domain in ["one.test", "two.test"] {
        assert!(
            again.head(domain).contains("192.0.2.0/25"),
            "{domain}: {}",
            again.head(domain)
        );
    }
    again.run_for(29 * 3600).await;
    for domain in ["one.test", "two.test"] {
        assert!(
            !again.head(domain).contains("192.0.2.0/25"),
            "{domain}: {}",
            again.head(domain)
        );
        assert!(
            again.head(domain).contains("198.51.100.0/24"),
            "{domain}: {}",
            again.head(domain)
        );
    }
}

/// An include that times out in one policy uses its last good result even when another
/// policy, which does not use it, was expanded in between.
#[tokio::test(start_paused = true)]
async fn last_good_results_survive_other_policies_expansions() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/24 -all", 60);
    world.txt("_spf.flaky.test", "v=spf1 ip4:198.51.100.0/24 -all", 60);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let steady = policy("steady.test", &format!("v=spf1 include:{PROVIDER} -all"));
    let flaky = policy("flaky.test", "v=spf1 include:_spf.flaky.test -all");
    bench.flattener.sync(&[steady.clone(), flaky.clone()]);
    bench.flattener.refresh_due().await;
    let good = bench.head("flaky.test");
    assert!(good.contains("198.51.100.0/24"), "{good}");

    world.fail("flaky.test");
    bench.run_for(3600).await;
    assert_eq!(bench.head("flaky.test"), good);
    assert!(matches!(
        bench.flattener.status("flaky.test."),
        Some(Status::Published { .. })
    ));
    // And after a restart during the outage.
    let state = std::mem::replace(&mut bench.state, tempfile::tempdir().unwrap());
    drop(bench);
    let mut again = Bench::new(world.clone(), state);
    again.flattener.sync(&[steady, flaky]);
    again.run_for(600).await;
    assert_eq!(again.head("flaky.test"), good);
    assert!(matches!(
        again.flattener.status("flaky.test."),
        Some(Status::Published { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_the_last_good_result_and_says_when_it_is_stale() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all", 60);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let p = policy("out.test", &format!("v=spf1 include:{PROVIDER} ~all"));
    bench.flattener.sync(std::slice::from_ref(&p));
    bench.flattener.refresh_due().await;
    let good = bench.head("out.test");
    assert!(
        good.contains("ip4:192.0.2.0/24") && good.contains("ip6:2001:db8::/32"),
        "{good}"
    );

    world.fail("prov.test");
    bench.run_for(3600).await;
    assert_eq!(bench.head("out.test"), good, "a timeout never shrinks the record");
    assert!(matches!(
        bench.flattener.status("out.test."),
        Some(Status::Published { .. })
    ));

    // Past max_stale (6 h here) the record is still served, and the status says why.
    bench.run_for(6 * 3600).await;
    assert_eq!(bench.head("out.test"), good);
    match bench.flattener.status("out.test.") {
        Some(Status::Stale(why)) => assert!(why.contains(PROVIDER), "{why}"),
        other => panic!("{other:?}"),
    }

    // A restart during the outage: the same record at once, and after a refresh too.
    let state = std::mem::replace(&mut bench.state, tempfile::tempdir().unwrap());
    drop(bench);
    let mut again = Bench::new(world.clone(), state);
    assert_eq!(
        again.head("out.test"),
        good,
        "served from state before any lookup"
    );
    again.flattener.sync(std::slice::from_ref(&p));
    again.flattener.refresh_due().await;
    assert_eq!(again.head("out.test"), good);

    world.heal();
    again.run_for(120).await;
    assert!(matches!(
        again.flattener.status("out.test."),
        Some(Status::Published { .. })
    ));
}

/// Terms a receiver must evaluate itself (an `exists` before eight includes, inside one
/// include) cost 10 lookups in every per-address answer that carries them: with the
/// owner's redirect and the zone's, 12. Macro mode refuses to publish that (receivers
/// would answer permerror) and keeps the record as written; flatten mode refuses too,
/// without suggesting macro mode, which would not fit either. Eight includes fit.
#[tokio::test(start_paused = true)]
async fn macro_answers_that_would_need_more_than_ten_lookups_are_not_published() {
    let world = Arc::new(World::default());
    let includes = |n: usize| {
        (1..=n)
            .map(|i| format!(" include:s{i}.prov.test"))
            .collect::<String>()
    };
    world.txt(
        "dyn.prov.test",
        &format!("v=spf1 exists:%{{i}}._e.prov.test{} -all", includes(8)),
        300,
    );
    world.txt(
        "small.prov.test",
        &format!("v=spf1 exists:%{{i}}._e.prov.test{} -all", includes(6)),
        300,
    );
    for i in 1..=8 {
        world.txt(
            &format!("s{i}.prov.test"),
            &format!("v=spf1 ip4:198.51.100.{i} -all"),
            300,
        );
    }
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let heavy = policy_in(
        "heavy.test",
        "v=spf1 include:dyn.prov.test ip4:192.0.2.0/24 -all",
        "macro",
    );
    let light = policy_in(
        "light.test",
        "v=spf1 include:small.prov.test ip4:192.0.2.0/24 -all",
        "macro",
    );
    let flat = policy("flat.test", "v=spf1 include:dyn.prov.test ip4:192.0.2.0/24 -all");
    bench
        .flattener
        .sync(&[heavy.clone(), light.clone(), flat.clone()]);
    bench.flattener.refresh_due().await;

    match bench.flattener.status("heavy.test.") {
        Some(Status::Failed(why)) => assert!(why.contains("needs 12 DNS lookups"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Never expanded within the limits: its own terms fit, so the record as written
    // is the placeholder, and per-address names answer neutral, never NXDOMAIN.
    let placeholder = bench.published.answer_for(&heavy, None).unwrap();
    assert_eq!(
        placeholder.head.concat(),
        "v=spf1 include:dyn.prov.test ip4:192.0.2.0/24 -all"
    );
    let table = placeholder.macro_table.as_ref().expect("macro names answered");
    let any = table.answer_for("192.0.2.7".parse().unwrap());
    assert_eq!(table.answer(any).strings.concat(), "v=spf1 ?all");
    match bench.flattener.status("light.test.") {
        Some(Status::Published { lookups }) => assert_eq!(*lookups, 10),
        other => panic!("{other:?}"),
    }
    assert!(
        bench
            .published
            .answer_for(&light, None)
            .is_some_and(|a| a.macro_table.is_some())
    );
    match bench.flattener.status("flat.test.") {
        Some(Status::Failed(why)) => {
            assert!(why.contains("receivers allow 10"), "{why}");
            assert!(!why.contains("use mode = \"macro\""), "{why}");
        }
        other => panic!("{other:?}"),
    }

    // A flatten-mode expansion that fits its chain (1 + 9 lookups, no parts) but not
    // macro answers (1 + 1 + 9): switching the policy to macro mode keeps the chain
    // rather than publish answers receivers reject.
    world.txt(
        "nine.prov.test",
        &format!("v=spf1 exists:%{{i}}._e.prov.test{} -all", includes(7)),
        300,
    );
    let record = "v=spf1 include:nine.prov.test -all";
    let fits = policy("fits.test", record);
    bench.flattener.sync(&[heavy, light, flat, fits.clone()]);
    bench.flattener.refresh_due().await;
    let chain = bench.published.answer_for(&fits, None).expect("the chain fits");
    assert!(chain.macro_table.is_none());
    let switched = bench
        .published
        .answer_for(&policy_in("fits.test", record, "macro"), None)
        .unwrap();
    assert_eq!(switched.head, chain.head, "the chain stays");
    assert!(switched.macro_table.is_none());
}

/// Following the policies in service: a new version with the same SPF source (only its
/// DMARC changed) keeps its result; a changed record is expanded at once; a removed
/// policy's result goes, and so does a result in the state file no policy claims.
#[tokio::test(start_paused = true)]
async fn sync_follows_new_versions_removals_and_leftover_state() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/24 -all", 3600);
    let mut first = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    first
        .flattener
        .sync(&[policy("gone.test", &format!("v=spf1 include:{PROVIDER} -all"))]);
    assert_eq!(first.flattener.refresh_due().await, 1);
    // A restart after gone.test's file was removed.
    let mut bench = Bench::new(world.clone(), first.state);
    assert!(
        bench.published.get("gone.test.").is_some(),
        "loaded from the state file"
    );

    let record = format!("v=spf1 include:{PROVIDER} -all");
    let with_dmarc = |domain: &str, record: &str, p: &str| {
        let text = format!("domain = \"{domain}\"\n[spf]\nrecord = \"{record}\"\n[dmarc]\np = \"{p}\"\n");
        Arc::new(
            policy::parse(&SourceFile::new(format!("/p/{domain}.toml"), text))
                .unwrap()
                .policy,
        )
    };
    let a = with_dmarc("a.test", &record, "none");
    let b = policy("b.test", &record);
    bench.flattener.sync(&[a.clone(), b.clone()]);
    assert!(bench.published.get("gone.test.").is_none(), "no policy claims it");
    assert_eq!(bench.flattener.refresh_due().await, 2);

    // Only a's DMARC changed; b's record changed and is expanded at once.
    let a2 = with_dmarc("a.test", &record, "reject");
    let b2 = policy(
        "b.test",
        &format!("v=spf1 include:{PROVIDER} ip4:203.0.113.9 -all"),
    );
    bench.flattener.sync(&[a2.clone(), b2.clone()]);
    assert_eq!(bench.flattener.refresh_due().await, 1);
    assert!(
        bench.head("b.test").contains("203.0.113.9"),
        "{}",
        bench.head("b.test")
    );

    // b leaves: its result goes; a stays.
    bench.flattener.sync(&[a2]);
    assert!(bench.published.get("b.test.").is_none());
    assert!(bench.published.get("a.test.").is_some());
}

/// A panic while expanding one policy (a bug, simulated in the upstream source) is
/// caught: that policy keeps its published record and reports an internal error, the
/// others are expanded, and the service goes on once the bug is gone.
#[tokio::test(start_paused = true)]
async fn a_panic_while_expanding_is_caught_and_survived() {
    let world = Arc::new(World::default());
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/24 -all", 60);
    world.txt("_spf.buggy.test", "v=spf1 ip4:198.51.100.0/24 -all", 60);
    let mut bench = Bench::new(world.clone(), tempfile::tempdir().unwrap());
    let buggy = policy("buggy.test", "v=spf1 include:_spf.buggy.test -all");
    let fine = policy("fine.test", &format!("v=spf1 include:{PROVIDER} -all"));
    bench.flattener.sync(&[buggy.clone(), fine.clone()]);
    bench.flattener.refresh_due().await;
    let good = bench.head("buggy.test");

    world.panic_on("_spf.buggy.test");
    world.txt(PROVIDER, "v=spf1 ip4:192.0.2.0/25 -all", 60);
    bench.run_for(120).await;
    match bench.flattener.status("buggy.test.") {
        Some(Status::Failed(why)) => assert!(why.contains("internal error: simulated bug"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bench.head("buggy.test"), good, "the last good record stays");
    assert!(
        bench.head("fine.test").contains("192.0.2.0/24"),
        "held down, still refreshed"
    );

    world.heal();
    bench.run_for(120).await;
    assert!(matches!(
        bench.flattener.status("buggy.test."),
        Some(Status::Published { .. })
    ));
}

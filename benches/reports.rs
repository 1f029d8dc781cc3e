//! DMARC report import and summary speed.
//!
//! Criterion measures decoding one gzip report of 100 rows and importing a batch of
//! 50 such reports into a fresh store. Then one backlog run: `SPFD_BACKLOG` reports
//! (default 10,000) of 100 rows each (1,000,000 rows) over 365 days from 20
//! receivers, written as `.xml.gz` files and imported with `spfd reports import`'s
//! code path, printing reports/s and rows/s, then the time of a summary over the
//! whole year. With `--test` (what CI runs) everything runs once, on 100 reports
//! unless `SPFD_BACKLOG` says otherwise.
//!
//! `cargo bench --bench reports`

use std::path::Path;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};

#[path = "../tests/common/corpus.rs"]
mod corpus;

use corpus::{Meta, START, Sender, gzip, report_xml, row_xml};
use spfd::flatten::{Ip4Set, Ip6Set, Rule};
use spfd::reports::analysis::{self, Context};
use spfd::reports::spf_view::{NoDns, SpfView};
use spfd::reports::{Limits, Store, decode, import_paths};
use spfd::spf::Qualifier;

const ROWS: usize = 100;

/// Report `i`: 100 rows from addresses in 192.0.2.0/24 (authorised) and
/// 198.51.100.0/24 (not), one of 20 receivers, on day `i % 365`.
fn report(i: usize) -> Vec<u8> {
    let mut rows = String::new();
    for r in 0..ROWS {
        let ip = if r % 4 == 0 {
            format!("198.51.100.{}", r % 200)
        } else {
            format!("192.0.2.{}", (i + r) % 250)
        };
        let sender = Sender {
            ip: Box::leak(ip.into_boxed_str()),
            base: 1,
            dkim_aligned: r % 3 != 0,
            dkim_other: None,
            spf_aligned: r % 4 != 0,
            envelope: "shop.test",
        };
        rows += &row_xml(&sender, 1 + (r % 7) as u64, "shop.test");
    }
    let org = format!("Receiver {}", i % 20);
    let id = format!("bench-{i}");
    let begin = START + (i % 365) as i64 * 86400;
    let meta = Meta {
        dmarc2: i.is_multiple_of(2),
        org: &org,
        id: &id,
        begin,
        end: begin + 86399,
        domain: "shop.test",
        p: "none",
    };
    gzip(report_xml(&meta, &rows).as_bytes())
}

fn criterion_benches(c: &mut Criterion) {
    let one = report(1);
    let mut group = c.benchmark_group("reports");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("decode one gzip report of 100 rows", |b| {
        b.iter(|| decode(&one, &Limits::default()))
    });
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("{i}.xml.gz")), report(i)).unwrap();
    }
    group.throughput(Throughput::Elements(50 * ROWS as u64));
    group.bench_function("import 50 reports of 100 rows into a new store", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |state| {
                let mut store = Store::open_in(state.path()).unwrap();
                let stats =
                    import_paths(&mut store, &[dir.path().to_path_buf()], Limits::default(), None).unwrap();
                assert_eq!(stats.reports, 50);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// `SPFD_BENCH_INBOX=DIR` keeps the backlog's files there (to feed other tools the
/// same files, e.g. parsedmarc).
fn backlog(count: usize) {
    let inbox = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("SPFD_BENCH_INBOX").map(std::path::PathBuf::from);
    for i in 0..count {
        let bytes = report(i);
        std::fs::write(inbox.path().join(format!("{i:05}.xml.gz")), &bytes).unwrap();
        if let Some(dir) = &keep {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{i:05}.xml.gz")), &bytes).unwrap();
        }
    }
    let state = tempfile::tempdir().unwrap();
    let mut store = Store::open_in(state.path()).unwrap();
    let started = Instant::now();
    let stats = import_paths(&mut store, &[inbox.path().to_path_buf()], Limits::default(), None).unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        (stats.reports, stats.rows),
        (count, count * ROWS),
        "{:?}",
        stats.errors
    );
    println!(
        "backlog: {count} reports, {} rows imported in {took:.2} s: {:.0} reports/s, {:.0} rows/s",
        stats.rows,
        count as f64 / took,
        stats.rows as f64 / took
    );
    summary_time(&store, state.path());
}

fn summary_time(store: &Store, _state: &Path) {
    let authorised = Ip4Set::from_nets(["192.0.2.0/24".parse().unwrap()]);
    let view = SpfView::from_rules(vec![Rule::Static {
        qualifier: Qualifier::Pass,
        v4: authorised,
        v6: Ip6Set::new(),
    }]);
    let ctx = Context {
        dns: &NoDns,
        view: &view,
        server_includes: &[],
        ptr_timeout: std::time::Duration::from_millis(1),
        reverse: false,
        trust: spfd::config::EvidenceTrust::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let summary = runtime
        .block_on(analysis::summarise(store, "shop.test", None, &ctx))
        .unwrap();
    println!(
        "summary over {} days, {} reports, {} messages, {} sources: {:.3} s",
        summary.days,
        summary.reports,
        summary.messages,
        summary.sources.len(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    let fallback = if quick { 100 } else { 10_000 };
    let count = std::env::var("SPFD_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fallback);
    backlog(count);
}

//! The command line: `serve`, `check`, `records`, `flatten`, `explain`, `reports`,
//! `advise`, `push`, `healthcheck` and `dnssec`.

mod check;
pub mod dnssec;
mod explain;
mod healthcheck;
mod push;
pub mod reports;

pub use check::{check, records};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::diag::Diagnostic;
use crate::names::parse_host_name;
use crate::policy::ValidPolicy;
use crate::reload::{ReloadReport, Reloader};
use crate::snapshot::Snapshot;

#[derive(Debug, Parser)]
#[command(
    name = "spfd",
    version,
    about = "Authoritative DNS for SPF, DMARC and DKIM records, from one policy file per mail domain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the zones of every policy; reload on file changes and SIGHUP.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config and every policy; exit non-zero on any error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the records the owner must add at their own DNS provider.
    Records {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this mail domain.
        domain: Option<String>,
    },
    /// Resolve a domain's SPF includes now and print the chain spfd would publish.
    Flatten {
        #[arg(long, short)]
        config: PathBuf,
        domain: String,
    },
    /// Evaluate a domain's SPF record for one client address: the result, and which
    /// term, through which includes, decides it.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        domain: String,
        ip: IpAddr,
        /// The MAIL FROM address (default: postmaster@DOMAIN).
        #[arg(long)]
        sender: Option<String>,
        /// The HELO name (default: DOMAIN).
        #[arg(long)]
        helo: Option<String>,
    },
    /// DMARC aggregate reports: import them, summarise each sender.
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
    /// Whether the reports support the next step (SPF ~all to -all, DMARC p=none to
    /// quarantine to reject), with the evidence and what to fix first.
    Advise {
        #[arg(long, short)]
        config: PathBuf,
        domain: String,
        /// Print the advice as JSON (documented in docs/reports.md).
        #[arg(long)]
        json: bool,
    },
    /// Write the records of every policy (or one mail domain) into the primary named
    /// by `[push]`, with RFC 2136 updates signed with TSIG.
    Push {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this mail domain.
        domain: Option<String>,
        /// Print the updates (nsupdate syntax) instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// DNSSEC: the DS records for the parents, key rollover.
    Dnssec {
        #[command(subcommand)]
        command: dnssec::DnssecCommand,
    },
    /// Ask the admin server's /healthz (for container HEALTHCHECKs): exit 0 on a 200, else 1.
    Healthcheck(healthcheck::HealthcheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Import report files (XML, gzip, zip or e-mail) or directories of them.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Store reports about every domain, not only those of the policy directory.
        #[arg(long)]
        all_domains: bool,
    },
    /// Totals and every source address of a domain, classified.
    Summary {
        #[arg(long, short)]
        config: PathBuf,
        domain: String,
        /// Only reports beginning on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Print the summary as JSON (documented in docs/reports.md).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = load_config(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(crate::server::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let (text, ok) = check(&config);
            print!("{text}");
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Records { config, domain } => {
            let config = load_config(&config)?;
            let (snapshot, report) = load_offline(&config);
            for d in report.errors() {
                eprintln!("{d}");
            }
            print!("{}", records(&config, &snapshot, domain.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Flatten { config, domain } => {
            let config = load_config(&config)?;
            let policy = find_policy(&config, &domain)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let (text, ok) = runtime.block_on(explain::flatten(&config, &policy))?;
            print!("{text}");
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Explain {
            config,
            domain,
            ip,
            sender,
            helo,
        } => {
            let config = load_config(&config)?;
            let policy = find_policy(&config, &domain)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let query = explain::query(&policy, ip, sender.as_deref(), helo.as_deref());
            print!(
                "{}",
                runtime.block_on(explain::explain(&config, &policy, &query))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Reports { command } => run_reports(command),
        Command::Advise { config, domain, json } => {
            let config = load_config(&config)?;
            let (policy, snapshot) = policy_and_snapshot(&config, &domain)?;
            reports::require_spf(&policy)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let advice = runtime
                .block_on(reports::status(&config, &policy, &snapshot, None))?
                .advice;
            if json {
                println!("{}", serde_json::to_string_pretty(&advice)?);
            } else {
                print!("{}", reports::advice_text(&advice));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Push {
            config,
            domain,
            dry_run,
        } => {
            let config = load_config(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let (text, ok) = runtime.block_on(push::push(&config, domain.as_deref(), dry_run))?;
            print!("{text}");
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Healthcheck(args) => Ok(healthcheck::run(&args)),
        Command::Dnssec { command } => run_dnssec(command),
    }
}

fn run_dnssec(command: dnssec::DnssecCommand) -> anyhow::Result<ExitCode> {
    match command {
        dnssec::DnssecCommand::Ds { config, zone } => {
            let config = load_config(&config)?;
            let (snapshot, report) = load_offline(&config);
            for d in report.errors() {
                eprintln!("{d}");
            }
            print!("{}", dnssec::ds(&config, &snapshot, zone.as_deref())?);
        }
        dnssec::DnssecCommand::Rollover {
            config,
            zone,
            finish,
            force,
        } => {
            let config = load_config(&config)?;
            let (snapshot, _) = load_offline(&config);
            let wanted = crate::names::parse_name(&zone, crate::names::Rules::Service)
                .map_err(|e| anyhow::anyhow!("ZONE {zone:?} {e}"))?;
            let ttl = snapshot.zones.values().find(|z| z.apex == wanted).map(|z| z.ttl);
            let Some(ttl) = ttl else {
                bail!(
                    "no zone {wanted} in the valid policies of {}",
                    config.policy_dir.display()
                );
            };
            print!("{}", dnssec::rollover(&config, &zone, ttl, finish, force)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_reports(command: ReportsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportsCommand::Import {
            config,
            paths,
            all_domains,
        } => {
            let config = load_config(&config)?;
            let served = match all_domains {
                true => None,
                false => reports::served_domains(&config),
            };
            let stats = reports::import(&config, &paths, served)?;
            print!("{}", reports::import_text(&stats));
            Ok(if stats.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ReportsCommand::Summary {
            config,
            domain,
            since,
            json,
        } => {
            let config = load_config(&config)?;
            let (policy, snapshot) = policy_and_snapshot(&config, &domain)?;
            reports::require_spf(&policy)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let summary = runtime
                .block_on(reports::status(&config, &policy, &snapshot, since.as_deref()))?
                .summary;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", reports::summary_text(&summary));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The valid policy of a mail domain and the snapshot it was loaded in.
fn policy_and_snapshot(config: &Config, domain: &str) -> anyhow::Result<(Arc<ValidPolicy>, Arc<Snapshot>)> {
    let policy = find_policy(config, domain)?;
    let (snapshot, _) = load_offline(config);
    Ok((policy, snapshot))
}

/// The valid policy of a mail domain, as the server would load it.
fn find_policy(config: &Config, domain: &str) -> anyhow::Result<Arc<ValidPolicy>> {
    let wanted = parse_host_name(domain).map_err(|e| anyhow::anyhow!("DOMAIN {domain:?} {e}"))?;
    let (snapshot, report) = load_offline(config);
    let found = snapshot
        .zones
        .values()
        .find(|z| z.policy.domain == wanted)
        .map(|z| z.policy.clone());
    match found {
        Some(policy) => Ok(policy),
        None => {
            let errors: Vec<String> = report.errors().map(|d| d.to_string()).collect();
            bail!(
                "no valid policy for {wanted} in {}\n{}",
                config.policy_dir.display(),
                errors.join("\n")
            )
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|diags| anyhow::anyhow!(join_diagnostics(&diags)))
}

fn join_diagnostics(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}

/// Loads every policy as the server would, without touching its state.
fn load_offline(config: &Config) -> (Arc<Snapshot>, ReloadReport) {
    let cell = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut reloader = Reloader::offline(config, cell.clone());
    let report = reloader.reload();
    (cell.load_full(), report)
}

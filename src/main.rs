//! The `spfd` binary: parse the command line, set up logging, run the command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = spfd::cli::Cli::parse();
    // hickory-server logs two info lines per query: keep it at warn unless asked.
    let filter = EnvFilter::try_from_env("SPFD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,hickory_net=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match spfd::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spfd: {e:#}");
            ExitCode::from(2)
        }
    }
}

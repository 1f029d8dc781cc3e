//! The `spfd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = spfd::cli::Cli::parse();
    if let Err(e) = spfd::logging::init_from_env() {
        eprintln!("spfd: {e}");
        return ExitCode::from(2);
    }
    match spfd::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spfd: {e:#}");
            ExitCode::from(2)
        }
    }
}

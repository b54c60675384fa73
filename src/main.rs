//! The `quorate` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "quorate",
    version,
    about = "Majority-vote site failure detection and failover"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a fleet file; exits non-zero and names every problem.
    CheckConfig { fleet: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { fleet } => quorate::config::check_config_main(&fleet),
    }
}

//! The `quorate` command line: every subcommand, flag and example lives in the clap
//! definitions below, so `--help`, the shell completions, the man page and the check of the
//! commands shown in the docs (tests/docs_commands.rs) all come from one place. The commands
//! themselves are carried out in `commands`; `render` turns the nodes' JSON into tables.

mod commands;
pub mod render;
mod rest;
pub mod watch;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use commands::main;

/// The environment variable that stands for `--api`.
pub const API_ENV: &str = "QUORATE_API";
/// The environment variable that stands for `--token-file`.
pub const TOKEN_FILE_ENV: &str = "QUORATE_TOKEN_FILE";
/// The environment variable that stands for `--ca-file`.
pub const CA_FILE_ENV: &str = "QUORATE_CA_FILE";
/// The environment variable that stands for `--tls-name`.
pub const TLS_NAME_ENV: &str = "QUORATE_TLS_NAME";

const TOP_EXAMPLES: &str = concat!(
    "\
Examples:
  quorate demo                                   a three-site fleet on loopback
  quorate check-config fleet.toml                validate a fleet file
  quorate status --api 127.0.2.1:7501            sites and peers as one node sees them
  QUORATE_API=127.0.2.1:7501 quorate verdicts    the same node, its verdict history
  quorate completions bash > /etc/bash_completion.d/quorate

Docs: README.md and docs/ in the source tree, ",
    env!("CARGO_PKG_REPOSITORY")
);

/// The command line of `quorate`.
#[derive(Parser, Debug)]
#[command(
    name = "quorate",
    version,
    about = "Decides by majority vote that a site is lost, then fails over exactly once",
    after_help = TOP_EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// How read commands print the node's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The node's JSON answer, pretty-printed, for scripts.
    Json,
}

/// How `quorate run` writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, the event's fields and
    /// the node's span.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run one node of a fleet; its roles come from the fleet file.
    #[command(after_help = "\
Examples:
  quorate run --fleet /etc/quorate/fleet.toml --node b1 --certs /etc/quorate/certs --data /var/lib/quorate
  RUST_LOG=debug quorate run --fleet fleet.toml --node b1 --certs certs/ --data data/b1 --keep-days 30
  quorate run --fleet fleet.toml --node b1 --certs certs/ --data data/b1 --log-format json")]
    Run {
        /// The fleet file, the same on every node.
        #[arg(long, env = "QUORATE_FLEET")]
        fleet: PathBuf,
        /// This node's id in the fleet file.
        #[arg(long, env = "QUORATE_NODE")]
        node: String,
        /// Directory with ca.pem, NODE.pem and NODE.key (see `quorate certs init`).
        #[arg(long, env = "QUORATE_CERTS")]
        certs: PathBuf,
        /// Directory of this node's SQLite store.
        #[arg(long, env = "QUORATE_DATA")]
        data: PathBuf,
        /// Prune verdicts, finished failover runs and fleet versions older than this many
        /// days (at start and hourly); at least 1.
        #[arg(long, default_value_t = 90)]
        keep_days: u64,
        /// Whatever their age, keep the newest this many verdicts and finished runs of each
        /// site, and fleet versions; at least 1. Runs not finished are never pruned.
        #[arg(long, default_value_t = 20)]
        keep_last: usize,
        /// How log lines on stderr look: `text` for people, `json` (one object a line with
        /// stable field names, see docs/install.md) for a log collector.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "QUORATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// A whole three-site fleet on loopback with throw-away certificates and data.
    #[command(after_help = "\
Examples:
  quorate demo
  quorate demo --blackout a --at 5 --exit-after-verdict
  quorate demo --fast --blackout a --at 2 --exit-after-verdict --verbose")]
    Demo {
        /// Use the fast profile (20 ms probes) instead of the DRL timings (100 ms).
        #[arg(long)]
        fast: bool,
        /// Stop every node of this site...
        #[arg(long)]
        blackout: Option<String>,
        /// ...this many seconds after the start.
        #[arg(long, default_value_t = 5.0)]
        at: f64,
        /// Exit 0 once every surviving voter shows the committed DOWN verdict; the last line
        /// of stdout is a JSON summary.
        #[arg(long, requires = "blackout")]
        exit_after_verdict: bool,
        /// Show the nodes' logs too.
        #[arg(long)]
        verbose: bool,
    },
    /// Certificates of the fleet's private CA.
    #[command(after_help = "\
Examples:
  quorate certs init --fleet fleet.toml --ca /secure/quorate-ca --dir certs/
  quorate certs rotate --ca /secure/quorate-ca --dir certs/ --node b1
  quorate certs cut-over --dir /etc/quorate/certs --node b1")]
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Validate a fleet file; exits non-zero and names every problem.
    #[command(after_help = "\
Examples:
  quorate check-config fleet.toml
  quorate check-config config/three-sites.toml && echo valid")]
    CheckConfig {
        /// The fleet file to check.
        fleet: PathBuf,
    },
    /// Deterministic simulation of a fleet under faults.
    ///
    /// Prints a summary; exits 1 and prints the failing seed and its trace when an
    /// invariant breaks.
    #[command(after_help = "\
Examples:
  quorate sim --seeds 10000 --scenario all --liars
  quorate sim --seed 4346 --scenario failover      replay one reported seed
  quorate sim --seeds 200 --scenario loss --loss 0.1 --fast")]
    Sim(crate::sim::SimArgs),
    /// A node's view of every site and every peer.
    ///
    /// Sites: opinion, verdict, epoch, leader, failover mode and newest run. Peers:
    /// reachable, last seen, fleet hash. With --site, that site's evidence and vote rounds.
    #[command(after_help = "\
Examples:
  quorate status --api 127.0.2.1:7501
  quorate status --api 127.0.2.1:7501 --site a
  QUORATE_API=127.0.2.1:7501 quorate status --output json")]
    Status {
        #[command(flatten)]
        read: ReadArgs,
        /// Show this watched site in detail: electorate, every Pinger's evidence, the last
        /// vote rounds.
        #[arg(long)]
        site: Option<String>,
    },
    /// Follow what changes on a node, one line per event, as it happens.
    ///
    /// Verdicts, this node's opinions, vote rounds with every voter's answer, failover runs
    /// and their steps, maintenance and hold-down, peers and fleet-hash mismatches, from the
    /// node's /v1/events. Reconnects by itself and resumes after the last event it printed.
    #[command(after_help = "\
Examples:
  quorate watch --api 127.0.2.1:7501
  QUORATE_API=127.0.2.1:7501 quorate watch --output json
  quorate watch --api 127.0.2.1:7501 --count 1      the current state, then exit")]
    Watch {
        #[command(flatten)]
        node: rest::Endpoint,
        /// One line for people per event (default), or each event's JSON on a line.
        #[arg(long, short, value_enum, default_value_t)]
        output: watch::WatchOutput,
        /// Exit after this many events (the first is the node's current state).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// The verdicts a node knows, newest first.
    #[command(after_help = "\
Examples:
  quorate verdicts --api 127.0.2.1:7501
  quorate verdicts --api 127.0.2.1:7501 --site a --limit 5
  quorate verdicts --api 127.0.2.1:7501 --output json")]
    Verdicts {
        #[command(flatten)]
        read: ReadArgs,
        /// Only this site's verdicts.
        #[arg(long)]
        site: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// The failover runs a node leads or holds a copy of, or one run's step timeline.
    ///
    /// Without ID, one line per run, newest first; with an ID (SITE-EPOCH, e.g. a-3), the
    /// run's steps in order with their start, duration, attempts and output.
    #[command(after_help = "\
Examples:
  quorate failovers --api 127.0.2.1:7501
  quorate failovers a-3 --api 127.0.2.1:7501
  quorate failovers a-3 --api 127.0.2.1:7501 --token-file /etc/quorate/read.token

Step output is shown only with the token of the fleet file's [api] read_token_file or
token_file; without it each step shows its first line and [output redacted: ...].")]
    Failovers {
        /// One run, as SITE-EPOCH (e.g. a-3): its steps in order with their timing.
        id: Option<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// File whose first line is the read (or operator) token; shows each step's output.
        #[arg(long, env = TOKEN_FILE_ENV)]
        token_file: Option<PathBuf>,
    },
    /// Fail a site over now.
    ///
    /// A "manually initiated automated fail-over": the node at --api runs the site's plan as
    /// a run it leads, with a fresh epoch, once the site's electorate granted it the
    /// operator lock.
    #[command(after_help = "\
Examples:
  quorate failover a --reason \"planned move\" --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  QUORATE_API=127.0.2.1:7501 QUORATE_TOKEN_FILE=/etc/quorate/api.token quorate failover a --reason drill --force")]
    Failover {
        /// The site to fail over.
        site: String,
        /// Why; logged by the node and echoed in the answer.
        #[arg(long)]
        reason: String,
        /// Let the run's bgp steps withdraw an anycast prefix that no other live site
        /// announces (the anycast rule refuses that otherwise).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Run the site's whole plan as a dry run and print the report.
    ///
    /// Prechecks, steps and post steps run with QUORATE_DRY_RUN=1; nothing is journaled.
    #[command(after_help = "\
Examples:
  quorate drill a --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  quorate drill a --api 127.0.2.1:7501 --token-file /etc/quorate/api.token --output json")]
    Drill {
        /// The site whose plan is rehearsed.
        site: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Start or end a maintenance window of a site.
    ///
    /// No automatic failover of the site starts while it lasts, fleet-wide (verdicts are
    /// still committed and shown).
    #[command(after_help = "\
Examples:
  quorate maintenance a --for 1h --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  quorate maintenance a --until 2030-01-31T22:00:00Z --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  quorate maintenance a --end --api 127.0.2.1:7501 --token-file /etc/quorate/api.token")]
    Maintenance {
        /// The site under maintenance.
        site: String,
        /// How long, e.g. 1h, 30m, 2h30m.
        #[arg(long = "for", conflicts_with_all = ["until", "end"])]
        duration: Option<String>,
        /// Until this RFC 3339 UTC time (formatted as 2030-01-31T22:00:00Z), at most 90 days
        /// ahead.
        #[arg(long, conflicts_with = "end")]
        until: Option<String>,
        /// End the window now.
        #[arg(long)]
        end: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Raise, clear or list alarms of sites (docs/alarms.md).
    ///
    /// An alarm is evidence that a site may soon be lost (fire, power); what it does is the
    /// watch's on_alarm: notify, prestage or failover.
    #[command(after_help = "\
Examples:
  quorate alarm raise a --source fire-a --severity critical --reason \"smoke in hall 2\" --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  quorate alarm clear a --source fire-a --api 127.0.2.1:7501 --token-file /etc/quorate/api.token
  quorate alarm list --api 127.0.2.1:7501")]
    Alarm {
        #[command(subcommand)]
        cmd: AlarmCmd,
    },
    /// Return to the primary once its verdict is UP again.
    ///
    /// Runs the compensation of every step of the plan that has one, newest step first.
    #[command(after_help = "\
Examples:
  quorate failback a --api 127.0.2.1:7501 --token-file /etc/quorate/api.token")]
    Failback {
        /// The site to return to.
        site: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Print a completion script for a shell to stdout.
    #[command(after_help = "\
Examples:
  quorate completions bash > /etc/bash_completion.d/quorate
  quorate completions zsh > \"${fpath[1]}/_quorate\"
  quorate completions fish > ~/.config/fish/completions/quorate.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "\
Examples:
  quorate man | man -l -
  quorate man --dir /usr/local/share/man/man1")]
    Man {
        /// Write quorate.1 and a page per subcommand (quorate-status.1, ...) here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Where a read-only REST call goes and how its answer is printed.
#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub node: rest::Endpoint,
    /// Print a table (default) or the node's JSON answer.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

/// Where a mutating REST call goes, the bearer token it carries and how its answer is
/// printed.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub node: rest::Endpoint,
    /// File whose first line is the token of the fleet file's [api] token_file.
    #[arg(long, env = TOKEN_FILE_ENV)]
    pub token_file: PathBuf,
    /// Print a table (default) or the node's JSON answer.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum AlarmCmd {
    /// Raise an alarm of a site (the same source again restamps it).
    #[command(after_help = "\
Examples:
  quorate alarm raise a --source fire-a --severity critical --reason \"smoke in hall 2\" --api 127.0.2.1:7501 --token-file /etc/quorate/api.token")]
    Raise {
        /// The site the alarm is about.
        site: String,
        /// Who raises it: letters, digits, '-', '_', '.'.
        #[arg(long)]
        source: String,
        /// How grave it is (shown and notified; the watch's on_alarm decides what it does).
        #[arg(long, value_enum, default_value_t = AlarmSeverityArg::Critical)]
        severity: AlarmSeverityArg,
        /// Why, in words.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Clear the alarm of a site from one source.
    #[command(after_help = "\
Examples:
  quorate alarm clear a --source fire-a --api 127.0.2.1:7501 --token-file /etc/quorate/api.token")]
    Clear {
        /// The site the alarm is about.
        site: String,
        /// The source whose alarm is cleared.
        #[arg(long)]
        source: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// List the alarm calls a node knows, raised and cleared.
    #[command(after_help = "\
Examples:
  quorate alarm list --api 127.0.2.1:7501
  quorate alarm list --api 127.0.2.1:7501 --output json")]
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// An alarm's severity on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AlarmSeverityArg {
    /// Worth knowing.
    Warning,
    /// The site may soon be lost.
    Critical,
}

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Create the fleet CA and one certificate per node of the fleet file.
    #[command(after_help = "\
Examples:
  quorate certs init --fleet fleet.toml --ca /secure/quorate-ca --dir certs/
  quorate certs init --fleet fleet.toml --ca /secure/quorate-ca --dir certs/ --days 90 --force")]
    Init {
        /// The fleet file whose nodes get a certificate.
        #[arg(long)]
        fleet: PathBuf,
        /// Where the node certificates, their keys and a copy of ca.pem go.
        #[arg(long)]
        dir: PathBuf,
        /// Where the CA (ca.pem, ca.key) goes; default: --dir. A node refuses to start with
        /// ca.key in its certificate directory, so give a separate directory or move ca.key.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Lifetime of the node certificates.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Replace an existing CA (every node then needs its new certificate).
        #[arg(long)]
        force: bool,
    },
    /// Issue (or re-issue) one node's certificate with the existing CA.
    ///
    /// Replaces its current pair at once; on a running fleet prefer `rotate` and `cut-over`.
    #[command(after_help = "\
Examples:
  quorate certs issue --ca /secure/quorate-ca --dir certs/ --node d1")]
    Issue(NodeCertArgs),
    /// Stage a new key and certificate for one node beside its current pair.
    ///
    /// Writes NODE.next.pem and NODE.next.key; the current pair stays in use. Then run
    /// `cut-over` on the node's machine.
    #[command(after_help = "\
Examples:
  quorate certs rotate --ca /secure/quorate-ca --dir certs/ --node b1 --days 365")]
    Rotate(NodeCertArgs),
    /// Make the staged pair of `rotate` the node's own.
    ///
    /// Checks it as peers will first; restart the node to present it.
    #[command(after_help = "\
Examples:
  quorate certs cut-over --dir /etc/quorate/certs --node b1")]
    CutOver {
        /// The node's certificate directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node's name in the fleet file.
        #[arg(long)]
        node: String,
    },
}

/// One node's certificate, issued by the CA.
#[derive(Args, Debug)]
pub struct NodeCertArgs {
    /// The node's certificate directory: its certificate, key and a copy of ca.pem.
    #[arg(long)]
    pub dir: PathBuf,
    /// The node's name in the fleet file.
    #[arg(long)]
    pub node: String,
    /// Where ca.pem and ca.key are; default: --dir.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// How many days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u64,
}

impl NodeCertArgs {
    fn ca_dir(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| self.dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every argument of every command, nested ones included, says what it is for, and every
    /// command that runs something shows examples.
    #[test]
    fn every_argument_is_described_and_every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no about"));
            }
            let examples = cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Examples:"));
            if !examples && cmd.get_name() != "help" {
                missing.push(format!("{path}: no examples in after_help"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path}: argument {id} has no help"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        // The top level has `about` from the attribute; its own name needs no examples check
        // beyond the one above.
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn api_and_token_file_come_from_the_environment_when_not_given() {
        let cmd = Cli::command();
        let status = cmd.find_subcommand("status").expect("status");
        let api = status
            .get_arguments()
            .find(|a| a.get_id() == "api")
            .expect("--api");
        assert_eq!(api.get_env(), Some(std::ffi::OsStr::new(API_ENV)));
        let failover = cmd.find_subcommand("failover").expect("failover");
        let token = failover
            .get_arguments()
            .find(|a| a.get_id() == "token_file")
            .expect("--token-file");
        assert_eq!(token.get_env(), Some(std::ffi::OsStr::new(TOKEN_FILE_ENV)));
    }
}

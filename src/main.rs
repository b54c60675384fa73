//! The `quorate` command line.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use quorate::config::Fleet;
use quorate::core::types::{NodeId, SiteId};
use quorate::node::{self, NodeSpec};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "quorate",
    version,
    about = "Decides by majority vote that a site is lost, then fails over exactly once"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node of a fleet; its roles come from the fleet file.
    Run {
        #[arg(long)]
        fleet: PathBuf,
        #[arg(long)]
        node: String,
        /// Directory with ca.pem, NODE.pem and NODE.key (see `quorate certs init`).
        #[arg(long)]
        certs: PathBuf,
        /// Directory of this node's SQLite store.
        #[arg(long)]
        data: PathBuf,
        /// Prune verdicts, finished failover runs and fleet versions older than this many
        /// days (at start and hourly); at least 1.
        #[arg(long, default_value_t = 90)]
        keep_days: u64,
        /// Whatever their age, keep the newest this many verdicts and finished runs of each
        /// site, and fleet versions; at least 1. Runs not finished are never pruned.
        #[arg(long, default_value_t = 20)]
        keep_last: usize,
    },
    /// A whole three-site fleet on loopback with throw-away certificates and data.
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
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Validate a fleet file; exits non-zero and names every problem.
    CheckConfig { fleet: PathBuf },
    /// Deterministic simulation of a fleet under faults; prints a summary, exits 1 and
    /// prints the failing seed and its trace when an invariant breaks.
    Sim {
        /// Number of seeds to run (0..N).
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Run only this seed (reproduces a reported failure exactly).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 3)]
        sites: usize,
        #[arg(long, default_value_t = 2)]
        voters_per_site: usize,
        #[arg(long, default_value_t = 3)]
        indicators_per_site: usize,
        /// Datagram loss probability (0..1).
        #[arg(long)]
        loss: Option<f64>,
        /// blackout, wan-cut, loss, crash-restart, flap, mixed, failover or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Use the fast profile (20 ms probes) instead of the DRL timings (100 ms).
        #[arg(long)]
        fast: bool,
        /// Report the known core defects the checker recognises as violations too.
        #[arg(long)]
        strict: bool,
        /// A lying indicator-only node sends forged verdicts, maintenance calls and run
        /// messages in the failover scenario (the cores do not refuse them all yet).
        #[arg(long)]
        liars: bool,
    },
    /// Print a node's REST status (or one site's evidence) as JSON.
    Status {
        /// The node's REST address, e.g. 127.0.2.1:7501.
        #[arg(long)]
        api: SocketAddr,
        #[arg(long)]
        site: Option<String>,
    },
    /// Fail a site over now ("manually initiated automated fail-over"): the node at --api
    /// runs the site's plan as a run it leads, with a fresh epoch.
    Failover {
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
    /// Run the site's whole plan as a dry run (QUORATE_DRY_RUN=1) and print the report.
    Drill {
        site: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Start or end a maintenance window: no automatic failover of the site starts on the
    /// node at --api while it lasts (verdicts are still committed and shown).
    Maintenance {
        site: String,
        /// How long, e.g. 1h, 30m, 2h30m.
        #[arg(long = "for", conflicts_with_all = ["until", "end"])]
        duration: Option<String>,
        /// Until this RFC 3339 UTC time, e.g. 2030-01-31T22:00:00Z.
        #[arg(long, conflicts_with = "end")]
        until: Option<String>,
        /// End the window now.
        #[arg(long)]
        end: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Return to the primary once its verdict is UP again: runs the compensation of every
    /// step of the plan that has one, newest step first.
    Failback {
        site: String,
        #[command(flatten)]
        op: OperatorArgs,
    },
}

/// Where a mutating REST call goes and the bearer token it carries.
#[derive(clap::Args)]
struct OperatorArgs {
    /// The node's REST address, e.g. 127.0.2.1:7501.
    #[arg(long)]
    api: SocketAddr,
    /// File whose first line is the token of the fleet file's [api] token_file.
    #[arg(long)]
    token_file: PathBuf,
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create the fleet CA and one certificate per node of the fleet file.
    Init {
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
    /// Issue (or re-issue) one node's certificate with the existing CA, replacing its
    /// current pair at once (on a running fleet prefer `rotate` and `cut-over`).
    Issue(NodeCertArgs),
    /// Stage a new key and certificate for one node (NODE.next.pem, NODE.next.key) beside
    /// its current pair, which stays in use; then run `cut-over` on the node's machine.
    Rotate(NodeCertArgs),
    /// Make the staged pair of `rotate` the node's own after checking it as peers will;
    /// restart the node to present it.
    CutOver {
        /// The node's certificate directory.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
    },
}

/// One node's certificate, issued by the CA.
#[derive(clap::Args)]
struct NodeCertArgs {
    /// The node's certificate directory: its certificate, key and a copy of ca.pem.
    #[arg(long)]
    dir: PathBuf,
    /// The node's name in the fleet file.
    #[arg(long)]
    node: String,
    /// Where ca.pem and ca.key are; default: --dir.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// How many days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u64,
}

impl NodeCertArgs {
    fn ca_dir(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| self.dir.clone())
    }
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::CheckConfig { fleet } => return quorate::config::check_config_main(&fleet),
        Cmd::Certs { cmd } => certs(cmd),
        Cmd::Run {
            fleet,
            node,
            certs,
            data,
            keep_days,
            keep_last,
        } => {
            init_logs("info,quinn=warn,rustls=warn");
            let retention = match quorate::store::Retention::days(keep_days, keep_last) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: --keep-days/--keep-last: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime().and_then(|rt| {
                let result = rt.block_on(run(fleet, node, certs, data, retention));
                // A node whose driver died must exit (non-zero) even if a step's process or a
                // blocking write is still under way.
                rt.shutdown_timeout(std::time::Duration::from_secs(5));
                result
            })
        }
        Cmd::Demo {
            fast,
            blackout,
            at,
            exit_after_verdict,
            verbose,
        } => {
            init_logs(if verbose {
                "info,quinn=warn,rustls=warn"
            } else {
                "error"
            });
            let opts = quorate::demo::DemoOptions {
                fast,
                blackout: blackout.map(SiteId),
                at: Duration::from_secs_f64(at.max(0.0)),
                exit_after_verdict,
                verdict_timeout: Duration::from_secs(30),
            };
            runtime().and_then(|rt| {
                rt.block_on(quorate::demo::run(opts))
                    .map_err(anyhow::Error::from)
            })
        }
        Cmd::Status { api, site } => status(api, site),
        Cmd::Failover {
            site,
            reason,
            force,
            op,
        } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/failovers".to_string(),
            Some(serde_json::json!({ "site": site, "reason": reason, "force": force })),
        ),
        Cmd::Drill { site, op } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/drills".to_string(),
            Some(serde_json::json!({ "site": site })),
        ),
        Cmd::Failback { site, op } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/failbacks".to_string(),
            Some(serde_json::json!({ "site": site })),
        ),
        Cmd::Maintenance {
            site,
            duration,
            until,
            end,
            op,
        } => maintenance(site, duration, until, end, &op),
        Cmd::Sim {
            seeds,
            seed,
            sites,
            voters_per_site,
            indicators_per_site,
            loss,
            scenario,
            fast,
            strict,
            liars,
        } => {
            let args = quorate::sim::SimArgs {
                seeds,
                seed,
                sites,
                voters_per_site,
                indicators_per_site,
                loss,
                scenario,
                fast,
                strict,
                liars,
            };
            match quorate::sim::cli(&args) {
                Ok(true) => return ExitCode::SUCCESS,
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn certs(cmd: CertsCmd) -> anyhow::Result<()> {
    use quorate::net::certs;
    match cmd {
        CertsCmd::Init {
            fleet,
            dir,
            ca,
            days,
            force,
        } => {
            let f = Fleet::load(&fleet)?;
            let ids: Vec<NodeId> = f.nodes.iter().map(|n| n.id.clone()).collect();
            let ca = ca.unwrap_or_else(|| dir.clone());
            certs::init_in(&ca, &dir, &ids, force, certs::lifetime_days(days)?)?;
            println!(
                "fleet CA written to {}; {} node certificates valid {days} days written to {}",
                ca.display(),
                ids.len(),
                dir.display()
            );
            println!("copy ca.pem, NODE.pem and NODE.key to each node (keys stay mode 600)");
            println!(
                "keep {} offline: a node refuses to start with it in its directory",
                certs::ca_key_path(&ca).display()
            );
        }
        CertsCmd::Issue(args) => {
            let NodeCertArgs {
                dir, node, days, ..
            } = &args;
            let id = NodeId(node.clone());
            certs::issue_in(&args.ca_dir(), dir, &id, certs::lifetime_days(*days)?)?;
            println!(
                "certificate for {node}, valid {days} days, written to {}",
                dir.display()
            );
        }
        CertsCmd::Rotate(args) => {
            let NodeCertArgs {
                dir, node, days, ..
            } = &args;
            let id = NodeId(node.clone());
            let staged =
                certs::stage_rotation(&args.ca_dir(), dir, &id, certs::lifetime_days(*days)?)?;
            println!(
                "staged {} and {} (valid {days} days); {node} still uses its current pair",
                staged.cert.display(),
                staged.key.display()
            );
            println!(
                "next, where {node} runs: quorate certs cut-over --dir DIR --node {node}, then restart it"
            );
        }
        CertsCmd::CutOver { dir, node } => {
            certs::cut_over(&dir, &NodeId(node.clone()))?;
            println!(
                "{node}'s staged certificate is now current in {}; restart {node} to present it",
                dir.display()
            );
        }
    }
    Ok(())
}

async fn run(
    fleet_path: PathBuf,
    node: String,
    certs: PathBuf,
    data: PathBuf,
    retention: quorate::store::Retention,
) -> anyhow::Result<()> {
    let fleet = Fleet::load(&fleet_path)?;
    for w in fleet.warnings() {
        tracing::warn!("{w}");
    }
    if let Some(note) = fleet.api.note() {
        tracing::warn!("{note}");
    }
    let id = NodeId(node);
    if fleet.node(&id).is_none() {
        let known: Vec<String> = fleet.nodes.iter().map(|n| n.id.to_string()).collect();
        bail!(
            "node {id} is not in {} (nodes: {})",
            fleet_path.display(),
            known.join(", ")
        );
    }
    let spec = NodeSpec {
        fleet,
        fleet_path: Some(fleet_path),
        node: id,
        certs_dir: certs,
        data_dir: data,
        retention,
        serve_api: true,
        events: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    node::run(spec, stop_rx).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn status(api: SocketAddr, site: Option<String>) -> anyhow::Result<()> {
    let url = match &site {
        Some(s) => format!("http://{api}/v1/sites/{s}"),
        None => format!("http://{api}/v1/status"),
    };
    let body = rest_call(
        reqwest::Method::GET,
        &url,
        None,
        None,
        Duration::from_secs(5),
    )?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

fn maintenance(
    site: String,
    duration: Option<String>,
    until: Option<String>,
    end: bool,
    op: &OperatorArgs,
) -> anyhow::Result<()> {
    let path = format!("/v1/sites/{site}/maintenance");
    let body = match (duration, until, end) {
        (_, _, true) => return operator_call(op, reqwest::Method::DELETE, path, None),
        (Some(d), None, false) => {
            let d = humantime::parse_duration(&d)
                .with_context(|| format!("--for {d:?} is not a duration such as 1h or 30m"))?;
            serde_json::json!({ "duration_s": d.as_secs_f64() })
        }
        (None, Some(t), false) => serde_json::json!({ "until": t }),
        _ => bail!("give one of --for DURATION, --until TIME or --end"),
    };
    operator_call(op, reqwest::Method::POST, path, Some(body))
}

/// A mutating REST call with the bearer token; prints the JSON answer.
fn operator_call(
    op: &OperatorArgs,
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&op.token_file)
        .with_context(|| format!("cannot read the token file {}", op.token_file.display()))?;
    let token = token.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!("the first line of {} is empty", op.token_file.display());
    }
    let url = format!("http://{}{path}", op.api);
    // A drill answers when the whole dry run is over.
    let answer = rest_call(method, &url, Some(&token), body, Duration::from_secs(3600))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// One REST call to a node; a non-2xx answer becomes an error carrying the node's message.
fn rest_call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    runtime()?.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let mut req = client.request(method.clone(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let code = resp.status();
        let answer: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("{url} did not answer JSON"))?;
        if !code.is_success() {
            bail!(
                "{method} {url}: {code}: {}",
                answer["error"].as_str().unwrap_or("unknown error")
            );
        }
        Ok(answer)
    })
}

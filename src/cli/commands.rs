//! Carries out one parsed command line: runs a node, the demo, the simulator, certificate
//! work, or calls a node's REST API and prints the answer as a table or JSON.

use super::{
    render, rest, CertsCmd, Cli, Cmd, LogFormat, NodeCertArgs, OperatorArgs, Output, ReadArgs,
};
use crate::config::Fleet;
use crate::core::types::{NodeId, SiteId};
use crate::node::{self, NodeSpec};
use anyhow::{bail, Context};
use clap::{CommandFactory, Parser};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The whole `quorate` program: parses the command line and carries it out.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::CheckConfig { fleet } => return crate::config::check_config_main(&fleet),
        Cmd::Certs { cmd } => certs(cmd),
        Cmd::Run {
            fleet,
            node,
            certs,
            data,
            keep_days,
            keep_last,
            log_format,
        } => {
            init_logs("info,quinn=warn,rustls=warn", log_format);
            let retention = match crate::store::Retention::days(keep_days, keep_last) {
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
                rt.shutdown_timeout(Duration::from_secs(5));
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
            let filter = if verbose {
                "info,quinn=warn,rustls=warn"
            } else {
                "error"
            };
            init_logs(filter, LogFormat::Text);
            let opts = crate::demo::DemoOptions {
                fast,
                blackout: blackout.map(SiteId),
                at: Duration::from_secs_f64(at.max(0.0)),
                exit_after_verdict,
                verdict_timeout: Duration::from_secs(30),
            };
            runtime().and_then(|rt| {
                rt.block_on(crate::demo::run(opts))
                    .map_err(anyhow::Error::from)
            })
        }
        Cmd::Status { read, site } => status(&read, site.as_deref()),
        Cmd::Watch {
            node,
            output,
            count,
        } => super::watch::watch(&node, output, count),
        Cmd::Verdicts { read, site, limit } => verdicts(&read, site.as_deref(), limit),
        Cmd::Failovers {
            id,
            read,
            token_file,
        } => failovers(&read, id.as_deref(), token_file.as_deref()),
        Cmd::Failover {
            site,
            reason,
            force,
            op,
        } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/failovers",
            Some(serde_json::json!({ "site": site, "reason": reason, "force": force })),
        ),
        Cmd::Drill { site, op } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/drills",
            Some(serde_json::json!({ "site": site })),
        ),
        Cmd::Failback { site, op } => operator_call(
            &op,
            reqwest::Method::POST,
            "/v1/failbacks",
            Some(serde_json::json!({ "site": site })),
        ),
        Cmd::Maintenance {
            site,
            duration,
            until,
            end,
            op,
        } => maintenance(&site, duration, until, end, &op),
        Cmd::Alarm { cmd } => alarm(cmd),
        Cmd::Sim(args) => {
            // Silent unless asked: RUST_LOG=info shows the simulated cores' own logs.
            init_logs("off", LogFormat::Text);
            match crate::sim::cli(&args) {
                Ok(true) => return ExitCode::SUCCESS,
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        }
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "quorate", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { dir } => man(dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (else `default`). JSON lines carry the event's fields
/// at the top level beside `timestamp`, `level`, `target` and `message`, and the node's span
/// (`span.node`), so a collector can select on `site`, `epoch`, `run_id` or `step`.
fn init_logs(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints `text`; a closed pipe (`quorate status | head`) ends the output quietly.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print(&String::from_utf8_lossy(&page))
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            println!("man pages written to {}", dir.display());
            Ok(())
        }
    }
}

fn status(read: &ReadArgs, site: Option<&str>) -> anyhow::Result<()> {
    let now = SystemTime::now();
    match site {
        Some(s) => {
            let answer = rest::get(&read.node, &format!("/v1/sites/{s}"), None)?;
            match read.output {
                Output::Json => print_json(&answer),
                Output::Table => print(&render::site(&answer, now)),
            }
        }
        None => {
            let answer = rest::get(&read.node, "/v1/status", None)?;
            match read.output {
                Output::Json => print_json(&answer),
                Output::Table => {
                    // The runs add each site's failover state; a node that cannot list them
                    // still shows its status.
                    let runs = rest::get(&read.node, "/v1/failovers", None).ok();
                    print(&render::status(&answer, runs.as_ref(), now))
                }
            }
        }
    }
}

fn verdicts(read: &ReadArgs, site: Option<&str>, limit: u16) -> anyhow::Result<()> {
    // The URL type encodes the site's name in the query.
    let mut url = reqwest::Url::parse("http://node/v1/verdicts")?;
    url.query_pairs_mut()
        .append_pair("limit", &limit.to_string());
    if let Some(s) = site {
        url.query_pairs_mut().append_pair("site", s);
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let answer = rest::get(&read.node, &path, None)?;
    match read.output {
        Output::Json => print_json(&answer),
        Output::Table => print(&render::verdicts(&answer, SystemTime::now())),
    }
}

fn failovers(read: &ReadArgs, id: Option<&str>, token_file: Option<&Path>) -> anyhow::Result<()> {
    let token = token_file.map(rest::read_token).transpose()?;
    let now = SystemTime::now();
    let path = match id {
        Some(id) => format!("/v1/failovers/{id}"),
        None => "/v1/failovers".to_string(),
    };
    let answer = rest::get(&read.node, &path, token.as_deref())?;
    match (read.output, id) {
        (Output::Json, _) => print_json(&answer),
        (Output::Table, Some(_)) => print(&render::run(&answer, now)),
        (Output::Table, None) => print(&render::failovers(&answer, now)),
    }
}

fn alarm(cmd: super::AlarmCmd) -> anyhow::Result<()> {
    use super::{AlarmCmd, AlarmSeverityArg};
    match cmd {
        AlarmCmd::Raise {
            site,
            source,
            severity,
            reason,
            op,
        } => {
            let severity = match severity {
                AlarmSeverityArg::Warning => "warning",
                AlarmSeverityArg::Critical => "critical",
            };
            let body = serde_json::json!({
                "site": site, "source": source, "severity": severity, "reason": reason,
            });
            operator_call(&op, reqwest::Method::POST, "/v1/alarms", Some(body))
        }
        AlarmCmd::Clear { site, source, op } => {
            let path = format!("/v1/alarms/{site}/{source}");
            operator_call(&op, reqwest::Method::DELETE, &path, None)
        }
        AlarmCmd::List { read } => {
            let answer = rest::get(&read.node, "/v1/alarms", None)?;
            match read.output {
                Output::Json => print_json(&answer),
                Output::Table => print(&render::alarms(&answer, SystemTime::now())),
            }
        }
    }
}

fn maintenance(
    site: &str,
    duration: Option<String>,
    until: Option<String>,
    end: bool,
    op: &OperatorArgs,
) -> anyhow::Result<()> {
    let path = format!("/v1/sites/{site}/maintenance");
    let body = match (duration, until, end) {
        (_, _, true) => return operator_call(op, reqwest::Method::DELETE, &path, None),
        (Some(d), None, false) => {
            let d = humantime::parse_duration(&d)
                .with_context(|| format!("--for {d:?} is not a duration such as 1h or 30m"))?;
            serde_json::json!({ "duration_s": d.as_secs_f64() })
        }
        (None, Some(t), false) => serde_json::json!({ "until": t }),
        _ => bail!("give one of --for DURATION, --until TIME or --end"),
    };
    operator_call(op, reqwest::Method::POST, &path, Some(body))
}

/// A mutating REST call with the bearer token; prints the answer (a drill's report as a
/// step timeline).
fn operator_call(
    op: &OperatorArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let token = rest::read_token(&op.token_file)?;
    let answer = rest::call(
        method,
        &op.node,
        path,
        Some(&token),
        body,
        rest::OPERATOR_TIMEOUT,
    )?;
    match op.output {
        Output::Json => print_json(&answer),
        Output::Table if answer["steps"].is_array() => {
            print(&render::run(&answer, SystemTime::now()))
        }
        Output::Table => {
            let mut text = render::fields(&answer);
            // A started run (manual failover, failback) goes on after the answer.
            if let Some(id) = answer["id"].as_str() {
                text.push_str(&format!(
                    "\nfollow it: quorate failovers {id} --api {}\n",
                    op.node.api
                ));
            }
            print(&text)
        }
    }
}

fn certs(cmd: CertsCmd) -> anyhow::Result<()> {
    use crate::net::certs;
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
            let id = NodeId::from(node.clone());
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
            let id = NodeId::from(node.clone());
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
            certs::cut_over(&dir, &NodeId::from(node.clone()))?;
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
    retention: crate::store::Retention,
) -> anyhow::Result<()> {
    if node.trim().is_empty() {
        // What an unset QUORATE_NODE in /etc/default/quorate gives under systemd.
        bail!("--node (QUORATE_NODE) is empty: give this node's id in the fleet file");
    }
    let fleet = Fleet::load(&fleet_path)?;
    for w in fleet.warnings() {
        tracing::warn!("{w}");
    }
    if let Some(note) = fleet.api.note() {
        tracing::warn!("{note}");
    }
    let id = NodeId::from(node);
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

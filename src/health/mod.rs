//! The service checks an Indicator runs on its own host (`[[site.check]]`): one tokio task per
//! check runs it every `interval` within its `timeout`, feeds the result to the check's pure
//! rise/fall machine (`core::health`) and, when the service health of the node changes, hands
//! it to the mesh, whose probe answers carry it from then on. It decides nothing about the
//! site: Pingers count the answers and Voters vote. Exec checks get the hygiene of exec steps
//! (`actuators::process`): a clean environment and their process group killed on timeout.

use crate::actuators::process::{run_process, Leftovers, SAFE_PATH};
use crate::config::{CheckKind, ServiceCheck};
use crate::core::health::{CheckState, CheckTracker, ServiceHealth};
use crate::core::types::{NodeId, SiteId};
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What the REST API and `/metrics` show of one check.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CheckView {
    pub name: String,
    pub kind: &'static str,
    pub target: String,
    pub state: CheckState,
    /// Consecutive results that disagree with `state` (on their way to `rise` or `fall`).
    pub streak_against: u32,
    pub rise: u32,
    pub fall: u32,
    /// Why the last run failed; None after a success or before the first run.
    pub last_error: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

struct Shared {
    node: NodeId,
    checks: Vec<(CheckView, CheckTracker)>,
    health: ServiceHealth,
}

/// Where the node's service health goes when it changes (the mesh's probe answers).
pub type HealthSink = Arc<dyn Fn(ServiceHealth) + Send + Sync>;

/// The running checks of one node; dropping it stops them.
pub struct HealthChecks {
    config: Vec<ServiceCheck>,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl HealthChecks {
    /// Starts `checks` for `node` of `site`; every change of the service health goes to `sink`
    /// (the first one, `pending`, at once). Must run inside a tokio runtime.
    pub fn start(
        node: &NodeId,
        site: &SiteId,
        checks: &[ServiceCheck],
        sink: HealthSink,
    ) -> HealthChecks {
        let views = checks
            .iter()
            .map(|c| {
                let view = CheckView {
                    name: c.name.clone(),
                    kind: c.kind.as_str(),
                    target: c.kind.target(),
                    state: CheckState::Pending,
                    streak_against: 0,
                    rise: c.rise,
                    fall: c.fall,
                    last_error: None,
                    runs: 0,
                    failures: 0,
                };
                (view, CheckTracker::new(c.rise, c.fall))
            })
            .collect();
        let health = ServiceHealth::of(checks.iter().map(|_| CheckState::Pending));
        sink(health);
        let shared = Arc::new(Mutex::new(Shared {
            node: node.clone(),
            checks: views,
            health,
        }));
        let tasks = checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let runner = Runner {
                    index: i,
                    check: c.clone(),
                    node: node.clone(),
                    site: site.clone(),
                    shared: shared.clone(),
                    sink: sink.clone(),
                };
                tokio::spawn(runner.run())
            })
            .collect();
        HealthChecks {
            config: checks.to_vec(),
            shared,
            tasks,
        }
    }

    /// The checks as configured (a reload restarts them only when these change).
    pub fn config(&self) -> &[ServiceCheck] {
        &self.config
    }

    pub fn views(&self) -> Vec<CheckView> {
        lock(&self.shared)
            .checks
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }

    pub fn health(&self) -> ServiceHealth {
        lock(&self.shared).health
    }
}

struct Runner {
    index: usize,
    check: ServiceCheck,
    node: NodeId,
    site: SiteId,
    shared: Arc<Mutex<Shared>>,
    sink: HealthSink,
}

impl Runner {
    async fn run(self) {
        let mut ticks = tokio::time::interval(self.check.interval);
        // A check slower than its interval (it is bounded by its timeout, which is at most
        // the interval) delays the next run; it never bursts to catch up.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let result = run_check(&self.check, &self.node, &self.site).await;
            self.record(result, started.elapsed());
        }
    }

    fn record(&self, result: Result<(), String>, took: Duration) {
        let mut s = lock(&self.shared);
        let (view, tracker) = &mut s.checks[self.index];
        view.runs += 1;
        if result.is_err() {
            view.failures += 1;
        }
        let changed = tracker.record(result.is_ok());
        view.state = tracker.state();
        view.streak_against = tracker.streak_against();
        view.last_error = result.err();
        if let Some(to) = changed {
            let level_warn = to == CheckState::Failing;
            let (check, error) = (view.name.clone(), view.last_error.clone());
            let took_ms = took.as_millis() as u64;
            if level_warn {
                tracing::warn!(node = %s.node, %check, error = error.as_deref().unwrap_or(""), took_ms, "service check failing");
            } else {
                tracing::info!(node = %s.node, %check, took_ms, "service check passing");
            }
        }
        let health = ServiceHealth::of(s.checks.iter().map(|(v, _)| v.state));
        if health != s.health {
            s.health = health;
            tracing::info!(node = %s.node, health = health.as_str(), "service health changed; probe answers say so from now on");
            drop(s);
            (self.sink)(health);
        }
    }
}

/// Runs one check once within its timeout: Ok when it passes, otherwise why not.
async fn run_check(check: &ServiceCheck, node: &NodeId, site: &SiteId) -> Result<(), String> {
    let timeout = check.timeout;
    let attempt = match &check.kind {
        // An exec check kills its process group on timeout itself.
        CheckKind::Exec { argv } => return exec(argv, timeout, node, site).await,
        CheckKind::Tcp { target } => tokio::time::timeout(timeout, tcp_connect(target)).await,
        CheckKind::Http { url } => tokio::time::timeout(timeout, http_get(url, timeout)).await,
    };
    attempt.unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

async fn tcp_connect(target: &str) -> Result<(), String> {
    tokio::net::TcpStream::connect(target)
        .await
        .map(drop)
        .map_err(|e| format!("connect {target}: {e}"))
}

/// `GET url`: passes on a 2xx status. No proxy from the environment, no redirects: the check
/// is about this host's service.
async fn http_get(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {url}: status {status}"))
    }
}

/// The program with nothing of quorate's environment: PATH, QUORATE_NODE and QUORATE_SITE.
async fn exec(
    argv: &[String],
    timeout: Duration,
    node: &NodeId,
    site: &SiteId,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("QUORATE_NODE", node.as_str())
        .env("QUORATE_SITE", site.as_str());
    let run = run_process(cmd, timeout, Leftovers::Kill).await;
    if run.success() {
        Ok(())
    } else {
        let tail = run.output.trim();
        let tail: String = tail
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if tail.is_empty() {
            Err(run.describe())
        } else {
            Err(format!("{}: {tail}", run.describe()))
        }
    }
}

#[cfg(test)]
mod tests;

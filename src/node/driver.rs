//! The node's event loop: one task owns the node's core (`core::node::NodeCore`), its store
//! and its mesh handle. It turns mesh events, step results, operator commands and timers into
//! core inputs and carries out the core's actions in order: a write is on disk before any
//! action after it leaves the node, and a failed write goes back to the core before the next
//! action is looked at. It decides nothing.

use super::snapshot::*;
use super::{NodeError, NodeHandle, NodeSpec};
use crate::config::Fleet;
use crate::core::node::{
    Action, Boot, Input, NodeCore, PersistFailed, ProbeHeard, StartStep, StepPurpose,
};
use crate::core::types::{NodeId, Now, Time, WallTime};
use crate::net::{Mesh, MeshConfig, MeshEvent, MeshInbox, OutgoingProbe};
use crate::store::{Retention, SqliteStore, Storage};
use crate::wire::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn, Instrument};

pub(super) mod commands;
mod notify;
mod observe;
mod service_checks;
mod view;

const HISTORY_KEPT: usize = 200;
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Retention runs this often besides at start: records age in days, so an hour is prompt.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the node; `watchdog` is the service manager's, pinged from the event loop.
pub(super) async fn spawn(
    spec: NodeSpec,
    watchdog: Option<super::service::Watchdog>,
) -> Result<NodeHandle, NodeError> {
    let me = spec
        .fleet
        .node(&spec.node)
        .cloned()
        .ok_or_else(|| NodeError::UnknownNode(spec.node.clone()))?;
    let certs = crate::net::certs::check_node_files(&spec.certs_dir, &spec.node)
        .map_err(|e| NodeError::Certs(e.to_string()))?;
    let expiry = certificate_expiry(&certs)?;
    let mut store = SqliteStore::open(&spec.data_dir)?;
    store.save_fleet(&spec.fleet, unix_ms())?;
    prune(&mut store, &spec.retention)?;
    let boot = Boot {
        durable: store.load_durable()?,
        verdicts: store
            .latest_verdicts()?
            .into_iter()
            .map(|s| s.verdict)
            .collect(),
        runs: store.run_records()?,
        maintenance: store.maintenance()?,
        locks: store.load_locks()?,
        alarms: store.alarms()?,
    };
    let history = store.verdicts(None, HISTORY_KEPT)?;

    let (mesh, mesh_rx) = Mesh::start(MeshConfig {
        me: me.id.clone(),
        bind: me.mesh_bind_addr(),
        peers: peers_of(&spec.fleet, &me.id),
        certs,
        answer_probes: me.roles.indicator,
        // Liveness is judged by probes, not by the connection: keep-alives only keep NAT
        // and the idle timer happy, and at a thousand connections each one costs CPU.
        idle_timeout: super::MESH_IDLE_TIMEOUT,
        keep_alive: super::MESH_KEEP_ALIVE,
        redial_every: Duration::from_millis(200),
        quiet_peers: spec.fleet.quiet_peers(&me.id),
        park_after: super::MESH_PARK_AFTER,
    })
    .await?;
    let mesh_addr = mesh.local_addr();

    let origin = Instant::now();
    let now = Now::new(Time::ZERO, wall_now());
    let core = NodeCore::new(
        Arc::new(spec.fleet.clone()),
        &me.id,
        boot,
        now,
        rand::random(),
    )
    .ok_or_else(|| NodeError::UnknownNode(spec.node.clone()))?;

    let (snap_tx, snap_rx) = watch::channel(Arc::new(NodeSnapshot::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let commands = commands::Commands::new();
    let reload = Arc::new(tokio::sync::Notify::new());

    let api_addr = if spec.serve_api {
        let tls = crate::api::tls_acceptor(&spec.fleet.api, &me.id).map_err(NodeError::ApiTls)?;
        let listener = tokio::net::TcpListener::bind(me.api)
            .await
            .map_err(|source| NodeError::Api {
                addr: me.api,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Api {
            addr: me.api,
            source,
        })?;
        let (snap, cmds) = (snap_rx.clone(), commands.sender());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            crate::api::serve(
                listener,
                snap,
                cmds,
                crate::api::Limits::default(),
                tls,
                shutdown,
            )
            .await;
        });
        Some(addr)
    } else {
        None
    };

    tokio::spawn(super::alarm_poll::run(
        me.id.clone(),
        snap_rx.clone(),
        commands.sender(),
        stop_rx.clone(),
    ));

    let (step_tx, step_rx) = mpsc::unbounded_channel();
    let (notify_tx, notify_rx) = mpsc::unbounded_channel();
    let mut observed = observe::Observed::default();
    for h in &history {
        observed.learned_at.insert(
            (h.verdict.site.clone(), h.verdict.slot),
            h.learned_at_unix_ms,
        );
    }
    observed.history = history;
    let service_checks = service_checks::start(&spec.fleet, &me, &mesh);
    let mut driver = Driver {
        fleet_mtime: spec
            .fleet_path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()),
        spec,
        origin,
        core,
        mesh: mesh.clone(),
        store,
        observed,
        fleet_error: None,
        snapshot: snap_tx,
        next_reload_check: origin + RELOAD_CHECK_EVERY,
        next_prune: origin + PRUNE_EVERY,
        expiry,
        last_publish: origin - PUBLISH_EVERY,
        dirty: true,
        step_tx,
        notify_tx,
        commands,
        reload: reload.clone(),
        watchdog,
        service_checks,
        probe_batch: Vec::new(),
    };
    driver.carry_out();
    info!(node = %me.id, site = %me.site, mesh = %mesh_addr, api = ?api_addr, "node started");
    driver.publish(Instant::now());
    let node = me.id.clone();
    // Every line the node logs names it, also in a process running a whole fleet.
    let span = tracing::info_span!("node", node = %me.id);
    let task = tokio::spawn(
        async move {
            driver.run(mesh_rx, step_rx, notify_rx, stop_rx).await;
            mesh.shutdown().await;
        }
        .instrument(span),
    );
    Ok(NodeHandle {
        node,
        api_addr,
        mesh_addr,
        snapshot: snap_rx,
        stop: stop_tx,
        reload,
        task,
    })
}

/// When this node's certificate and the fleet CA's run out, for the metrics.
fn certificate_expiry(certs: &crate::net::CertPaths) -> Result<CertificateExpiry, NodeError> {
    let read = |p: &std::path::Path| {
        crate::net::certs::not_after_unix_s(p).map_err(|e| NodeError::Certs(e.to_string()))
    };
    Ok(CertificateExpiry {
        node_not_after_unix_s: read(&certs.node_cert)?,
        ca_not_after_unix_s: read(&certs.ca_cert)?,
    })
}

/// Applies the node's retention to its store on the wall clock, and says what went.
fn prune(store: &mut SqliteStore, retention: &Retention) -> Result<(), crate::store::StoreError> {
    let pruned = store.apply_retention(retention, unix_ms())?;
    if !pruned.is_empty() {
        info!(
            verdicts = pruned.verdicts,
            runs = pruned.runs,
            fleet_versions = pruned.fleet_versions,
            keep_days = retention.max_age.as_secs() / 86_400,
            keep_last = retention.keep_last,
            "pruned the store"
        );
    }
    Ok(())
}

fn peers_of(fleet: &Fleet, me: &NodeId) -> Vec<(NodeId, std::net::SocketAddr)> {
    fleet
        .mesh_peers(me)
        .map(|n| (n.id.clone(), n.mesh))
        .collect()
}

fn unix_ms() -> i64 {
    wall_now().as_millis()
}

/// The wall clock, read only here: the core receives it with every input.
fn wall_now() -> WallTime {
    WallTime::from_micros(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

struct Driver {
    spec: NodeSpec,
    origin: Instant,
    core: NodeCore,
    mesh: Mesh,
    store: SqliteStore,
    /// Counters, rounds and verdict history kept for the snapshot.
    observed: observe::Observed,
    fleet_error: Option<String>,
    snapshot: watch::Sender<Arc<NodeSnapshot>>,
    next_reload_check: Instant,
    next_prune: Instant,
    /// Read once at start: a rotated certificate is presented from the next start.
    expiry: CertificateExpiry,
    fleet_mtime: Option<SystemTime>,
    last_publish: Instant,
    dirty: bool,
    step_tx: mpsc::UnboundedSender<crate::core::node::StepDone>,
    notify_tx: mpsc::UnboundedSender<notify::NotifyDone>,
    commands: commands::Commands,
    /// Asks for the fleet file to be re-read at once, changed or not (SIGHUP).
    reload: Arc<tokio::sync::Notify>,
    watchdog: Option<super::service::Watchdog>,
    /// This node's `[[site.check]]`s, running; None when it runs none.
    service_checks: Option<crate::health::HealthChecks>,
    /// A Pinger's round of probes on its way to the mesh, kept between rounds so that a round
    /// allocates nothing.
    probe_batch: Vec<OutgoingProbe>,
}

impl Driver {
    fn fleet(&self) -> &Fleet {
        self.core.fleet()
    }

    fn time(&self, at: Instant) -> Time {
        Time::from_micros(at.saturating_duration_since(self.origin).as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        // A saturated deadline ("never") does not fit an Instant: wake in a day and ask again.
        self.origin
            .checked_add(Duration::from_micros(t.as_micros()))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    fn now(&self) -> Now {
        Now::new(self.time(Instant::now()), wall_now())
    }

    /// Hands one input to the core and carries out what it asks.
    fn feed(&mut self, input: Input) {
        let now = self.now();
        self.core.handle(now, input);
        self.carry_out();
    }

    async fn run(
        &mut self,
        mut mesh_rx: MeshInbox,
        mut step_rx: mpsc::UnboundedReceiver<crate::core::node::StepDone>,
        mut notify_rx: mpsc::UnboundedReceiver<notify::NotifyDone>,
        mut stop: watch::Receiver<bool>,
    ) {
        // The snapshot is published at least this often, so that a stale one means a dead loop.
        let heartbeat = self.fleet().timing.status_interval;
        let reload = self.reload.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            let mut wake = self
                .next_reload_check
                .min(self.last_publish + heartbeat)
                .min(self.next_prune);
            if let Some(t) = self.core.poll_timeout() {
                wake = wake.min(self.instant(t));
            }
            if self.dirty {
                wake = wake.min(self.last_publish + PUBLISH_EVERY);
            }
            if let Some(w) = &self.watchdog {
                wake = wake.min(w.due());
            }
            let mut reload_asked = false;
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                ev = mesh_rx.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_mesh(ev);
                    // Take what else is queued (peers in turn) before looking at timers again.
                    for _ in 0..256 {
                        match mesh_rx.try_recv() {
                            Some(ev) => self.on_mesh(ev),
                            None => break,
                        }
                    }
                }
                done = step_rx.recv() => {
                    if let Some(done) = done {
                        self.feed(Input::StepDone(done));
                    }
                }
                done = notify_rx.recv() => {
                    if let Some(done) = done {
                        self.notify_done(done);
                    }
                }
                cmd = self.commands.rx.recv() => {
                    if let Some(cmd) = cmd {
                        let id = self.commands.waiting(cmd.reply);
                        self.feed(Input::Command { id, command: cmd.kind });
                    }
                }
                _ = reload.notified() => reload_asked = true,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.report_probes_heard();
            self.feed(Input::Tick);
            let now = Instant::now();
            if reload_asked || now >= self.next_reload_check {
                self.next_reload_check = now + RELOAD_CHECK_EVERY;
                self.check_fleet_file(reload_asked);
            }
            if now >= self.next_prune {
                self.next_prune = now + PRUNE_EVERY;
                // A wall clock this node distrusts could make everything look old.
                if !self.core.tilt().active() {
                    if let Err(e) = prune(&mut self.store, &self.spec.retention) {
                        error!(error = %e, "cannot prune the store; keeping everything");
                    }
                }
            }
            if (self.dirty && now >= self.last_publish + PUBLISH_EVERY)
                || now >= self.last_publish + heartbeat
            {
                self.publish(now);
            }
            // Only a loop that turns pings: a stalled one gets the node restarted.
            if let Some(w) = &mut self.watchdog {
                w.ping_if_due(now);
            }
        }
        info!(node = %self.core.me().id, "node stopping");
    }

    fn on_mesh(&mut self, ev: MeshEvent) {
        match ev {
            MeshEvent::ProbeAnswer {
                from,
                nonce,
                at,
                health,
                ..
            } => {
                let at = self.time(at);
                self.feed(Input::ProbeAnswer {
                    indicator: from,
                    nonce,
                    at,
                    health,
                });
            }
            MeshEvent::Message { from, msg } => {
                if matches!(msg, Message::Status(_)) {
                    self.dirty = true;
                }
                self.feed(Input::Message { from, msg });
            }
            MeshEvent::PeerConnected(peer) => {
                tracing::debug!(%peer, "connected");
                self.feed(Input::PeerConnected(peer));
            }
            MeshEvent::PeerLost(peer) => tracing::debug!(%peer, "connection lost"),
        }
    }

    /// Carries out every action the core queued, in order.
    fn carry_out(&mut self) {
        let me = self.core.me().id.clone();
        // Consecutive probes (a Pinger's round: one to each Indicator) go out together, in
        // as few system calls as the mesh can; the batch is sent before any other action, so
        // the order of everything else is kept.
        let mut probes = std::mem::take(&mut self.probe_batch);
        loop {
            let Some(a) = self.core.poll_action() else {
                if probes.is_empty() {
                    break;
                }
                // Probes not sent go back to the core, which may act on them.
                self.send_probes(&mut probes);
                continue;
            };
            if !probes.is_empty() && !matches!(a, Action::SendProbe { .. }) {
                self.send_probes(&mut probes);
            }
            match a {
                Action::SendProbe {
                    indicator,
                    nonce,
                    opinion,
                } => {
                    let t = self.time(Instant::now());
                    probes.push(OutgoingProbe {
                        to: indicator,
                        nonce,
                        sent_us: t.as_micros(),
                        opinion,
                    });
                }
                Action::Send { to, msg } => self.mesh.send(&to, &msg),
                Action::Broadcast { msg, except } => {
                    for n in self.core.fleet().mesh_peers(&me) {
                        if except.binary_search(&n.id).is_err() {
                            self.mesh.send(&n.id, &msg);
                        }
                    }
                }
                Action::PersistDurable { site, durable } => {
                    if let Err(e) = self.store.save_durable(&site, &durable) {
                        self.observed.counters.persist_errors += 1;
                        self.dirty = true;
                        let now = self.now();
                        let error = e.to_string();
                        self.core.handle(
                            now,
                            Input::PersistFailed(PersistFailed::Durable { site, error }),
                        );
                    }
                }
                Action::RecordVerdict { verdict, at } => {
                    // Shown as learned when it was recorded, the same after a restart.
                    let key = (verdict.site.clone(), verdict.slot);
                    self.observed.learned_at.insert(key, at.as_millis());
                    if let Err(e) = self.store.record_verdict(&verdict, at.as_millis()) {
                        error!(site = %verdict.site, error = %e, "cannot record the verdict");
                    }
                }
                Action::SaveRun(r) => {
                    if let Err(e) = self.store.save_run(&r) {
                        self.run_write_failed(r.site.clone(), r.run, e.to_string());
                    }
                    self.dirty = true;
                }
                Action::AppendJournal(entry) => {
                    let point = |when: &str| {
                        let kind = match entry.kind {
                            crate::core::pipeline::JournalKind::Started => "started",
                            crate::core::pipeline::JournalKind::Finished { .. } => "finished",
                            crate::core::pipeline::JournalKind::RunFinished { .. } => {
                                "run-finished"
                            }
                        };
                        format!("journal-{when}:{kind}:{}", entry.name)
                    };
                    crate::failpoint::reached(me.as_str(), || point("before"));
                    if let Err(e) = self.store.append_journal(&entry) {
                        // Without the journal exactly-once cannot be kept: stop this run.
                        self.run_write_failed(entry.site.clone(), entry.epoch, e.to_string());
                        continue;
                    }
                    crate::failpoint::reached(me.as_str(), || point("after"));
                    self.dirty = true;
                }
                Action::SaveMaintenance(w) => {
                    if let Err(e) = self.store.save_maintenance(&w) {
                        error!(site = %w.site, error = %e, "cannot store the maintenance window");
                    }
                    self.dirty = true;
                }
                Action::SaveAlarm(a) => {
                    if let Err(e) = self.store.save_alarm(&a) {
                        error!(site = %a.site, source = %a.source, error = %e, "cannot store the alarm");
                    }
                    self.dirty = true;
                }
                Action::PersistLock { site, state } => {
                    if let Err(e) = self.store.save_lock(&site, &state) {
                        self.observed.counters.persist_errors += 1;
                        let (now, error) = (self.now(), e.to_string());
                        let failed = PersistFailed::Lock { site, error };
                        self.core.handle(now, Input::PersistFailed(failed));
                    }
                }
                Action::StartStep(s) => {
                    if s.purpose == StepPurpose::Run {
                        crate::failpoint::reached(me.as_str(), || format!("start:{}", s.name));
                    }
                    self.start_step(s);
                    self.dirty = true;
                }
                Action::Reply { id, reply } => {
                    // Read-your-writes: a status read right after the answer shows the call.
                    self.publish(Instant::now());
                    self.commands.answer(id, reply);
                }
                Action::Observe(o) => {
                    self.observe(o);
                    self.dirty = true;
                }
                Action::Notify(call) => self.start_notify(call),
            }
        }
        self.probe_batch = probes;
    }

    /// Sends a batch of probes and empties it; those not sent (no connection, or the socket
    /// full) go back to the core.
    fn send_probes(&mut self, probes: &mut Vec<OutgoingProbe>) {
        let not_sent = self.mesh.send_probes(probes);
        if !not_sent.is_empty() {
            let now = self.now();
            for i in not_sent {
                let OutgoingProbe {
                    to: indicator,
                    nonce,
                    ..
                } = std::mem::take(&mut probes[i]);
                self.core
                    .handle(now, Input::ProbeNotSent { indicator, nonce });
            }
        }
        probes.clear();
    }

    /// The probes this node answered since the last call, to the core: before its timers,
    /// so that the self-fence never times out a Pinger whose probe already arrived.
    fn report_probes_heard(&mut self) {
        let heard = self.mesh.take_probes_heard();
        if heard.is_empty() {
            return;
        }
        let heard = heard
            .into_iter()
            .map(|(pinger, at, opinion)| ProbeHeard {
                pinger,
                at: self.time(at),
                opinion,
            })
            .collect();
        self.feed(Input::ProbesHeard(heard));
    }

    fn run_write_failed(&mut self, site: crate::core::types::SiteId, run: u64, error: String) {
        let now = self.now();
        self.core.handle(
            now,
            Input::PersistFailed(PersistFailed::Run { site, run, error }),
        );
    }

    /// Runs one attempt of a step in a task of its own; its result comes back as an input.
    fn start_step(&self, s: StartStep) {
        let tx = self.step_tx.clone();
        // The attempt's end is logged under the node's span, like the node's other lines.
        let span = tracing::Span::current();
        tokio::spawn(async move {
            let ctx = crate::actuators::StepContext {
                site: s.site.clone(),
                epoch: s.term,
                step: s.name.clone(),
                idempotency_key: s.idempotency_key.clone(),
                dry_run: s.dry_run,
                timeout: s.timeout,
                params: s.params.clone(),
            };
            let confirm = s.step.phase == crate::core::pipeline::Phase::Confirm;
            let (ok, detail) = call_actuator(s.actuator, confirm, &ctx).await;
            span.in_scope(|| log_attempt(&s, ok));
            let _ = tx.send(s.done(ok, detail));
        });
    }

    /// Re-reads the fleet file when it changed, or when `asked` (SIGHUP) whatever its mtime
    /// says; a bad file is reported and the running fleet kept.
    fn check_fleet_file(&mut self, asked: bool) {
        let Some(path) = self.spec.fleet_path.clone() else {
            return;
        };
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if mtime == self.fleet_mtime && !asked {
            return;
        }
        self.fleet_mtime = mtime;
        let me = self.core.me().clone();
        let fleet = match Fleet::load(&path) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("{e}");
                warn!(path = %path.display(), error = %msg, "changed fleet file is invalid; keeping the running fleet");
                self.refuse_reload(msg);
                return;
            }
        };
        if fleet.hash == self.fleet().hash {
            if asked {
                info!(hash = %short(&fleet.hash), "fleet file re-read on request; unchanged");
            }
            // Valid again and the version that runs: an earlier refusal no longer applies.
            if self.fleet_error.take().is_some() {
                self.dirty = true;
            }
            return;
        }
        let Some(new_me) = fleet.node(&me.id).cloned() else {
            // The core retires the node (it stops voting and acting); the mesh keeps its peers
            // so that the node can still tell them what it knows.
            let msg = format!(
                "node {} is not in the changed fleet file; it no longer votes or runs steps",
                me.id
            );
            self.refuse_reload(msg);
            self.feed(Input::Reload(Arc::new(fleet)));
            return;
        };
        if new_me.mesh_bind_addr() != me.mesh_bind_addr() || new_me.api != me.api {
            warn!(node = %me.id, "this node's own addresses changed; restart it to apply them");
        }
        if let Err(e) = self.store.save_fleet(&fleet, unix_ms()) {
            error!(error = %e, "cannot store the changed fleet; keeping the running fleet");
            self.refuse_reload(e.to_string());
            return;
        }
        info!(old = %short(&self.fleet().hash), new = %short(&fleet.hash), "fleet file reloaded");
        self.mesh.set_quiet_peers(fleet.quiet_peers(&me.id));
        self.mesh.set_peers(peers_of(&fleet, &me.id));
        self.spec.fleet = fleet.clone();
        self.feed(Input::Reload(Arc::new(fleet)));
        self.reload_service_checks();
        self.fleet_error = None;
        self.observed.counters.fleet_reloads += 1;
        self.dirty = true;
    }

    fn refuse_reload(&mut self, msg: String) {
        self.observed.counters.fleet_reload_errors += 1;
        self.fleet_error = Some(msg);
        self.dirty = true;
    }

    fn publish(&mut self, now: Instant) {
        self.last_publish = now;
        self.dirty = false;
        let snap = self.build_snapshot(now);
        self.snapshot.send_replace(Arc::new(snap));
    }
}

/// One attempt of a step through its actuator: whether it succeeded, and its detail with the
/// output tail.
/// `confirm`: the attempt is a fence's confirmation, made by its reader.
async fn call_actuator(
    kind: crate::core::actuator_kind::ActuatorKind,
    confirm: bool,
    ctx: &crate::actuators::StepContext,
) -> (bool, String) {
    let built = if confirm {
        crate::actuators::confirm::build(kind, &ctx.params)
    } else {
        crate::actuators::build(kind, &ctx.params)
    };
    let outcome = match built {
        Ok(a) => a.run(ctx).await,
        Err(e) => crate::actuators::StepOutcome {
            ok: false,
            detail: format!("cannot build the {kind} actuator: {e}"),
            output_tail: String::new(),
        },
    };
    let detail = if outcome.output_tail.is_empty() {
        outcome.detail
    } else {
        format!("{}\n{}", outcome.detail, outcome.output_tail)
    };
    (outcome.ok, detail)
}

/// One line per step attempt, with the fields of docs/install.md (site, run_id, step).
fn log_attempt(s: &StartStep, ok: bool) {
    let kind = match s.purpose {
        StepPurpose::Run => "failover",
        StepPurpose::Isolation => "isolation",
        StepPurpose::Drill { .. } => "drill",
    };
    info!(site = %s.site, run_id = s.run, step = %s.name, attempt = s.attempt, kind, ok,
          "step attempt finished");
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

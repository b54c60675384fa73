//! The node's event loop: one task owns the Pinger, the Voter, the store and the mesh handle.
//! It turns mesh events and timers into core inputs and core actions into IO, in order: a
//! `Persist` is on disk before any message emitted after it leaves the node.

use super::snapshot::*;
use super::{cert_paths, EventKind, NodeError, NodeEvent, NodeHandle, NodeSpec};
use crate::config::{Fleet, Node, SingleVantage};
use crate::core::pinger::{Pinger, PingerAction, PingerConfig};
use crate::core::quorum::Electorate;
use crate::core::replica::{ReplicaConfig, Replicas};
use crate::core::types::{NodeId, Opinion, Outcome, SiteId, Time};
use crate::core::voter::{RoundRecord, Voter, VoterAction, VoterConfig};
use crate::net::{Mesh, MeshConfig, MeshEvent};
use crate::store::{SqliteStore, Storage, StoredVerdict};
use crate::wire::{Message, OpinionReport, PeerStatus};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

pub(super) mod commands;
mod failover;
mod isolation;
mod replication;
mod view;

const ROUNDS_KEPT: usize = 10;
const HISTORY_KEPT: usize = 200;
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn spawn(spec: NodeSpec) -> Result<NodeHandle, NodeError> {
    let me = spec
        .fleet
        .node(&spec.node)
        .cloned()
        .ok_or_else(|| NodeError::UnknownNode(spec.node.clone()))?;
    let certs = cert_paths(&spec);
    for p in [&certs.ca_cert, &certs.node_cert, &certs.node_key] {
        if !p.exists() {
            return Err(NodeError::Certs(format!(
                "{} is missing; create the fleet's certificates with `quorate certs init --fleet FLEET --dir {}`",
                p.display(),
                spec.certs_dir.display()
            )));
        }
    }
    let mut store = SqliteStore::open(&spec.data_dir)?;
    store.save_fleet(&spec.fleet, unix_ms())?;
    let durable = store.load_durable()?;
    let known: Vec<_> = store
        .latest_verdicts()?
        .into_iter()
        .map(|s| s.verdict)
        .collect();
    let history = store.verdicts(None, HISTORY_KEPT)?;

    let (mesh_tx, mesh_rx) = mpsc::channel(4096);
    let mesh = Mesh::start(
        MeshConfig {
            me: me.id.clone(),
            bind: me.mesh_bind_addr(),
            peers: peers_of(&spec.fleet, &me.id),
            certs,
            answer_probes: me.roles.indicator,
            idle_timeout: Duration::from_secs(3),
            keep_alive: Duration::from_millis(500),
            redial_every: Duration::from_millis(200),
        },
        mesh_tx,
    )
    .await?;
    let mesh_addr = mesh.local_addr();

    let seed: u64 = rand::random();
    let pinger = Pinger::new(
        PingerConfig::from_timing(&spec.fleet.timing),
        watches_of(&spec.fleet, &me),
        Time::ZERO + first_round_delay(&spec.fleet, &me.id),
        seed,
    );
    let voter = Voter::new(
        VoterConfig::from_timing(&spec.fleet.timing),
        me.id.clone(),
        electorates_of(&spec.fleet, &me),
        durable,
        known,
        seed ^ 0x5eed,
    );

    let (snap_tx, snap_rx) = watch::channel(Arc::new(NodeSnapshot::default()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut ops = commands::Operator::new();
    for w in store.maintenance()? {
        ops.maintenance.insert(w.site.clone(), w);
    }
    let api_addr = if spec.serve_api {
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
        let app = crate::api::router(snap_rx.clone(), ops.sender());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                error!(error = %e, "REST server stopped");
            }
        });
        Some(addr)
    } else {
        None
    };

    let (step_tx, step_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let mut learned_at = BTreeMap::new();
    for h in &history {
        learned_at.insert(
            (h.verdict.site.clone(), h.verdict.slot),
            h.learned_at_unix_ms,
        );
    }
    let isolation = isolation::Isolation::for_node(&spec.fleet, &me, Time::ZERO);
    let spec_status_interval = spec.fleet.timing.status_interval;
    let mut driver = Driver {
        fleet_mtime: spec
            .fleet_path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()),
        spec,
        me: me.clone(),
        origin: now,
        pinger,
        voter,
        mesh: mesh.clone(),
        store,
        peers: BTreeMap::new(),
        rounds: BTreeMap::new(),
        history,
        learned_at,
        counters: Counters::default(),
        first_down_opinion: BTreeMap::new(),
        detection_pending: BTreeMap::new(),
        fleet_error: None,
        voting_disabled: None,
        snapshot: snap_tx,
        next_status: now,
        next_reload_check: now + RELOAD_CHECK_EVERY,
        last_publish: now - PUBLISH_EVERY,
        dirty: true,
        failovers: failover::Failovers::default(),
        replicas: Replicas::new(
            me.id.clone(),
            ReplicaConfig::from_status_interval(spec_status_interval),
        ),
        step_tx,
        ops,
        isolation,
    };
    driver.resume_unfinished_runs(now);
    info!(node = %me.id, site = %me.site, mesh = %mesh_addr, api = ?api_addr, "node started");
    driver.publish(now);
    let node = me.id.clone();
    let task = tokio::spawn(async move {
        driver.run(mesh_rx, step_rx, stop_rx).await;
        mesh.shutdown().await;
    });
    Ok(NodeHandle {
        node,
        api_addr,
        mesh_addr,
        snapshot: snap_rx,
        stop: stop_tx,
        task,
    })
}

fn peers_of(fleet: &Fleet, me: &NodeId) -> Vec<(NodeId, std::net::SocketAddr)> {
    fleet
        .nodes
        .iter()
        .filter(|n| &n.id != me)
        .map(|n| (n.id.clone(), n.mesh))
        .collect()
}

fn watches_of(fleet: &Fleet, me: &Node) -> Vec<(SiteId, Vec<NodeId>)> {
    if !me.roles.pinger {
        return Vec::new();
    }
    fleet
        .watched_by_site(&me.site)
        .into_iter()
        .map(|s| (s.clone(), fleet.indicators(&s)))
        .collect()
}

fn electorates_of(fleet: &Fleet, me: &Node) -> Vec<(SiteId, Electorate)> {
    if !me.roles.voter {
        return Vec::new();
    }
    fleet
        .watches
        .iter()
        .map(|w| (w.site.clone(), fleet.electorate(&w.site)))
        .filter(|(_, e)| e.contains(&me.id))
        .map(|(s, e)| (s, Electorate::new(e)))
        .collect()
}

/// Spreads the fleet's Pingers evenly over the probe period, on the wall clock: with random
/// phases the majority-th Pinger to see a blackout may be almost a whole period behind the
/// first; evenly spread, it is at most (majority / pingers) of a period behind. With clocks out
/// of sync the phases are merely random again, which is still correct.
fn first_round_delay(fleet: &Fleet, me: &NodeId) -> Duration {
    // Interleave the sites (first Pinger of every site, then the second, ...) so that the
    // Pingers judging any one site are spread too, not only the fleet's as a whole.
    let mut pingers: Vec<(usize, usize, &NodeId)> = Vec::new();
    for (si, site) in fleet.sites.iter().enumerate() {
        let of_site = fleet
            .nodes
            .iter()
            .filter(|n| n.roles.pinger && n.site == site.id);
        pingers.extend(of_site.enumerate().map(|(i, n)| (i, si, &n.id)));
    }
    pingers.sort();
    let pingers: Vec<&NodeId> = pingers.into_iter().map(|(_, _, id)| id).collect();
    let Some(rank) = pingers.iter().position(|p| *p == me) else {
        return Duration::ZERO;
    };
    let period = fleet.timing.probe_interval.as_micros().max(1) as u64;
    let offset = period * rank as u64 / pingers.len() as u64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    Duration::from_micros((offset + period - now % period) % period)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct PeerState {
    last_status: Option<Instant>,
    fleet_hash: Option<String>,
    opinions: Vec<(SiteId, OpinionReport)>,
}

struct Driver {
    spec: NodeSpec,
    me: Node,
    origin: Instant,
    pinger: Pinger,
    voter: Voter,
    mesh: Mesh,
    store: SqliteStore,
    peers: BTreeMap<NodeId, PeerState>,
    rounds: BTreeMap<SiteId, VecDeque<RoundRecord>>,
    history: Vec<StoredVerdict>,
    learned_at: BTreeMap<(SiteId, u64), i64>,
    counters: Counters,
    first_down_opinion: BTreeMap<SiteId, Instant>,
    /// DOWN verdicts learned before this node's own Pinger saw the site DOWN, and when: their
    /// detection delay is measured once it does.
    detection_pending: BTreeMap<SiteId, Instant>,
    fleet_error: Option<String>,
    voting_disabled: Option<String>,
    snapshot: watch::Sender<Arc<NodeSnapshot>>,
    next_status: Instant,
    next_reload_check: Instant,
    fleet_mtime: Option<SystemTime>,
    last_publish: Instant,
    dirty: bool,
    failovers: failover::Failovers,
    /// This node's copy of every failover run of the sites it votes on (or leads).
    replicas: Replicas,
    step_tx: mpsc::UnboundedSender<failover::StepDone>,
    ops: commands::Operator,
    isolation: Option<isolation::Isolation>,
}

impl Driver {
    fn fleet(&self) -> &Fleet {
        &self.spec.fleet
    }

    fn time(&self, at: Instant) -> Time {
        Time::from_micros(at.saturating_duration_since(self.origin).as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }

    async fn run(
        &mut self,
        mut mesh_rx: mpsc::Receiver<MeshEvent>,
        mut step_rx: mpsc::UnboundedReceiver<failover::StepDone>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                break;
            }
            let mut wake = self.instant(self.pinger.poll_timeout());
            if let Some(t) = self.voter.poll_timeout() {
                wake = wake.min(self.instant(t));
            }
            wake = wake.min(self.next_status).min(self.next_reload_check);
            if self.dirty {
                wake = wake.min(self.last_publish + PUBLISH_EVERY);
            }
            if let Some(w) = self.failover_wake(Instant::now()) {
                wake = wake.min(w);
            }
            if let Some(w) = self.isolation_wake(Instant::now()) {
                wake = wake.min(w);
            }
            if let Some(w) = self.replica_wake() {
                wake = wake.min(w);
            }
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                ev = mesh_rx.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_mesh(ev);
                    // Take what else is queued before looking at timers again.
                    for _ in 0..256 {
                        match mesh_rx.try_recv() {
                            Ok(ev) => self.on_mesh(ev),
                            Err(_) => break,
                        }
                    }
                }
                done = step_rx.recv() => {
                    if let Some(done) = done {
                        self.on_step_done(done);
                    }
                }
                cmd = self.ops.rx.recv() => {
                    if let Some(cmd) = cmd {
                        self.on_command(cmd);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            self.on_timers(now);
            self.on_replica_timers(now);
            self.on_failover_timers(now);
            self.on_isolation_timers(now);
            self.drain(now);
            if self.dirty && now >= self.last_publish + PUBLISH_EVERY {
                self.publish(now);
            }
        }
        info!(node = %self.me.id, "node stopping");
    }

    fn on_mesh(&mut self, ev: MeshEvent) {
        let now = Instant::now();
        let t = self.time(now);
        match ev {
            MeshEvent::ProbeAnswer {
                from, nonce, at, ..
            } => {
                let at = self.time(at);
                self.pinger.handle_answer(at, &from, nonce);
            }
            MeshEvent::Message {
                from,
                msg: Message::Status(status),
            } => {
                if status.node != from {
                    warn!(peer = %from, claimed = %status.node, "status names another node; ignored");
                    return;
                }
                // Only a peer that also sees this site up counts against fencing it: a peer
                // heard one way but unable to reach the site would vote it DOWN all the same.
                for (s, r) in &status.opinions {
                    if r.opinion == Opinion::Up {
                        self.failovers.seen_up.insert(s.clone());
                    }
                }
                let sees_us_up = status.opinions.iter().any(|(s, r)| {
                    s == &self.me.site && matches!(r.opinion, Opinion::Up | Opinion::Suspect)
                });
                if sees_us_up {
                    self.isolation_peer_seen(now, &from);
                }
                self.on_status(now, from, status);
            }
            MeshEvent::Message {
                from,
                msg: Message::Vote(msg),
            } => {
                if self.voting_disabled.is_none() {
                    self.voter.handle_message(t, &from, msg, &self.pinger);
                }
            }
            MeshEvent::Message {
                from,
                msg: Message::Run(msg),
            } => self.on_run_msg(now, &from, msg),
            MeshEvent::PeerConnected(peer) => debug!(%peer, "connected"),
            MeshEvent::PeerLost(peer) => debug!(%peer, "connection lost"),
        }
        self.drain(now);
    }

    fn on_status(&mut self, now: Instant, from: NodeId, status: PeerStatus) {
        let t = self.time(now);
        for v in status.verdicts {
            self.voter.learn(t, v, false);
        }
        self.learn_maintenance(&from, status.maintenance);
        let peer = self.peers.entry(from.clone()).or_insert(PeerState {
            last_status: None,
            fleet_hash: None,
            opinions: Vec::new(),
        });
        if peer.fleet_hash.as_deref() != Some(status.fleet_hash.as_str())
            && status.fleet_hash != self.spec.fleet.hash
        {
            warn!(peer = %from, theirs = %short(&status.fleet_hash), ours = %short(&self.spec.fleet.hash), "peer runs another fleet version");
        }
        peer.last_status = Some(now);
        peer.fleet_hash = Some(status.fleet_hash);
        peer.opinions = status.opinions;
        self.dirty = true;
    }

    fn on_timers(&mut self, now: Instant) {
        let t = self.time(now);
        if self.pinger.poll_timeout() <= t {
            self.pinger.handle_timeout(t);
        }
        if self.voter.poll_timeout().is_some_and(|v| v <= t) && self.voting_disabled.is_none() {
            self.voter.handle_timeout(t, &self.pinger);
        }
        if now >= self.next_status {
            self.send_status(now);
            self.next_status = now + self.fleet().timing.status_interval;
            // A fresh snapshot at least once per interval: /healthz takes an old one for a
            // dead loop.
            self.dirty = true;
        }
        if now >= self.next_reload_check {
            self.next_reload_check = now + RELOAD_CHECK_EVERY;
            self.check_fleet_file();
        }
    }

    fn send_status(&mut self, now: Instant) {
        let t = self.time(now);
        let status = PeerStatus {
            node: self.me.id.clone(),
            fleet_hash: self.fleet().hash.clone(),
            opinions: self
                .pinger
                .watched_sites()
                .map(|s| (s.clone(), self.pinger.report(s, t)))
                .collect(),
            verdicts: self.voter.verdicts().cloned().collect(),
            maintenance: self.ops.maintenance.values().cloned().collect(),
        };
        let msg = Message::Status(status);
        for n in &self.spec.fleet.nodes {
            if n.id != self.me.id {
                self.mesh.send(&n.id, &msg);
            }
        }
    }

    /// Carries out every action the cores emitted, in order, until both are quiet.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(a) = self.pinger.poll_action() {
                any = true;
                self.on_pinger_action(now, a);
            }
            while let Some(a) = self.voter.poll_action() {
                any = true;
                self.on_voter_action(now, a);
            }
            if !any {
                break;
            }
        }
    }

    fn emit(&self, at: Instant, kind: EventKind) {
        if let Some(tx) = &self.spec.events {
            let _ = tx.send(NodeEvent {
                at,
                node: self.me.id.clone(),
                kind,
            });
        }
    }

    fn on_pinger_action(&mut self, now: Instant, a: PingerAction) {
        match a {
            PingerAction::SendProbe { indicator, nonce } => {
                let t = self.time(now);
                if !self.mesh.send_probe(&indicator, nonce, t.as_micros()) {
                    self.pinger.probe_not_sent(t, &indicator, nonce);
                }
            }
            PingerAction::FirstMiss { site, indicator } => {
                debug!(%site, %indicator, "first missed probe");
                self.emit(now, EventKind::FirstMiss { site, indicator });
            }
            PingerAction::IndicatorUnreachable { site, indicator } => {
                info!(%site, %indicator, retries = self.pinger.config().retries, "indicator unreachable");
            }
            PingerAction::ExternalFalsePositive { site, indicator } => {
                info!(%site, %indicator, "indicator believed unreachable answered");
            }
            PingerAction::OpinionChanged { site, from, to } => {
                info!(%site, from = ?from, to = ?to, "opinion changed");
                self.dirty = true;
                if to == Opinion::Up {
                    self.failovers.seen_up.insert(site.clone());
                }
                if to == Opinion::Down {
                    self.first_down_opinion.insert(site.clone(), now);
                    if let Some(learned) = self.detection_pending.remove(&site) {
                        let from = self.pinger.down_from(&site).map(|f| self.instant(f));
                        // Only the miss streak the verdict was about: one begun before it.
                        if let Some(from) = from.filter(|f| *f <= learned) {
                            let delay = learned.saturating_duration_since(from);
                            self.counters.detection_delay.observe(delay.as_secs_f64());
                        }
                    }
                } else {
                    self.first_down_opinion.remove(&site);
                    if to == Opinion::Up {
                        self.detection_pending.remove(&site);
                    }
                }
                self.emit(
                    now,
                    EventKind::Opinion {
                        site: site.clone(),
                        opinion: to.as_api_str(),
                        suspect: to == Opinion::Suspect,
                    },
                );
                if self.voting_disabled.is_none() {
                    let t = self.time(now);
                    self.voter.on_opinion_changed(t, &site, &self.pinger);
                }
            }
        }
    }

    fn on_voter_action(&mut self, now: Instant, a: VoterAction) {
        if self.voting_disabled.is_some() && !matches!(a, VoterAction::Committed { .. }) {
            return;
        }
        match a {
            VoterAction::Persist { site, durable } => {
                if let Err(e) = self.store.save_durable(&site, &durable) {
                    // A vote that is not durable must not leave the node: stop voting.
                    error!(%site, error = %e, "cannot make the vote durable; this node stops voting");
                    self.counters.persist_errors += 1;
                    self.voting_disabled = Some(e.to_string());
                    self.dirty = true;
                }
            }
            VoterAction::Send { to, msg } => self.mesh.send(&to, &Message::Vote(msg)),
            VoterAction::Broadcast { msg } => {
                let msg = Message::Vote(msg);
                for n in &self.spec.fleet.nodes {
                    if n.id != self.me.id {
                        self.mesh.send(&n.id, &msg);
                    }
                }
            }
            VoterAction::RoundStarted {
                site,
                slot,
                target,
                epoch,
                attempt,
            } => {
                info!(%site, slot, epoch, attempt, target = target.as_api_str(), "vote round started");
                self.emit(
                    now,
                    EventKind::RoundStarted {
                        site,
                        epoch,
                        attempt,
                        target,
                    },
                );
            }
            VoterAction::RoundEnded(r) => {
                let label = r.outcome.label(r.target);
                let yes = r
                    .answers
                    .iter()
                    .filter(|a| a.opinion == r.target.as_opinion())
                    .count();
                let electorate = self.voter.electorate(&r.site).map_or(0, |e| e.len());
                info!(site = %r.site, epoch = r.epoch, outcome = label, yes, electorate, "vote round ended");
                *self.counters.vote_rounds.entry(label).or_default() += 1;
                if label == "false_positive" {
                    self.counters.false_positives_internal += 1;
                }
                self.emit(
                    now,
                    EventKind::RoundEnded {
                        site: r.site.clone(),
                        epoch: r.epoch,
                        outcome: label,
                        yes,
                        electorate,
                    },
                );
                let q = self.rounds.entry(r.site.clone()).or_default();
                q.push_front(r);
                q.truncate(ROUNDS_KEPT);
                self.dirty = true;
            }
            VoterAction::Committed { verdict, by_me } => {
                let at_ms = unix_ms();
                match self.store.record_verdict(&verdict, at_ms) {
                    Ok(_) => {}
                    Err(e) => error!(site = %verdict.site, error = %e, "cannot record the verdict"),
                }
                let site = verdict.site.clone();
                let outcome = verdict.outcome();
                info!(%site, verdict = outcome.as_api_str(), epoch = verdict.epoch(), slot = verdict.slot,
                      leader = %verdict.value.leader, by_me, "verdict committed");
                *self
                    .counters
                    .verdicts
                    .entry((site.to_string(), outcome.as_api_str()))
                    .or_default() += 1;
                if outcome == Outcome::Down {
                    if let Some(from) = self.pinger.down_from(&site) {
                        let from = self.instant(from);
                        self.counters
                            .detection_delay
                            .observe(now.saturating_duration_since(from).as_secs_f64());
                    } else if self.pinger.watched_sites().any(|s| *s == site) {
                        // Our Pinger has not seen it DOWN yet (still suspecting): measured
                        // when it does, from the start of its miss streak to now.
                        self.detection_pending.insert(site.clone(), now);
                    }
                    if let Some(first) = self.first_down_opinion.get(&site) {
                        self.counters
                            .decision_delay
                            .observe(now.saturating_duration_since(*first).as_secs_f64());
                    }
                } else {
                    self.detection_pending.remove(&site);
                }
                if outcome == Outcome::Down && verdict.value.leader == self.me.id {
                    self.on_down_verdict_led_here(now, &site, verdict.epoch());
                }
                self.learned_at.insert((site.clone(), verdict.slot), at_ms);
                self.history.insert(
                    0,
                    StoredVerdict {
                        verdict: verdict.clone(),
                        learned_at_unix_ms: at_ms,
                    },
                );
                self.history.truncate(HISTORY_KEPT);
                self.emit(
                    now,
                    EventKind::Verdict {
                        site,
                        outcome,
                        epoch: verdict.epoch(),
                        leader: verdict.value.leader.clone(),
                    },
                );
                self.dirty = true;
            }
        }
    }

    /// Re-reads the fleet file when it changed; a bad file is reported and the running fleet kept.
    fn check_fleet_file(&mut self) {
        let Some(path) = self.spec.fleet_path.clone() else {
            return;
        };
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if mtime == self.fleet_mtime {
            return;
        }
        self.fleet_mtime = mtime;
        let fleet = match Fleet::load(&path) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("{e}");
                warn!(path = %path.display(), error = %msg, "changed fleet file is invalid; keeping the running fleet");
                self.counters.fleet_reload_errors += 1;
                self.fleet_error = Some(msg);
                self.dirty = true;
                return;
            }
        };
        if fleet.hash == self.spec.fleet.hash {
            // Valid again and the version that runs: an earlier refusal no longer applies.
            if self.fleet_error.take().is_some() {
                self.dirty = true;
            }
            return;
        }
        let Some(me) = fleet.node(&self.me.id).cloned() else {
            let msg = format!(
                "node {} is not in the changed fleet file; keeping the running fleet",
                self.me.id
            );
            warn!("{msg}");
            self.counters.fleet_reload_errors += 1;
            self.fleet_error = Some(msg);
            self.dirty = true;
            return;
        };
        if me.mesh_bind_addr() != self.me.mesh_bind_addr() || me.api != self.me.api {
            warn!(node = %me.id, "this node's own addresses changed; restart it to apply them");
        }
        if let Err(e) = self.store.save_fleet(&fleet, unix_ms()) {
            error!(error = %e, "cannot store the changed fleet; keeping the running fleet");
            self.fleet_error = Some(e.to_string());
            return;
        }
        self.pinger
            .set_config(PingerConfig::from_timing(&fleet.timing));
        let t = self.time(Instant::now());
        self.pinger.set_watches(t, watches_of(&fleet, &me));
        self.voter
            .set_config(VoterConfig::from_timing(&fleet.timing));
        self.voter.set_sites(electorates_of(&fleet, &me));
        self.mesh.set_peers(peers_of(&fleet, &me.id));
        info!(old = %short(&self.spec.fleet.hash), new = %short(&fleet.hash), "fleet file reloaded");
        self.me.roles = me.roles;
        self.spec.fleet = fleet;
        self.fleet_error = None;
        self.counters.fleet_reloads += 1;
        self.dirty = true;
    }

    fn publish(&mut self, now: Instant) {
        self.last_publish = now;
        self.dirty = false;
        let snap = self.build_snapshot(now);
        self.snapshot.send_replace(Arc::new(snap));
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

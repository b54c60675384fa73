//! What probing really costs one Pinger: the real `Pinger` driven over the real mesh (QUIC
//! with mutual TLS, probes as authenticated UDP packets beside it) on loopback, against N Indicator meshes hosted by a
//! second process, so that the Pinger's CPU time and memory are its own.
//!
//! The binary runs twice: as the Pinger (the parent), and, re-executed with
//! `--indicator-child --indicators N --base-port P --pinger ADDR --certs DIR`, as the process
//! hosting the N Indicators (each its own `Mesh` with `answer_probes`, bound to
//! 127.77.x.y:P). The parent drives its `Pinger` the way the node's driver does: consecutive
//! `SendProbe` actions as one `send_probes` batch, `handle_answer` for every `ProbeAnswer` event,
//! `handle_timeout` when `poll_timeout` is due. The child is killed and reaped at the end,
//! also when the parent panics, and exits by itself when its stdin closes.
//!
//! Every pair is quiet, as a Pinger and the Indicator-only nodes it probes are
//! (`Fleet::quiet_peers`): once all connections are up, the bench waits until every pair has
//! parked its connection (the mesh closes it after `MESH_PARK_AFTER` without a message, or
//! `PROBE_PARK_AFTER_MS`); the probes then go on without connections.
//!
//! Phases, on the same probe sessions, one after the other:
//! 1. steady: the Pinger at `PROBE_INTERVAL_MS` (100), timeout 100 ms, 5 retries, for
//!    `PROBE_STEADY_SECS` (20) after `PROBE_WARMUP_SECS` (3);
//!    then the same for `PROBE_PHASE_SECS` (at least 30 s) with the status exchange a node
//!    adds (`PROBE_STATUS_WAYS`): `node`, the default, as nodes do: the Pinger's status to
//!    each Indicator once every `QUIET_STATUS_EVERY` status intervals (`PROBE_STATUS_MS`,
//!    1000, the default status interval), at its own phase, which dials the pair's parked
//!    connection, and each Indicator's status back when the connection comes up (a node's
//!    `on_peer_connected`); `both`: full statuses both ways every interval, as nodes did when
//!    every node sent its status to every other (the connections then stay up); `out` or
//!    `in`: one direction of `both`;
//! 2. mesh only: the same probe rate sent straight through the mesh, without the Pinger
//!    core, for `PROBE_PHASE_SECS` (10): the part of the cost that is transport;
//! 3. idle: no probes, for `PROBE_PHASE_SECS`: what parked pairs cost (keep-alives and
//!    timers, were connections up);
//! 4. max rate: the Pinger at each interval of `PROBE_MAX_INTERVALS_US` (50000,20000,10000),
//!    `PROBE_PHASE_SECS` each: answered probes per CPU-second of the Pinger process;
//! 5. floor, after the mesh shut down: the same schedule (payload size, rate, Indicators) as a
//!    bare UDP echo on a tokio socket (one thread), against an echo socket per Indicator in the
//!    second process; the Pinger's CPU per answered probe is reported as a ratio to it. Twice:
//!    one `sendto`/`recv` per datagram, then batched as the mesh batches (`sendmmsg` in
//!    chunks of 64, quinn-udp's `recvmmsg`), `PROBE_STEADY_SECS` each.
//!
//! CPU is the process's utime + stime from /proc/self/stat (all threads), divided by wall
//! time: the machine may be shared, and wall time alone would say nothing. Memory is VmRSS /
//! VmHWM from /proc/self/status. Bytes are `Mesh::stats()` (all UDP traffic of the
//! connections, keep-alives and ACKs included) on each side.
//!
//! Env: `PROBE_N` (Indicators, default 1000), `PROBE_BASE_PORT` (default 47000), the phase
//! lengths above, `PROBE_KEEP_ALIVE_MS`, `PROBE_IDLE_TIMEOUT_MS` and `PROBE_PARK_AFTER_MS`
//! (default: the node's),
//! `PROBE_WORKERS` (the Pinger process's runtime workers, default 2: a node's runtime has
//! one per core).
//! The child holds one UDP socket per Indicator: `ulimit -n` must exceed
//! N + 100 (`ulimit -n 4096` before `cargo bench` if the default is 1024).
//!
//! Run: `cargo bench --bench probe_throughput`

use quorate::core::pinger::{Pinger, PingerAction, PingerConfig};
use quorate::core::types::{NodeId, SiteId, Time};
use quorate::net::{
    certs, CertPaths, Mesh, MeshConfig, MeshEvent, MeshInbox, MeshStats, OutgoingProbe,
};
use quorate::wire::{Message, OpinionReport, PeerStatus};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

const CHILD_FLAG: &str = "--indicator-child";
const PINGER_ID: &str = "pinger";
/// Mesh timings of a node (src/node/driver.rs).
/// The node's mesh timings, unless `PROBE_KEEP_ALIVE_MS` / `PROBE_IDLE_TIMEOUT_MS` say
/// otherwise (the Pinger's idle cost is mostly keep-alives).
fn keep_alive() -> Duration {
    Duration::from_millis(env(
        "PROBE_KEEP_ALIVE_MS",
        quorate::node::MESH_KEEP_ALIVE.as_millis() as u64,
    ))
}

fn idle_timeout() -> Duration {
    Duration::from_millis(env(
        "PROBE_IDLE_TIMEOUT_MS",
        quorate::node::MESH_IDLE_TIMEOUT.as_millis() as u64,
    ))
}
const REDIAL_EVERY: Duration = Duration::from_millis(200);
const SETUP_LIMIT: Duration = Duration::from_secs(180);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn indicator_id(i: usize) -> NodeId {
    NodeId::from(format!("ind-{i:05}"))
}

/// Indicator `i` listens on its own loopback address, so that the fixed port cannot collide
/// with anything bound to 127.0.0.1.
fn indicator_addr(i: usize, base_port: u16) -> SocketAddr {
    let ip = std::net::Ipv4Addr::new(127, 77, (i / 250) as u8, (i % 250) as u8 + 1);
    SocketAddr::new(ip.into(), base_port)
}

/// Every peer is quiet, as between a Pinger and the Indicator-only nodes it probes
/// (`Fleet::quiet_peers`): the pair's connection closes once idle, the probes go on.
fn mesh_config(
    me: NodeId,
    bind: SocketAddr,
    peers: Vec<(NodeId, SocketAddr)>,
    dir: &std::path::Path,
    answer: bool,
) -> MeshConfig {
    MeshConfig {
        certs: CertPaths::in_dir(dir, &me),
        me,
        bind,
        quiet_peers: peers.iter().map(|(id, _)| id.clone()).collect(),
        peers,
        answer_probes: answer,
        idle_timeout: idle_timeout(),
        keep_alive: keep_alive(),
        redial_every: REDIAL_EVERY,
        park_after: park_after(),
    }
}

/// The node's, unless `PROBE_PARK_AFTER_MS` says otherwise.
fn park_after() -> Duration {
    Duration::from_millis(env(
        "PROBE_PARK_AFTER_MS",
        quorate::node::MESH_PARK_AFTER.as_millis() as u64,
    ))
}

/// Indicator `i`'s bare UDP echo (the floor), beside its mesh socket.
fn echo_addr(i: usize, base_port: u16) -> SocketAddr {
    let mesh = indicator_addr(i, base_port);
    SocketAddr::new(mesh.ip(), base_port + 1)
}

/// Clock ticks per second, for /proc/*/stat times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU time of this process (all threads, live and ended), in ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may itself contain spaces: state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// UDP datagrams dropped because a socket's receive buffer was full (RcvbufErrors of
/// /proc/net/snmp): counted for the whole network namespace, not this process alone.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == CHILD_FLAG) {
        child(&args);
    } else {
        parent();
    }
}

// ---------------------------------------------------------------------------------------
// The Indicators' process.

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> T {
    let pos = args.iter().position(|a| a == name);
    let value = pos.and_then(|p| args.get(p + 1));
    match value.and_then(|v| v.parse().ok()) {
        Some(v) => v,
        None => panic!("missing or bad {name}"),
    }
}

/// Hosts the Indicators; answers `stats` lines on stdin with a `STATS` line on stdout and
/// exits when stdin closes.
fn child(args: &[String]) {
    let n: usize = arg(args, "--indicators");
    let base_port: u16 = arg(args, "--base-port");
    let pinger: SocketAddr = arg(args, "--pinger");
    let dir: std::path::PathBuf = arg(args, "--certs");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let meshes: Vec<Mesh> = rt.block_on(async {
        // Each Indicator answers a new connection with its status, as a node does
        // (`NodeCore::on_peer_connected`: an Indicator-only node's fleet version to a voter);
        // what else arrives is read and dropped.
        let mut meshes = Vec::with_capacity(n);
        for i in 0..n {
            let cfg = mesh_config(
                indicator_id(i),
                indicator_addr(i, base_port),
                vec![(NodeId::from(PINGER_ID), pinger)],
                &dir,
                true,
            );
            match Mesh::start(cfg).await {
                Ok((m, mut inbox)) => {
                    let (mesh, msg) = (
                        m.clone(),
                        Message::Status(status_of(indicator_id(i), Vec::new())),
                    );
                    tokio::spawn(async move {
                        while let Some(event) = inbox.recv().await {
                            if let MeshEvent::PeerConnected(peer) = event {
                                mesh.send(&peer, &msg);
                            }
                        }
                    });
                    meshes.push(m)
                }
                Err(e) => {
                    println!("ERROR indicator {i}: {e}");
                    std::process::exit(1);
                }
            }
        }
        meshes
    });
    // The floor's other end: a bare UDP echo per Indicator, on the next port.
    let echoes = rt.block_on(async {
        let mut n_up = 0;
        for i in 0..n {
            let addr = echo_addr(i, base_port);
            let socket = match tokio::net::UdpSocket::bind(addr).await {
                Ok(s) => s,
                Err(e) => {
                    println!("ERROR echo {i} on {addr}: {e}");
                    std::process::exit(1);
                }
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                    let _ = socket.send_to(&buf[..len], from).await;
                }
            });
            n_up += 1;
        }
        n_up
    });
    println!("READY {} {echoes}", meshes.len());
    let mut senders: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if let Some(ms) = line.trim().strip_prefix("status ") {
            senders.drain(..).for_each(|h| h.abort());
            let ms: u64 = ms.parse().unwrap_or(0);
            if ms > 0 {
                senders = status_senders(&rt, &meshes, Duration::from_millis(ms));
            }
            println!("STATUS {}", senders.len());
            continue;
        }
        if line.trim() != "stats" {
            continue;
        }
        let mut total = MeshStats::default();
        let (mut connected, mut live) = (0, 0);
        for m in &meshes {
            live += m.live_connections();
            let s = m.stats();
            total.probes_answered_by_me += s.probes_answered_by_me;
            total.udp_tx_datagrams += s.udp_tx_datagrams;
            total.udp_tx_bytes += s.udp_tx_bytes;
            total.udp_rx_datagrams += s.udp_rx_datagrams;
            total.udp_rx_bytes += s.udp_rx_bytes;
            connected += usize::from(!m.connected().is_empty());
        }
        println!(
            "STATS {connected} {} {} {} {} {} {} {} {live}",
            total.probes_answered_by_me,
            total.udp_tx_datagrams,
            total.udp_tx_bytes,
            total.udp_rx_datagrams,
            total.udp_rx_bytes,
            cpu_ticks(),
            status_kib("VmRSS:"),
        );
    }
    // No graceful shutdown: the parent is gone or done.
    std::process::exit(0);
}

/// Each Indicator's status to the Pinger every `every`, as a node's driver broadcasts it; the
/// Indicators' sends are spread over the interval, as independent nodes' would be.
fn status_senders(
    rt: &tokio::runtime::Runtime,
    meshes: &[Mesh],
    every: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pinger = NodeId::from(PINGER_ID);
    let n = meshes.len().max(1) as u32;
    meshes
        .iter()
        .enumerate()
        .map(|(i, mesh)| {
            let (mesh, pinger) = (mesh.clone(), pinger.clone());
            let msg = Message::Status(status_of(indicator_id(i), Vec::new()));
            let first = tokio::time::Instant::now() + every * i as u32 / n;
            rt.spawn(async move {
                let mut tick = tokio::time::interval_at(first, every);
                loop {
                    tick.tick().await;
                    mesh.send(&pinger, &msg);
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The Pinger's process.

/// Kills and reaps the Indicators' process however the parent ends.
struct ChildGuard {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<String>,
}

impl ChildGuard {
    fn spawn(n: usize, base_port: u16, pinger: SocketAddr, dir: &std::path::Path) -> ChildGuard {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .arg(CHILD_FLAG)
            .args(["--indicators", &n.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .args(["--pinger", &pinger.to_string()])
            .arg("--certs")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the Indicators' process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildGuard {
            child: Some(child),
            stdin,
            lines,
        }
    }

    fn line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) if l.starts_with("ERROR") => panic!("Indicators' process: {l}"),
                Ok(_) => {}
                Err(e) => panic!("no {prefix} line from the Indicators' process: {e}"),
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush to child");
    }

    /// Every Indicator sends its status to the Pinger every `every` (None: stops).
    fn statuses(&mut self, every: Option<Duration>) {
        let ms = every.map_or(0, |d| d.as_millis());
        self.say(&format!("status {ms}"));
        self.line("STATUS", Duration::from_secs(30));
    }

    fn stats(&mut self) -> ChildStats {
        self.say("stats");
        let l = self.line("STATS", Duration::from_secs(30));
        let v: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        ChildStats {
            connected: v[0] as usize,
            answered: v[1],
            tx_datagrams: v[2],
            tx_bytes: v[3],
            rx_datagrams: v[4],
            rx_bytes: v[5],
            cpu_ticks: v[6],
            rss_kib: v[7],
            live: v[8] as usize,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ChildStats {
    connected: usize,
    answered: u64,
    tx_datagrams: u64,
    tx_bytes: u64,
    rx_datagrams: u64,
    rx_bytes: u64,
    cpu_ticks: u64,
    rss_kib: u64,
    /// QUIC connections the Indicators hold, over all of them.
    live: usize,
}

/// Counters read at the start and the end of a measured window.
#[derive(Clone, Debug)]
struct Snap {
    at: Instant,
    cpu: u64,
    rcvbuf_errors: u64,
    mesh: MeshStats,
    child: ChildStats,
    pinger: quorate::core::pinger::PingerStats,
}

fn snap(mesh: &Mesh, guard: &mut ChildGuard, pinger: Option<&Pinger>) -> Snap {
    let child = guard.stats();
    Snap {
        at: Instant::now(),
        cpu: cpu_ticks(),
        rcvbuf_errors: udp_rcvbuf_errors(),
        mesh: mesh.stats(),
        child,
        pinger: pinger.map(|p| p.stats().clone()).unwrap_or_default(),
    }
}

fn snap_floor(guard: &mut ChildGuard) -> Snap {
    let child = guard.stats();
    Snap {
        at: Instant::now(),
        cpu: cpu_ticks(),
        rcvbuf_errors: udp_rcvbuf_errors(),
        mesh: MeshStats::default(),
        child,
        pinger: Default::default(),
    }
}

/// What one window measured.
#[derive(Clone, Debug, Default)]
struct Window {
    wall: f64,
    cpu: f64,
    child_cpu: f64,
    sent: u64,
    answered: u64,
    misses: u64,
    late: u64,
    not_sent: u64,
    p_tx_dgrams: u64,
    p_tx_bytes: u64,
    p_rx_dgrams: u64,
    p_rx_bytes: u64,
    i_tx_dgrams: u64,
    i_tx_bytes: u64,
    i_rx_dgrams: u64,
    i_rx_bytes: u64,
    i_answered: u64,
    udp_drops: u64,
}

impl Window {
    fn between(a: &Snap, b: &Snap, tck: f64, answers_counted: u64) -> Window {
        let pinger_run = b.pinger.probes_sent > 0;
        Window {
            wall: b.at.duration_since(a.at).as_secs_f64(),
            cpu: (b.cpu - a.cpu) as f64 / tck,
            child_cpu: (b.child.cpu_ticks - a.child.cpu_ticks) as f64 / tck,
            sent: b.mesh.probes_sent - a.mesh.probes_sent,
            answered: if pinger_run {
                b.pinger.answers - a.pinger.answers
            } else {
                answers_counted
            },
            misses: b.pinger.misses - a.pinger.misses,
            late: b.pinger.late_answers - a.pinger.late_answers,
            not_sent: b.mesh.send_failures - a.mesh.send_failures,
            p_tx_dgrams: b.mesh.udp_tx_datagrams - a.mesh.udp_tx_datagrams,
            p_tx_bytes: b.mesh.udp_tx_bytes - a.mesh.udp_tx_bytes,
            p_rx_dgrams: b.mesh.udp_rx_datagrams - a.mesh.udp_rx_datagrams,
            p_rx_bytes: b.mesh.udp_rx_bytes - a.mesh.udp_rx_bytes,
            i_tx_dgrams: b.child.tx_datagrams - a.child.tx_datagrams,
            i_tx_bytes: b.child.tx_bytes - a.child.tx_bytes,
            i_rx_dgrams: b.child.rx_datagrams - a.child.rx_datagrams,
            i_rx_bytes: b.child.rx_bytes - a.child.rx_bytes,
            i_answered: b.child.answered - a.child.answered,
            udp_drops: b.rcvbuf_errors - a.rcvbuf_errors,
        }
    }
    fn core_pct(&self) -> f64 {
        100.0 * self.cpu / self.wall
    }
    fn answered_per_s(&self) -> f64 {
        self.answered as f64 / self.wall
    }
    fn us_per_answer(&self) -> f64 {
        1e6 * self.cpu / self.answered.max(1) as f64
    }
}

/// The node driver's loop around the Pinger (src/node/driver.rs), without the Voter.
struct Drive {
    origin: Instant,
    pinger: Pinger,
    actions: HashMap<&'static str, u64>,
    /// The node's status broadcast (`NodeCore::send_status`, the driver's `Broadcast`): every
    /// `status_every`, this node's status to every peer. None: probes alone.
    status: Option<StatusBroadcast>,
    /// The round on its way to the mesh, kept between rounds as the driver keeps it.
    probe_batch: Vec<OutgoingProbe>,
}

struct StatusBroadcast {
    every: Duration,
    next: Instant,
    peers: Vec<NodeId>,
    /// Each peer only once every this many intervals, at its own phase (a node's quiet
    /// peers, `QUIET_STATUS_EVERY`); None: every peer every interval.
    rotate: Option<u64>,
    tick: u64,
}

impl Drive {
    fn time(&self, at: Instant) -> Time {
        Time::from_micros(at.saturating_duration_since(self.origin).as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }

    /// Runs until `until` on a worker of `rt` (`on_worker`), so that a wake-up from the
    /// mesh's receive path costs what it costs in a node.
    fn run_spawned(
        mut self,
        rt: &tokio::runtime::Runtime,
        mesh: &Mesh,
        mut rx: MeshInbox,
        until: Instant,
    ) -> (Drive, MeshInbox) {
        let mesh = mesh.clone();
        on_worker(rt, async move {
            self.run(&mesh, &mut rx, until).await;
            (self, rx)
        })
    }

    async fn run(&mut self, mesh: &Mesh, rx: &mut MeshInbox, until: Instant) {
        loop {
            let mut wake = self.instant(self.pinger.poll_timeout()).min(until);
            if let Some(b) = &self.status {
                wake = wake.min(b.next);
            }
            tokio::select! {
                biased;
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_mesh(mesh, ev);
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Some(ev) => self.on_mesh(mesh, ev),
                            None => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            let t = self.time(now);
            if self.pinger.poll_timeout() <= t {
                self.pinger.handle_timeout(t);
            }
            self.drain(mesh, now);
            self.broadcast_status(mesh, now);
            if now >= until {
                break;
            }
        }
    }

    fn on_mesh(&mut self, mesh: &Mesh, ev: MeshEvent) {
        let now = Instant::now();
        match ev {
            MeshEvent::ProbeAnswer {
                from, nonce, at, ..
            } => {
                let at = self.time(at);
                self.pinger.handle_answer(at, &from, nonce);
            }
            // As `NodeCore::on_peer_connected`: a new connection gets this node's status.
            MeshEvent::PeerConnected(peer) if self.status.is_some() => {
                mesh.send(&peer, &self.status_message(now));
            }
            _ => {}
        }
        self.drain(mesh, now);
    }

    /// As the driver's `carry_out`: consecutive probes go out as one batch
    /// (`Mesh::send_probes`), sent before any other action.
    fn drain(&mut self, mesh: &Mesh, now: Instant) {
        let t = self.time(now);
        let mut probes = std::mem::take(&mut self.probe_batch);
        loop {
            let Some(a) = self.pinger.poll_action() else {
                if probes.is_empty() {
                    break;
                }
                self.send_probes(mesh, t, &mut probes);
                continue;
            };
            if !probes.is_empty() && !matches!(a, PingerAction::SendProbe { .. }) {
                self.send_probes(mesh, t, &mut probes);
            }
            let kind = match a {
                PingerAction::SendProbe {
                    indicator,
                    nonce,
                    opinion,
                } => {
                    probes.push(OutgoingProbe {
                        to: indicator,
                        nonce,
                        sent_us: t.as_micros(),
                        opinion,
                    });
                    continue;
                }
                PingerAction::FirstMiss { .. } => "first_miss",
                PingerAction::IndicatorUnreachable { .. } => "unreachable",
                PingerAction::OpinionChanged { .. } => "opinion_changed",
                PingerAction::ExternalFalsePositive { .. } => "false_positive",
            };
            *self.actions.entry(kind).or_default() += 1;
        }
        self.probe_batch = probes;
    }
}

impl Drive {
    /// As `NodeCore::send_status` and the driver's `Broadcast`: this Pinger's reports, sent to
    /// every peer, when due.
    fn broadcast_status(&mut self, mesh: &Mesh, now: Instant) {
        if self.status.as_ref().is_none_or(|b| now < b.next) {
            return;
        }
        let msg = self.status_message(now);
        let Some(b) = self.status.as_mut() else {
            return;
        };
        b.next += b.every;
        let tick = b.tick;
        b.tick += 1;
        for (i, peer) in b.peers.iter().enumerate() {
            if b.rotate.is_none_or(|every| (i as u64 + tick) % every == 0) {
                mesh.send(peer, &msg);
            }
        }
    }

    fn status_message(&self, now: Instant) -> Message {
        let t = self.time(now);
        let opinions = self
            .pinger
            .watched_sites()
            .map(|s| (s.clone(), self.pinger.report(s, t)))
            .collect();
        Message::Status(status_of(NodeId::from(PINGER_ID), opinions))
    }

    fn send_probes(&mut self, mesh: &Mesh, t: Time, probes: &mut Vec<OutgoingProbe>) {
        for i in mesh.send_probes(probes) {
            let p = &probes[i];
            self.pinger.probe_not_sent(t, &p.to, p.nonce);
        }
        probes.clear();
    }
}

fn pinger_for(ids: &[NodeId], interval: Duration, timeout: Duration, origin: Instant) -> Drive {
    let cfg = PingerConfig {
        interval,
        timeout,
        retries: 5,
        startup_grace: Duration::from_secs(3),
    };
    let watches = vec![(SiteId::from("dc-a"), ids.to_vec())];
    let now = Time::from_micros(origin.elapsed().as_micros() as u64);
    Drive {
        origin,
        pinger: Pinger::new(cfg, watches, now, 7),
        actions: HashMap::new(),
        status: None,
        probe_batch: Vec::new(),
    }
}

/// A node's status as `NodeCore::send_status` builds it, with a fleet hash of the real
/// length and no verdicts or maintenance calls to carry.
fn status_of(node: NodeId, opinions: Vec<(SiteId, OpinionReport)>) -> PeerStatus {
    PeerStatus {
        node,
        fleet_hash: "0".repeat(64),
        opinions,
        verdicts: Vec::new(),
        maintenance: Vec::new(),
    }
}

/// The same probe schedule sent straight through the mesh: no Pinger state at all. Returns
/// the answers received.
async fn mesh_only(
    mesh: &Mesh,
    rx: &mut MeshInbox,
    ids: &[NodeId],
    interval: Duration,
    until: Instant,
) -> u64 {
    let origin = Instant::now();
    let mut next = origin;
    let mut nonce = 0u64;
    let mut answers = 0u64;
    let mut round: Vec<OutgoingProbe> = ids
        .iter()
        .map(|id| OutgoingProbe {
            to: id.clone(),
            ..Default::default()
        })
        .collect();
    loop {
        tokio::select! {
            biased;
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                answers += u64::from(matches!(ev, MeshEvent::ProbeAnswer { .. }));
                for _ in 0..256 {
                    match rx.try_recv() {
                        Some(ev) => answers += u64::from(matches!(ev, MeshEvent::ProbeAnswer { .. })),
                        None => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(next.min(until).into()) => {}
        }
        let now = Instant::now();
        if now >= next {
            let t = now.duration_since(origin).as_micros() as u64;
            for probe in &mut round {
                nonce += 1;
                (probe.nonce, probe.sent_us) = (nonce, t);
            }
            mesh.send_probes(&round);
            next += interval;
        }
        if now >= until {
            break;
        }
    }
    answers
}

/// The floor: the same probe schedule (one datagram of a probe's size to every Indicator
/// per interval, in one burst, as the Pinger sends them) as a bare UDP echo on a tokio
/// socket, in a single-threaded runtime on its own thread. Returns (sent, answered, late):
/// an echo counts as late when it comes back more than `timeout` after its burst.
///
/// `batched`: as the mesh does, sends each burst with `sendmmsg` in chunks of 64 and
/// receives with quinn-udp (`recvmmsg`, up to 32 datagrams per call, GRO where the kernel
/// offers it); otherwise one `sendto` and one `recv` per datagram.
fn floor(
    n: usize,
    base_port: u16,
    interval: Duration,
    timeout: Duration,
    until: Instant,
    batched: bool,
) -> (u64, u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    rt.block_on(async move {
        // The mesh socket's buffers (src/net/mesh.rs), so that a round's burst of echoes fits.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("floor socket");
        socket.set_recv_buffer_size(8 << 20).ok();
        socket.set_send_buffer_size(8 << 20).ok();
        socket.set_nonblocking(true).expect("nonblocking");
        let bind: SocketAddr = "127.77.255.1:0".parse().unwrap();
        socket.bind(&bind.into()).expect("floor bind");
        let socket = tokio::net::UdpSocket::from_std(socket.into()).expect("floor socket");
        let targets: Vec<SocketAddr> = (0..n).map(|i| echo_addr(i, base_port)).collect();
        let payload = [0x01u8; quorate::net::probe::PROBE_LEN];
        let origin = tokio::time::Instant::now();
        let mut next = origin;
        let mut round_at = origin;
        let (mut sent, mut answered, mut late) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 256];
        let until = tokio::time::Instant::from_std(until);
        let state = quinn::udp::UdpSocketState::new((&socket).into()).expect("udp state");
        let mut storage = vec![[0u8; 1536]; quinn::udp::BATCH_SIZE];
        let mut metas = vec![quinn::udp::RecvMeta::default(); quinn::udp::BATCH_SIZE];
        loop {
            tokio::select! {
                biased;
                r = socket.recv(&mut buf), if !batched => {
                    if r.is_ok() {
                        answered += 1;
                        late += u64::from(round_at.elapsed() > timeout);
                    }
                }
                r = socket.readable(), if batched => {
                    if r.is_err() {
                        continue;
                    }
                    let mut bufs: Vec<std::io::IoSliceMut> =
                        storage.iter_mut().map(|b| std::io::IoSliceMut::new(b)).collect();
                    let got = socket.try_io(tokio::io::Interest::READABLE, || {
                        state.recv((&socket).into(), &mut bufs, &mut metas)
                    });
                    if let Ok(k) = got {
                        let is_late = u64::from(round_at.elapsed() > timeout);
                        for m in &metas[..k] {
                            let d = m.len.div_ceil(m.stride.max(1)) as u64;
                            answered += d;
                            late += d * is_late;
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.min(until)) => {
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    round_at = tokio::time::Instant::now();
                    if batched {
                        sent += send_batched(&socket, &targets, &payload).await;
                    } else {
                        for to in &targets {
                            if socket.send_to(&payload, to).await.is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    next += interval;
                }
            }
        }
        (sent, answered, late)
    })
}

/// One burst with `sendmmsg`, 64 datagrams per call (as `Mesh::send_probes`), waiting for
/// the socket when it is full. Returns the datagrams sent.
async fn send_batched(
    socket: &tokio::net::UdpSocket,
    targets: &[SocketAddr],
    payload: &[u8],
) -> u64 {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    let mut sent = 0;
    for chunk in targets.chunks(64) {
        let addrs: Vec<SocketAddrAny> = chunk.iter().map(|to| to.as_any()).collect();
        let iov = [std::io::IoSlice::new(payload)];
        let mut at = 0;
        while at < chunk.len() {
            let mut controls: Vec<SendAncillaryBuffer> = chunk[at..]
                .iter()
                .map(|_| SendAncillaryBuffer::default())
                .collect();
            let mut msgs: Vec<MMsgHdr> = addrs[at..]
                .iter()
                .zip(controls.iter_mut())
                .map(|(to, c)| MMsgHdr::new_with_addr(to, &iov, c))
                .collect();
            let r = socket.try_io(tokio::io::Interest::WRITABLE, || {
                sendmmsg(socket, &mut msgs, SendFlags::DONTWAIT).map_err(std::io::Error::from)
            });
            match r {
                Ok(k) => {
                    at += k.max(1);
                    sent += k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        return sent;
                    }
                }
                Err(_) => at += 1,
            }
        }
    }
    sent
}

/// Lets in-flight answers of the previous phase arrive and be dropped.
/// Runs `work` as a task on a worker of `rt`, as the node's driver runs (spawned, not on the
/// thread that blocks on the runtime), and waits for its result.
fn on_worker<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async move { tokio::spawn(work).await.expect("bench task") })
}

async fn settle(rx: &mut MeshInbox, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    while let Ok(Some(_)) = tokio::time::timeout_at(until, rx.recv()).await {}
}

fn machine() -> (String, String) {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    (nproc, model)
}

fn parent() {
    let n = env("PROBE_N", 1000) as usize;
    let base_port = env("PROBE_BASE_PORT", 47000) as u16;
    let interval = Duration::from_millis(env("PROBE_INTERVAL_MS", 100));
    let timeout = Duration::from_millis(100);
    let warmup = Duration::from_secs(env("PROBE_WARMUP_SECS", 3));
    let steady = Duration::from_secs(env("PROBE_STEADY_SECS", 20));
    let phase = Duration::from_secs(env("PROBE_PHASE_SECS", 10));
    let max_intervals: Vec<u64> = std::env::var("PROBE_MAX_INTERVALS_US")
        .unwrap_or_else(|_| "50000,20000,10000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // Checked before the long set-up, not when phase 1b comes.
    let ways = std::env::var("PROBE_STATUS_WAYS").unwrap_or_else(|_| "node".into());
    assert!(
        matches!(ways.as_str(), "node" | "both" | "out" | "in"),
        "PROBE_STATUS_WAYS={ways}: expected node, both, out or in"
    );
    let tck = clock_ticks();
    let load_start = loadavg();

    let dir = tempfile::TempDir::new().expect("temp dir");
    let ids: Vec<NodeId> = (0..n).map(indicator_id).collect();
    let mut all = vec![NodeId::from(PINGER_ID)];
    all.extend(ids.iter().cloned());
    let t0 = Instant::now();
    certs::init(dir.path(), &all, false).expect("certs init");
    eprintln!(
        "certificates for {} nodes in {:.1?}",
        all.len(),
        t0.elapsed()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env("PROBE_WORKERS", 2) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let rss_before_mesh = status_kib("VmRSS:");
    let peers: Vec<(NodeId, SocketAddr)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), indicator_addr(i, base_port)))
        .collect();
    let pinger_bind: SocketAddr = "127.77.255.1:0".parse().unwrap();
    let (mesh, mut rx) = rt
        .block_on(Mesh::start(mesh_config(
            NodeId::from(PINGER_ID),
            pinger_bind,
            peers,
            dir.path(),
            false,
        )))
        .expect("pinger mesh");
    let mut guard = ChildGuard::spawn(n, base_port, mesh.local_addr(), dir.path());
    guard.line("READY", SETUP_LIMIT);
    eprintln!("{n} Indicator meshes listening after {:.1?}", t0.elapsed());

    rt.block_on(async {
        let deadline = Instant::now() + SETUP_LIMIT;
        loop {
            settle(&mut rx, Duration::from_millis(500)).await;
            let up = mesh.connected().len();
            let back = guard.stats().connected;
            if up == n && back == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "connections not up after {SETUP_LIMIT:?}: {up}/{n} out, {back}/{n} back"
            );
        }
    });
    rt.block_on(async {
        // Dials raced (the Pinger dials those Indicators whose dial is slow to come): wait
        // for each pair to be down to its one connection.
        let deadline = Instant::now() + SETUP_LIMIT;
        while mesh.live_connections() > n {
            assert!(
                Instant::now() < deadline,
                "{} connections after {SETUP_LIMIT:?}, one per Indicator expected",
                mesh.live_connections()
            );
            settle(&mut rx, Duration::from_millis(200)).await;
        }
    });
    eprintln!(
        "all {} connections up after {:.1?}",
        mesh.live_connections(),
        t0.elapsed()
    );
    // Every pair is quiet: its connection closes once idle, its probe sessions stay.
    let parking = Instant::now();
    rt.block_on(async {
        let deadline = Instant::now() + SETUP_LIMIT;
        loop {
            settle(&mut rx, Duration::from_millis(200)).await;
            if mesh.live_connections() == 0 && guard.stats().live == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} connections not parked after {SETUP_LIMIT:?}",
                mesh.live_connections()
            );
        }
    });
    let parked_after = parking.elapsed();
    eprintln!(
        "all parked {parked_after:.1?} later ({} connections parked)",
        mesh.stats().parked_connections
    );

    // 1. Steady state with the Pinger.
    let origin = Instant::now();
    let mut drive = pinger_for(&ids, interval, timeout, origin);
    (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + warmup);
    let a = snap(&mesh, &mut guard, Some(&drive.pinger));
    (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + steady);
    let b = snap(&mesh, &mut guard, Some(&drive.pinger));
    let rss = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    let steady_live = (mesh.live_connections(), b.child.live);
    let steady_w = Window::between(&a, &b, tck, 0);
    let steady_actions = drive.actions.clone();
    eprintln!("steady: {steady_w:?} actions {steady_actions:?}");

    // 1b. The same, with the node's status exchange (what a node's connections carry besides
    // probes).
    let status_every = Duration::from_millis(env("PROBE_STATUS_MS", 1000));
    let quiet_every = quorate::core::node::QUIET_STATUS_EVERY;
    // `node`: as nodes do, the Pinger's status to each Indicator (each an Indicator-only node
    // it probes, a quiet peer) once every `QUIET_STATUS_EVERY` intervals at its own phase,
    // which dials the pair's parked connection, and each Indicator's status back when the
    // connection comes up; `both`, `out`, `in`: every interval, as nodes did once.
    let indicators_every = match ways.as_str() {
        "node" | "out" => None,
        _ => Some(status_every),
    };
    if let Some(every) = indicators_every {
        guard.statuses(Some(every));
    }
    drive.status = (ways != "in").then(|| StatusBroadcast {
        every: status_every,
        next: Instant::now(),
        peers: ids.clone(),
        rotate: (ways == "node").then_some(quiet_every),
        tick: 0,
    });
    // Warm-in: the rotation's first connections come up and park.
    let warm_in = (status_every * 2).max(park_after() + Duration::from_secs(1));
    (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + warm_in);
    let a = snap(&mesh, &mut guard, Some(&drive.pinger));
    // At least 30 s: about a tenth of the rotation at the default interval, a hundred
    // connections dialed, used and parked at 1,000 Indicators.
    let status_phase = phase.max(Duration::from_secs(30));
    (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + status_phase);
    let b = snap(&mesh, &mut guard, Some(&drive.pinger));
    guard.statuses(None);
    let status = StatusPhase {
        ways: ways.clone(),
        every: status_every,
        rotate: (ways == "node").then_some(quiet_every),
        indicators_every,
        window: Window::between(&a, &b, tck, 0),
        rss_kib: status_kib("VmRSS:"),
        messages_sent: b.mesh.messages_sent - a.mesh.messages_sent,
    };
    eprintln!("with statuses: {:?}", status.window);
    drop(drive);

    // 2. The same rate through the mesh alone.
    rt.block_on(settle(&mut rx, Duration::from_millis(500)));
    let a = snap(&mesh, &mut guard, None);
    let answers;
    (answers, rx) = {
        let (mesh, ids) = (mesh.clone(), ids.clone());
        let until = Instant::now() + phase;
        on_worker(&rt, async move {
            let answers = mesh_only(&mesh, &mut rx, &ids, interval, until).await;
            (answers, rx)
        })
    };
    let b = snap(&mesh, &mut guard, None);
    let mesh_w = Window::between(&a, &b, tck, answers);
    eprintln!("mesh only: {mesh_w:?}");

    // 3. Idle connections.
    rt.block_on(settle(&mut rx, Duration::from_millis(500)));
    let a = snap(&mesh, &mut guard, None);
    rt.block_on(settle(&mut rx, phase));
    let b = snap(&mesh, &mut guard, None);
    let idle_w = Window::between(&a, &b, tck, 0);
    eprintln!("idle: {idle_w:?}");

    // 4. Maximum rate.
    let mut max_ws = Vec::new();
    for &us in &max_intervals {
        rt.block_on(settle(&mut rx, Duration::from_millis(500)));
        let mut drive = pinger_for(&ids, Duration::from_micros(us), timeout, origin);
        (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + Duration::from_secs(1));
        let a = snap(&mesh, &mut guard, Some(&drive.pinger));
        (drive, rx) = drive.run_spawned(&rt, &mesh, rx, Instant::now() + phase);
        let b = snap(&mesh, &mut guard, Some(&drive.pinger));
        let w = Window::between(&a, &b, tck, 0);
        eprintln!("max rate at {us} us: {w:?}");
        max_ws.push((us, w));
    }
    let child_rss = guard.stats().rss_kib;
    rt.block_on(mesh.shutdown());
    drop(mesh);
    drop(rx);

    // 5. The floor, with the mesh gone: the same schedule as a bare UDP echo, one system
    // call per datagram, then batched as the mesh batches.
    let mut floors = Vec::new();
    for batched in [false, true] {
        let a = snap_floor(&mut guard);
        let (f_sent, f_answered, f_late) = floor(
            n,
            base_port,
            interval,
            timeout,
            Instant::now() + steady.min(phase * 2),
            batched,
        );
        let b = snap_floor(&mut guard);
        let floor_w = Window {
            wall: b.at.duration_since(a.at).as_secs_f64(),
            cpu: (b.cpu - a.cpu) as f64 / tck,
            child_cpu: (b.child.cpu_ticks - a.child.cpu_ticks) as f64 / tck,
            sent: f_sent,
            answered: f_answered,
            late: f_late,
            udp_drops: b.rcvbuf_errors - a.rcvbuf_errors,
            ..Window::default()
        };
        eprintln!("floor (batched: {batched}): {floor_w:?}");
        floors.push(floor_w);
    }
    let floor_batched = floors.pop().expect("batched floor");
    let floor_w = floors.pop().expect("floor");
    let load_end = loadavg();
    drop(guard);

    report(Report {
        n,
        interval,
        steady: steady_w,
        status,
        mesh: mesh_w,
        idle: idle_w,
        max: max_ws,
        floor: floor_w,
        floor_batched,
        rss_kib: rss,
        hwm_kib: hwm,
        parked_after,
        steady_live,
        rss_before_mesh_kib: rss_before_mesh,
        child_rss_kib: child_rss,
        load: (load_start, load_end),
    });
}

struct Report {
    n: usize,
    interval: Duration,
    steady: Window,
    status: StatusPhase,
    mesh: Window,
    idle: Window,
    max: Vec<(u64, Window)>,
    floor: Window,
    floor_batched: Window,
    rss_kib: u64,
    hwm_kib: u64,
    /// From all connections up to all parked.
    parked_after: Duration,
    /// QUIC connections the Pinger and the Indicators held at the end of the steady state.
    steady_live: (usize, usize),
    rss_before_mesh_kib: u64,
    child_rss_kib: u64,
    load: (String, String),
}

/// The steady state again, with the status exchange of phase 1b.
struct StatusPhase {
    /// `PROBE_STATUS_WAYS`.
    ways: String,
    /// The Pinger's status to every Indicator (unless `ways` is `in`): every interval, or
    /// each once every `rotate` intervals.
    every: Duration,
    rotate: Option<u64>,
    /// Messages the Pinger sent in the window.
    messages_sent: u64,
    /// Each Indicator's status to the Pinger, if any.
    indicators_every: Option<Duration>,
    window: Window,
    rss_kib: u64,
}

fn report(r: Report) {
    let (nproc, model) = machine();
    let s = &r.steady;
    let f = &r.floor;
    let hz = 1.0 / r.interval.as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let ratio = s.us_per_answer() / f.us_per_answer().max(1e-9);
    println!();
    println!(
        "### Probe cost of one Pinger: authenticated UDP probes beside the QUIC mesh (loopback)"
    );
    println!();
    println!(
        "`cargo bench --bench probe_throughput` on {nproc} × {model}, load average {} at start, {} at end \
         (CPU = user + system time of the Pinger process / wall time; the {} Indicators run in a second process).",
        r.load.0, r.load.1, r.n
    );
    println!();
    println!("| Measure | Value | Target |");
    println!("|---|---|---|");
    println!(
        "| Steady state | {} Indicators × {hz:.0} Hz, timeout 100 ms, 5 retries, {:.1} s measured | |",
        r.n, s.wall
    );
    println!(
        "| Pinger CPU | {:.2} % of one core ({:.2} µs per answered probe) | ≤ 5 % ({}) |",
        s.core_pct(),
        s.us_per_answer(),
        verdict(s.core_pct() <= 5.0),
    );
    println!(
        "| Floor: bare UDP echo, same payload ({} B), rate and Indicators, same run | {:.2} % of one core ({:.2} µs per answered probe; {} of {} answered, {} late) | |",
        quorate::net::probe::PROBE_LEN,
        f.core_pct(),
        f.us_per_answer(),
        f.answered,
        f.sent,
        f.late
    );
    println!(
        "| Pinger CPU per answered probe / floor's | ×{ratio:.2} | ≤ ×2 ({}) |",
        verdict(ratio <= 2.0)
    );
    let fb = &r.floor_batched;
    let ratio_batched = s.us_per_answer() / fb.us_per_answer().max(1e-9);
    println!(
        "| Floor batched as the mesh batches (`sendmmsg` × 64, `recvmmsg` × {}), same run | {:.2} % of one core ({:.2} µs per answered probe; {} of {} answered, {} late) | |",
        quinn::udp::BATCH_SIZE,
        fb.core_pct(),
        fb.us_per_answer(),
        fb.answered,
        fb.sent,
        fb.late
    );
    println!(
        "| Pinger CPU per answered probe / batched floor's | ×{ratio_batched:.2} | ≤ ×2 ({}) |",
        verdict(ratio_batched <= 2.0)
    );
    let st = &r.status.window;
    let out = match (r.status.ways.as_str(), r.status.rotate) {
        ("in", _) => "none".to_string(),
        (_, Some(k)) => format!(
            "each once every {k} intervals of {} ms, at its own phase",
            r.status.every.as_millis()
        ),
        (_, None) => format!("every {} ms", r.status.every.as_millis()),
    };
    let back = match (r.status.ways.as_str(), r.status.indicators_every) {
        ("node", _) => "each Indicator's status back when the connection comes up".to_string(),
        (_, Some(d)) => format!("each Indicator's status every {} ms", d.as_millis()),
        (_, None) => "no Indicator's".to_string(),
    };
    println!(
        "| … with the status exchange `{}` (the Pinger's status to every Indicator {out}; {back}; {} messages sent in {:.0} s) | {:.2} % of one core ({:.2} µs per answered probe; {} of {} answered, {} late; RSS {:.1} MiB) | ≤ 5 % ({}) |",
        r.status.ways,
        r.status.messages_sent,
        st.wall,
        st.core_pct(),
        st.us_per_answer(),
        st.answered,
        st.sent,
        st.late,
        mib(r.status.rss_kib),
        verdict(st.core_pct() <= 5.0),
    );
    println!(
        "| … same probes through the mesh alone, no Pinger core | {:.2} % of one core ({:.2} µs per probe sent; {} of {} answered, {} UDP receive-buffer drops) | |",
        r.mesh.core_pct(),
        1e6 * r.mesh.cpu / r.mesh.sent.max(1) as f64,
        r.mesh.answered,
        r.mesh.sent,
        r.mesh.udp_drops
    );
    println!(
        "| … idle: no probes, every pair parked ({} Indicators, {} QUIC connections at the Pinger at the end of the steady state) | {:.2} % of one core | |",
        r.n,
        r.steady_live.0,
        r.idle.core_pct()
    );
    println!(
        "| Pinger RSS | {:.1} MiB (peak {:.1} MiB; {:.1} MiB before the mesh started) | ≤ 30 MB ({}) |",
        mib(r.rss_kib),
        mib(r.hwm_kib),
        mib(r.rss_before_mesh_kib),
        verdict(r.rss_kib as f64 * 1024.0 <= 30e6)
    );
    println!(
        "| QUIC connections in the steady state (every pair quiet) | {} at the Pinger, {} at the Indicators (all parked {:.1} s after all were up) | |",
        r.steady_live.0,
        r.steady_live.1,
        r.parked_after.as_secs_f64()
    );
    println!(
        "| Probes sent / answered / missed | {} / {} / {} ({:.0} answered/s; Indicators answered {}; {} not sent; {} UDP datagrams dropped on full receive buffers) | |",
        s.sent,
        s.answered,
        s.misses,
        s.answered_per_s(),
        s.i_answered,
        s.not_sent,
        s.udp_drops
    );
    println!(
        "| Late answers (after the 100 ms timeout) | {} | none ({}) |",
        s.late,
        verdict(s.late == 0)
    );
    let per = |bytes: u64, d: u64| bytes as f64 / d.max(1) as f64;
    println!(
        "| Pinger → wire | {:.1} B per UDP datagram, {:.1} B and {:.2} datagrams per answered probe (received {:.1} B, {:.2} datagrams) | |",
        per(s.p_tx_bytes, s.p_tx_dgrams),
        per(s.p_tx_bytes, s.answered),
        per(s.p_tx_dgrams, s.answered),
        per(s.p_rx_bytes, s.answered),
        per(s.p_rx_dgrams, s.answered)
    );
    println!(
        "| Indicators → wire | {:.1} B per UDP datagram, {:.1} B and {:.2} datagrams per answered probe (received {:.1} B, {:.2} datagrams) | |",
        per(s.i_tx_bytes, s.i_tx_dgrams),
        per(s.i_tx_bytes, s.answered),
        per(s.i_tx_dgrams, s.answered),
        per(s.i_rx_bytes, s.answered),
        per(s.i_rx_dgrams, s.answered)
    );
    println!(
        "| Indicators' process (for scale) | {:.1} % of one core for all {}, RSS {:.0} MiB | |",
        100.0 * s.child_cpu / s.wall,
        r.n,
        mib(r.child_rss_kib)
    );
    let best = r
        .max
        .iter()
        .map(|(_, w)| w.answered as f64 / w.cpu.max(1e-9))
        .fold(0.0, f64::max);
    for (us, w) in &r.max {
        println!(
            "| Max rate, interval {} µs | {:.0} answered/s at {:.0} % of one core = {:.0} answered per CPU-second ({:.0} sent/s, {} missed, {} UDP receive-buffer drops; Indicators' process {:.0} %) | |",
            us,
            w.answered_per_s(),
            w.core_pct(),
            w.answered as f64 / w.cpu.max(1e-9),
            w.sent as f64 / w.wall,
            w.misses,
            w.udp_drops,
            100.0 * w.child_cpu / w.wall
        );
    }
    println!(
        "| Best rate per core | {best:.0} answered probes per CPU-second (floor at 10 Hz: {:.0}; batched: {:.0}) | ≥ 200,000 ({}) |",
        f.answered as f64 / f.cpu.max(1e-9),
        fb.answered as f64 / fb.cpu.max(1e-9),
        verdict(best >= 200_000.0)
    );
    println!();
}

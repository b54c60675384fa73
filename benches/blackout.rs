//! Blackout detection latency and probe wire cost of the three-site fleet on loopback.
//!
//! Per timing profile, each trial waits a random 0-1 s (so the blackout falls at a random phase
//! of the probe schedule), stops every node of site a and times the DOWN commit at each
//! surviving voter, then restarts a and waits until the fleet is UP again (a new verdict slot).
//! Wire cost: a fleet of the same profile with a UDP relay in front of a3 (an Indicator only,
//! bound to its `mesh_bind`) that sizes every datagram on the connections other nodes dial to
//! a3, plus every node's mesh counters over the same window.
//!
//!   cargo bench --bench blackout [-- --trials N --seed S --profile drl|fast --timeline --rtt MS]
//!
//! `--rtt MS` puts the voters of a's electorate behind `quorate::relay` with a one-way delay
//! of MS/2 on every packet between them (the vote crosses a WAN of that round-trip time); the
//! Pingers still probe a's Indicators directly, so detection itself is unchanged.
//! BLACKOUT_TRIALS (default 20) and BLACKOUT_SEED (default 1) set --trials and --seed.

use anyhow::{bail, Context, Result};
use quorate::core::types::{NodeId, Outcome, SiteId};
use quorate::demo::{Timeline, THREE_SITES, THREE_SITES_FAST};
use quorate::localfleet::{relocate, LocalFleet};
use quorate::node::snapshot::{NodeSnapshot, SiteView};
use quorate::node::{EventKind, NodeEvent};
use quorate::wire::{encode_datagram, Datagram};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;

#[path = "common/report.rs"]
mod report;
use report::{f1, summary};

/// (name, fleet file, p99 detection target in ms)
type Profile = (&'static str, &'static str, f64);
const PROFILES: [Profile; 2] = [
    ("DRL", THREE_SITES, 600.0),
    ("fast", THREE_SITES_FAST, 150.0),
];
/// UDP payload per probe.
const TARGET_B: f64 = 80.0;
/// IPv4 (20) + UDP (8) header bytes around each datagram on the wire.
const IP_UDP: usize = 28;
/// Datagrams of at least this size carry stream data (a status message alone exceeds it);
/// smaller ones on a probe connection are probes, answers and ACK-only packets.
const STREAM_B: usize = 100;
const WINDOW: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
const NAN: f64 = f64::NAN;

fn ms(at: Instant, t0: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

/// (trials, seed, only this profile, print timelines, round-trip time between voters in ms)
type Args = (usize, u64, Option<String>, bool, Option<u64>);

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let opt = |k: &str| argv.windows(2).find(|w| w[0] == k).map(|w| w[1].clone());
    let num = |k: &str, env: &str, default: u64| -> Result<u64> {
        let v = opt(k).or_else(|| std::env::var(env).ok());
        Ok(v.map(|v| v.parse()).transpose()?.unwrap_or(default))
    };
    let trials = num("--trials", "BLACKOUT_TRIALS", 20)? as usize;
    let seed = num("--seed", "BLACKOUT_SEED", 1)?;
    let only = opt("--profile").map(|p| p.to_lowercase());
    let rtt = opt("--rtt").map(|v| v.parse()).transpose()?;
    let a: Args = (
        trials,
        seed,
        only,
        argv.iter().any(|a| a == "--timeline"),
        rtt,
    );
    let rt = tokio::runtime::Runtime::new()?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "blackout: {trials} trials per profile, seed {seed}, {cores} cores, voter RTT {rtt:?} ms"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut lat, mut wire) = (Vec::new(), Vec::new());
    for p in PROFILES.iter() {
        if a.2.as_ref().is_some_and(|o| *o != p.0.to_lowercase()) {
            continue;
        }
        let started = Instant::now();
        wire.push((p, rt.block_on(bytes(p))?));
        lat.push((p, rt.block_on(detection(p, &a, &mut rng))?));
        println!("{}: done in {:.1} s", p.0, started.elapsed().as_secs_f64());
    }
    report(&lat, &wire);
    Ok(())
}

/// Every running voter's own Pinger sees each site it watches UP, and none shows a DOWN verdict.
fn steady(f: &LocalFleet) -> bool {
    f.running_voters().iter().all(|id| {
        let Some(s) = f.snapshot(id) else {
            return false;
        };
        let up = |v: &&SiteView| v.id == s.site || v.opinion == "up";
        s.sites.iter().all(|v| up(&v) && v.verdict != "down")
    })
}

async fn settle(f: &LocalFleet, when: &str) -> Result<()> {
    if !f.wait_until(WAIT, steady).await {
        bail!("fleet not back to UP {} s after {when}", WAIT.as_secs());
    }
    Ok(())
}

/// Per surviving voter, ms after `t0`: [verdict, DOWN opinion, first missed probe].
type Seen = [BTreeMap<NodeId, f64>; 3];

/// Reads timeline events until every node of `voters` committed `want` for `site`.
async fn verdicts(
    events: &mut UnboundedReceiver<NodeEvent>,
    (site, voters, want): (&SiteId, &[NodeId], Outcome),
    t0: Instant,
    timeline: Option<String>,
) -> Result<Seen> {
    if let Some(header) = &timeline {
        println!("{header}");
    }
    let (mut seen, mut printer) = (Seen::default(), Timeline::default());
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen[0].len() < voters.len() {
        let ev = tokio::time::timeout_at(deadline, events.recv()).await;
        let Some(ev) = ev.ok().flatten() else {
            bail!("no {want:?} verdict for {site} everywhere: {:?}", seen[0]);
        };
        if timeline.is_some() {
            printer.print(t0, &ev);
        }
        let k = |yes: bool, k: usize| if yes { k } else { 9 };
        let (s, k) = match &ev.kind {
            EventKind::Verdict { site, outcome, .. } => (site, k(*outcome == want, 0)),
            EventKind::Opinion { site, opinion, .. } => (site, k(*opinion == "down", 1)),
            EventKind::FirstMiss { site, .. } => (site, 2),
            _ => continue,
        };
        if s == site && k < 3 && voters.contains(&ev.node) {
            seen[k].entry(ev.node.clone()).or_insert(ms(ev.at, t0));
        }
    }
    Ok(seen)
}

/// One trial's stages; ms after the blackout (recovery: after the restart began).
type Trial = Vec<f64>;
const STAGES: [&str; 7] = [
    "stop_site returned",
    "first missed probe noticed (any voter)",
    "first DOWN opinion",
    "majority-th DOWN opinion",
    "first voter committed DOWN",
    "every voter committed DOWN (detection)",
    "recovery: every voter committed UP",
];
const FIRST: usize = 4;
const DETECTION: usize = 5;

fn sorted(m: &BTreeMap<NodeId, f64>) -> Vec<f64> {
    let mut v: Vec<f64> = m.values().copied().collect();
    v.sort_by(f64::total_cmp);
    v
}

/// `text` with the voters of site a bound to port 7411 of their mesh IP, and the relay routes
/// from their fleet `mesh` address (what peers dial) to there.
fn voters_behind_relay(text: &str) -> Result<(String, Vec<(SocketAddr, SocketAddr)>)> {
    let f = quorate::config::Fleet::parse(text)?;
    let mut out = text.to_string();
    let mut routes = Vec::new();
    for id in f.electorate(&SiteId::from("a")) {
        let public = f.node(&id).context("a voter of a")?.mesh;
        let bind = SocketAddr::new(public.ip(), 7411);
        let line = format!("mesh  = \"{public}\"");
        if !out.contains(&line) {
            bail!("{id}'s mesh line not found");
        }
        out = out.replace(&line, &format!("{line}\nmesh_bind = \"{bind}\""));
        routes.push((public, bind));
    }
    Ok((out, routes))
}

async fn detection(p: &Profile, a: &Args, rng: &mut StdRng) -> Result<Vec<Trial>> {
    let mut text = relocate(p.1, 40);
    let mut relay = None;
    if let Some(rtt) = a.4 {
        let (t, routes) = voters_behind_relay(&text)?;
        let r = quorate::relay::Relay::start(routes).await?;
        r.set_delay(Duration::from_micros(rtt * 500));
        (text, relay) = (t, Some(r));
    }
    let mut fleet = LocalFleet::start(&text, None, false).await?;
    let mut events = fleet.take_events().context("events already taken")?;
    let site = SiteId::from("a");
    let majority = fleet.fleet.electorate(&site).len() / 2 + 1;
    settle(&fleet, "start").await?;
    let mut trials = Vec::new();
    for i in 1..=a.0 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        while events.try_recv().is_ok() {}
        let t0 = Instant::now();
        let stopped = fleet.stop_site(&site).await;
        let stop = ms(Instant::now(), t0);
        let voters = fleet.running_voters();
        let header = format!("{} trial {i}: site a stopped; ms after the blackout:", p.0);
        let timeline = a.3.then_some(header);
        let down = verdicts(&mut events, (&site, &voters, Outcome::Down), t0, timeline).await?;
        let t1 = Instant::now();
        for id in &stopped {
            fleet.start_node(id).await?;
        }
        let header = format!("{} trial {i}: site a restarted; ms after the restart:", p.0);
        let timeline = a.3.then_some(header);
        let up = verdicts(&mut events, (&site, &voters, Outcome::Up), t1, timeline).await?;
        settle(&fleet, "a restart").await?;
        let [v, o, m] = [0, 1, 2].map(|k| sorted(&down[k]));
        let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(NAN);
        let last = |v: &[f64]| v.last().copied().unwrap_or(NAN);
        let up = sorted(&up[0]);
        let mut t = vec![stop, at(&m, 0), at(&o, 0), at(&o, majority - 1)];
        t.extend([at(&v, 0), last(&v), last(&up)]);
        let (name, det, first) = (p.0, t[DETECTION], t[FIRST]);
        println!("{name} trial {i:2}: detection {det:6.1} ms, first {first:6.1} ms, DOWN opinions at {o:.0?}");
        trials.push(t);
    }
    fleet.shutdown().await;
    if let Some(r) = relay {
        r.shutdown().await;
    }
    Ok(trials)
}

/// Datagram sizes seen by the relay: Pingers -> a3, a3 -> Pingers, others -> a3, a3 -> others.
type Tally = Arc<Mutex<[BTreeMap<usize, u64>; 4]>>;

/// Forwards datagrams between `front` (the address peers dial) and `back` (the node's bind
/// address) through one back socket per dialing peer, counting each datagram's size.
async fn relay(addrs: [SocketAddr; 2], pingers: Vec<SocketAddr>, tally: Tally) -> Result<Relay> {
    let [front, back] = addrs;
    let front_sock = Arc::new(UdpSocket::bind(front).await?);
    Ok(tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = front_sock.recv_from(&mut buf).await {
            let group = if pingers.contains(&from) { 0 } else { 2 };
            if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(from) {
                // Unconnected, so that ICMP errors before a3 binds do not end the task.
                let Ok(s) = UdpSocket::bind((front.ip(), 0)).await else {
                    continue;
                };
                let (s, f, t) = (Arc::new(s), front_sock.clone(), tally.clone());
                slot.insert(s.clone());
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, _)) = s.recv_from(&mut buf).await {
                        *t.lock().unwrap()[group + 1].entry(n).or_default() += 1;
                        let _ = f.send_to(&buf[..n], from).await;
                    }
                });
            }
            *tally.lock().unwrap()[group].entry(n).or_default() += 1;
            let _ = clients[&from].send_to(&buf[..n], back).await;
        }
    }))
}
type Relay = tokio::task::JoinHandle<()>;

/// The next snapshot `id` publishes (its mesh counters are read when it is built).
async fn fresh(f: &LocalFleet, id: &NodeId) -> Result<Arc<NodeSnapshot>> {
    let mut rx = f.handle(id).context("node not running")?.subscribe();
    rx.borrow_and_update();
    tokio::time::timeout(WAIT, rx.changed()).await??;
    let snap = rx.borrow().clone();
    Ok(snap)
}

/// Per node over the window: node, roles, probes sent, answers sent, datagrams, bytes.
type NodeRow = (String, String, u64, u64, u64, u64);
/// Nodes (a3 first) and the relay's datagram sizes.
type Wire = (Vec<NodeRow>, [BTreeMap<usize, u64>; 4]);

async fn bytes(p: &Profile) -> Result<Wire> {
    let (front, back) = ("127.41.1.3:7401", "127.41.1.3:7402");
    let line = format!("mesh  = \"{front}\"");
    let text = relocate(p.1, 41).replace(&line, &format!("{line}\nmesh_bind = \"{back}\""));
    let f = quorate::config::Fleet::parse(&text)?;
    let a3 = NodeId::from("a3");
    if f.node(&a3).is_none_or(|n| n.mesh_bind.is_none()) {
        bail!("a3 not found at {front} in the {} fleet", p.0);
    }
    // The Pingers that probe a3 (its electorate) dial from their fleet mesh address.
    let pingers = f.electorate(&SiteId::from("a"));
    let pingers = pingers.iter().filter_map(|id| f.node(id)).map(|n| n.mesh);
    let tally: Tally = Arc::default();
    let addrs = [front.parse()?, back.parse()?];
    let relay = relay(addrs, pingers.collect(), tally.clone()).await?;
    let fleet = LocalFleet::start(&text, None, false).await?;
    settle(&fleet, "start").await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // past handshakes and MTU discovery
    let mut ids: Vec<NodeId> = f.nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort_by_key(|id| *id != a3); // a3 first: the relay window starts and ends with it
    let mut snaps = [Vec::new(), Vec::new()];
    let mut sizes = Default::default();
    for (i, snaps) in snaps.iter_mut().enumerate() {
        tokio::time::sleep(WINDOW * i as u32).await;
        for id in &ids {
            snaps.push(fresh(&fleet, id).await?);
            if *id == a3 {
                sizes = std::mem::take(&mut *tally.lock().unwrap());
            }
        }
    }
    relay.abort();
    fleet.shutdown().await;
    let mut nodes = Vec::new();
    for (b, e) in snaps[0].iter().zip(&snaps[1]) {
        let (m0, m1, roles) = (&b.mesh, &e.mesh, e.roles.join(","));
        let answers = m1.probes_answered_by_me - m0.probes_answered_by_me;
        let ps = m1.probes_sent - m0.probes_sent;
        let dg = m1.udp_tx_datagrams - m0.udp_tx_datagrams;
        let by = m1.udp_tx_bytes - m0.udp_tx_bytes;
        nodes.push((e.node.to_string(), roles, ps, answers, dg, by));
    }
    Ok((nodes, sizes))
}

/// [datagrams, bytes, bytes in datagrams below STREAM_B], most common size, sizes by count.
fn sizes(h: &BTreeMap<usize, u64>) -> ([u64; 3], usize, String) {
    let bytes = |below: usize| h.range(..below).map(|(l, n)| *l as u64 * n).sum();
    let mut top: Vec<(usize, u64)> = h.iter().map(|(l, n)| (*l, *n)).collect();
    top.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let shown: Vec<String> = top.iter().map(|(l, n)| format!("{l} B ×{n}")).collect();
    let shown = shown[..shown.len().min(6)].join(", ");
    let (n, mode) = (h.values().sum(), top.first().map_or(0, |t| t.0));
    ([n, bytes(usize::MAX), bytes(STREAM_B)], mode, shown)
}

fn report(lat: &[(&Profile, Vec<Trial>)], wire: &[(&Profile, Wire)]) {
    let mut targets = Vec::new();
    for (stage, who) in [(DETECTION, "every surviving"), (FIRST, "the first")] {
        println!("\nBlackout -> DOWN committed at {who} voter (nearest-rank percentiles)\n");
        println!("| profile | trials | p50 (ms) | p99 (ms) | max (ms) | mean (ms) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (p, trials) in lat {
            let (n, p50, p99, max, mean) = summary(trials.iter().map(|t| t[stage]));
            row!(p.0, n, f1(p50), f1(p99), f1(max), f1(mean));
            if stage == DETECTION {
                targets.push((format!("{} detection p99", p.0), p99, p.2, "ms"));
            }
        }
    }
    println!("\nWhere the time goes (ms after the blackout; recovery: after the restart began)\n");
    println!("| profile | stage | p50 | max | mean |\n|---|---|---:|---:|---:|");
    for (p, trials) in lat {
        for (i, stage) in STAGES.iter().enumerate() {
            let (_, p50, _, max, mean) = summary(trials.iter().map(|t| t[i]));
            row!(p.0, stage, f1(p50), f1(max), f1(mean));
        }
    }
    let (nonce, sent_us) = (u64::MAX / 3, 5 << 20); // a random nonce, 5 s after start
    let opinion = quorate::core::types::Opinion::Up;
    let app = encode_datagram(&Datagram::Probe {
        nonce,
        sent_us,
        opinion,
    })
    .len();
    for (p, (nodes, relay)) in wire {
        let (name, secs) = (p.0, WINDOW.as_secs());
        println!("\nWire, {name} profile: UDP payload bytes, steady probing, window ≥ {secs} s.");
        println!("Connections the other nodes dial to a3 (Indicator only), seen by a relay:\n");
        println!("| direction | datagrams | bytes | B/datagram | bytes in datagrams < {STREAM_B} B | most common sizes |");
        println!("|---|---:|---:|---:|---:|---|");
        let rows = "Pingers -> a3|a3 -> Pingers|other nodes -> a3|a3 -> other nodes".split('|');
        let h: Vec<_> = relay.iter().map(sizes).collect();
        for (what, ([n, b, small], _, top)) in rows.zip(&h) {
            row!(what, n, b, f1(*b as f64 / *n as f64), small, top);
        }
        let answers = nodes[0].3;
        let per = |b: u64| b as f64 / answers as f64;
        println!("\na3 answered {answers} probes. Per probe, on the Pingers' connections to a3:");
        for (what, i) in [("every datagram", 1), ("datagrams without stream data", 2)] {
            let (t, b) = (per(h[0].0[i]), per(h[1].0[i]));
            let s = t + b;
            println!("- {what}: {t:.1} B towards a3 + {b:.1} B back = {s:.1} B");
        }
        let (pr, an, ip) = (h[0].1, h[1].1, h[0].1 + IP_UDP);
        print!("- probe datagram {pr} B, answer {an} B (the most common sizes); ");
        println!("the encoded probe is {app} B of it; {ip} B with IPv4+UDP headers");
        println!("\nEvery node, all its connections (mesh counters: status, votes, keep-alives, ACKs):\n");
        println!("| node | roles | probes sent | answers sent | datagrams tx | bytes tx | B/datagram | tx B/probe | tx B/answer |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for (node, roles, ps, ans, dg, b) in nodes {
            let [d, q, r] = [dg, ps, ans].map(|n| *b as f64 / *n as f64);
            row!(node, roles, ps, ans, dg, b, f1(d), f1(q), f1(r));
            if node == "c1" {
                let what = format!("{name} c1 (Pinger only) tx per probe sent, all its traffic");
                targets.push((what, q, TARGET_B, "B"));
            }
        }
        targets.push((format!("{name} probe datagram"), pr as f64, TARGET_B, "B"));
        let what = format!("{name} Pinger -> Indicator per probe, ACK-only packets included");
        targets.push((what, per(h[0].0[2]), TARGET_B, "B"));
    }
    println!("\nTargets\n");
    for (what, value, target, unit) in targets {
        let (by, pc) = (value - target, (value - target) / target * 100.0);
        let how = match by <= 0.0 {
            true => format!("≤ {target} {unit}: met, {:.1} {unit} to spare", -by),
            false => format!("> {target} {unit}: MISSED by {by:.1} {unit} ({pc:.1} %)"),
        };
        println!("- {what}: {value:.1} {unit} {how}");
    }
}

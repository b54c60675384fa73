//! quorate's blackout detection next to BIRD 2's BFD, measured in the same run on the same
//! machine (so under the same load).
//!
//! BFD: two BIRD instances with `protocol bfd` (one `neighbor` session) in the network
//! namespaces bfd-cmp-1 and bfd-cmp-2 over a veth pair; each trial waits for the session to
//! be Up, waits a random 0-1 s, cuts 2 -> 1 with an nftables drop on 1's input hook (through a
//! resident `nft -i`, so no process start lands in the figure) and times until BIRD 1 logs the
//! session Up -> Down (read from its stderr as the line arrives), at 20 ms x 3 and 100 ms x 5.
//! quorate: the three-site loopback fleet of config/three-sites-fast.toml (20 ms x 3) and of
//! config/three-sites.toml (DRL, 100 ms x 5); blackout of site a (every node stopped) -> DOWN
//! verdict committed at every surviving voter, as benches/blackout.rs measures it.
//!
//!   sudo cargo bench --bench bfd_compare
//!   BFD_TRIALS=40 cargo bench --bench bfd_compare
//!
//! Env: BFD_TRIALS (trials per detector, default 20), BFD_SEED (default 1). Needs root, `ip`,
//! `nft` and BIRD 2 (`bird`); without them it says what is missing and exits 0. The namespaces,
//! their veth pair, the nftables table and the BIRD and nft processes are removed at the end,
//! also on failure; leftovers of a killed run are removed at the start.

use anyhow::{bail, Context, Result};
use quorate::core::types::SiteId;
use quorate::demo::{THREE_SITES, THREE_SITES_FAST};
use quorate::localfleet::{relocate, LocalFleet};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/report.rs"]
mod report;
use report::{f1, summary};
#[path = "common/fleet.rs"]
mod fleet;

const NS: [&str; 2] = ["bfd-cmp-1", "bfd-cmp-2"];
const VETH: [&str; 2] = ["bfdc1", "bfdc2"];
const ADDR: [&str; 2] = ["10.254.213.1", "10.254.213.2"];
/// The loopback range of the quorate fleets (127.47.S.N).
const OCTET: u8 = 47;
const WAIT: Duration = Duration::from_secs(20);

fn env(name: &str, default: u64) -> Result<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().with_context(|| format!("{name}={v}")))
        .transpose()
        .map(|v| v.unwrap_or(default))
}

fn main() -> Result<()> {
    let trials = env("BFD_TRIALS", 20)? as usize;
    let seed = env("BFD_SEED", 1)?;
    if let Some(why) = missing() {
        println!("bfd_compare: skipped: {why}");
        return Ok(());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bfd_compare: {trials} trials per detector, seed {seed}, load average at start {load}"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    {
        let mut bed = BfdBed::up()?;
        for (interval, mult) in [(20, 3), (100, 5)] {
            let name = if interval == 20 {
                "BIRD BFD 20 ms x 3"
            } else {
                "BIRD BFD 100 ms x 5"
            };
            rows.push((name, bed.trials(interval, mult, trials, &mut rng, name)?));
        }
    } // the namespaces go here, before the fleets start
    let rt = tokio::runtime::Runtime::new()?;
    for (name, text) in [
        ("quorate fast 20 ms x 3", THREE_SITES_FAST),
        ("quorate DRL 100 ms x 5", THREE_SITES),
    ] {
        let v = rt.block_on(quorate_trials(text, trials, &mut rng, name))?;
        rows.push((name, v));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    report(&rows, load.trim());
    Ok(())
}

/// Why the bench cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (network namespaces, nftables); run it with sudo".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("bird", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{tool}` not found (Debian: iproute2, nftables, bird2)"
            ));
        }
    }
    None
}

async fn quorate_trials(
    text: &str,
    trials: usize,
    rng: &mut StdRng,
    label: &str,
) -> Result<Vec<f64>> {
    let mut f = LocalFleet::start(&relocate(text, OCTET), None, false).await?;
    let mut w = fleet::Watcher::new(&mut f)?;
    fleet::settle(&f, "start").await?;
    let r = fleet::blackouts(&mut f, &mut w, &SiteId::from("a"), trials, rng, label).await;
    f.shutdown().await;
    r?;
    if !w.trials.false_verdicts.is_empty() {
        bail!("{label}: false verdicts {:?}", w.trials.false_verdicts);
    }
    Ok(w.trials.detection_ms)
}

fn run(args: &[&str]) -> Result<()> {
    let o = Command::new(args[0]).args(&args[1..]).output()?;
    if !o.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the namespaces (with the veth pair and the nftables table in them); quiet when
/// there is nothing to remove.
fn remove_namespaces() {
    for ns in NS {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces joined by a veth pair, a resident `nft -i` in the first, and the BIRD pair
/// of the current profile. Dropping it kills the processes and removes the namespaces.
struct BfdBed {
    dir: tempfile::TempDir,
    nft: Option<(Child, ChildStdin)>,
    birds: Vec<Child>,
    /// BIRD 1's stderr lines, stamped when read.
    log: Option<mpsc::Receiver<(Instant, String)>>,
}

impl Drop for BfdBed {
    fn drop(&mut self) {
        self.stop_birds();
        if let Some((mut child, stdin)) = self.nft.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_namespaces();
    }
}

impl BfdBed {
    fn up() -> Result<BfdBed> {
        remove_namespaces();
        let mut bed = BfdBed {
            dir: tempfile::Builder::new().prefix("bfd-cmp-").tempdir()?,
            nft: None,
            birds: Vec::new(),
            log: None,
        };
        for ns in NS {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let [v1, v2] = VETH;
        run(&["ip", "link", "add", v1, "type", "veth", "peer", "name", v2])?;
        for i in 0..2 {
            run(&["ip", "link", "set", VETH[i], "netns", NS[i]])?;
            let cidr = format!("{}/30", ADDR[i]);
            run(&["ip", "-n", NS[i], "addr", "add", &cidr, "dev", VETH[i]])?;
            run(&["ip", "-n", NS[i], "link", "set", VETH[i], "up"])?;
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", NS[0], "nft", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().context("nft stdin")?;
        bed.nft = Some((child, stdin));
        bed.nft("add table inet bfdcmp")?;
        bed.nft(
            "add chain inet bfdcmp input { type filter hook input priority 0; policy accept; }",
        )?;
        Ok(bed)
    }

    fn nft(&mut self, line: &str) -> Result<()> {
        let (_, stdin) = self.nft.as_mut().context("nft not running")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    fn stop_birds(&mut self) {
        for mut b in self.birds.drain(..) {
            let _ = b.kill();
            let _ = b.wait();
        }
        self.log = None;
    }

    fn start_birds(&mut self, interval_ms: u64, mult: u32) -> Result<()> {
        self.stop_birds();
        let (tx, rx) = mpsc::channel();
        for (i, ns) in NS.iter().enumerate() {
            let conf = self.dir.path().join(format!("bird{i}.conf"));
            std::fs::write(&conf, bird_conf(i, interval_ms, mult))?;
            let ctl = self.dir.path().join(format!("bird{i}.ctl"));
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "bird", "-f", "-c"])
                .arg(&conf)
                .arg("-s")
                .arg(&ctl)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let err = child.stderr.take().context("bird stderr")?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    if i == 0 && tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
            self.birds.push(child);
        }
        self.log = Some(rx);
        Ok(())
    }

    /// Waits for a log line of BIRD 1 containing `what`; returns when it was read.
    fn wait_for(&self, what: &str) -> Result<Instant> {
        let log = self.log.as_ref().context("BIRD not running")?;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok((at, line)) if line.contains(what) => return Ok(at),
                Ok(_) => {}
                Err(_) => bail!("BIRD never logged `{what}` within {} s", WAIT.as_secs()),
            }
        }
    }

    fn drain(&self) {
        if let Some(log) = &self.log {
            while log.try_recv().is_ok() {}
        }
    }

    fn trials(
        &mut self,
        interval_ms: u64,
        mult: u32,
        trials: usize,
        rng: &mut StdRng,
        label: &str,
    ) -> Result<Vec<f64>> {
        self.start_birds(interval_ms, mult)?;
        self.wait_for("to Up")?;
        let cut = format!("add rule inet bfdcmp input ip saddr {} drop", ADDR[1]);
        let mut out = Vec::new();
        for i in 1..=trials {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1000)));
            self.drain();
            let t0 = Instant::now();
            self.nft(&cut)?;
            let down = self.wait_for("from Up to Down")?;
            let ms = down.saturating_duration_since(t0).as_secs_f64() * 1000.0;
            println!("{label} trial {i:2}: cut -> session down {ms:6.1} ms");
            out.push(ms);
            self.nft("flush chain inet bfdcmp input")?;
            self.wait_for("to Up")?;
        }
        self.stop_birds();
        Ok(out)
    }
}

fn bird_conf(i: usize, interval_ms: u64, mult: u32) -> String {
    let (me, peer, dev) = (ADDR[i], ADDR[1 - i], VETH[i]);
    format!(
        "router id {me};\nlog stderr all;\nprotocol device {{}}\nprotocol bfd {{\n  debug {{ states, events }};\n  \
         interface \"{dev}\" {{ interval {interval_ms} ms; multiplier {mult}; }};\n  neighbor {peer};\n}}\n"
    )
}

fn report(rows: &[(&str, Vec<f64>)], load: &str) {
    println!("\nBlackout -> detected (BFD: session down at the peer; quorate: DOWN verdict committed at every surviving voter), nearest-rank percentiles; load average at the end {load}\n");
    println!("| detector | trials | p50 (ms) | p99 (ms) | max (ms) | mean (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut s = Vec::new();
    for (name, v) in rows {
        let (n, p50, p99, max, mean) = summary(v.iter().copied());
        row!(name, n, f1(p50), f1(p99), f1(max), f1(mean));
        s.push((p50, p99));
    }
    if s.len() == 4 {
        println!("\n| ratio quorate / BIRD BFD | p50 | p99 |\n|---|---:|---:|");
        for (name, q, b) in [("fast / 20 ms x 3", 2, 0), ("DRL / 100 ms x 5", 3, 1)] {
            row!(
                name,
                format!("{:.2}", s[q].0 / s[b].0),
                format!("{:.2}", s[q].1 / s[b].1)
            );
        }
    }
}

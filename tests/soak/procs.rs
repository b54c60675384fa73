//! Resident memory and open file descriptors of every node process, per incarnation: a
//! process restarted by the killer (or by the restore after a blackout) is judged from its
//! own start, not from the one it replaced.

use crate::fleet::{node_pid, NODES};
use serde::Serialize;

/// A process is measured "at start" once it has run this long: connections to every peer
/// are open, the startup grace is over and the store is loaded, so the start figure is the
/// process's working size rather than its first milliseconds.
pub const WARM_UP_MS: i64 = 20_000;
/// How far the end figure may be from the start figure, either way.
pub const FLAT_WITHIN: f64 = 0.10;
/// The fd figures at start and end are the fewest open over this many samples. A's
/// Indicators run their service check as a child process every 200 ms, and while it runs
/// the node holds its pipes and pidfd: a sample may catch three more fds for a few
/// milliseconds. A leak raises the floor; a passing child does not.
pub const FD_FLOOR_SAMPLES: usize = 5;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    pub rss_kib: u64,
    pub fds: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Incarnation {
    pub node: String,
    pub pid: u32,
    /// Who started it: "up", "killer" or "restore" (after a blackout).
    pub started_by: String,
    pub first_seen_ms: i64,
    /// The first sample at least WARM_UP_MS after it was first seen (fds: the floor of
    /// the first FD_FLOOR_SAMPLES from there).
    pub start: Option<Sample>,
    /// The newest sample (at the end of the soak, or before it was killed; fds: the floor
    /// of the newest FD_FLOOR_SAMPLES).
    pub end: Option<Sample>,
    pub max_rss_kib: u64,
    pub max_fds: u64,
    pub samples: u64,
    /// Samples taken for the start figure's fd floor (up to FD_FLOOR_SAMPLES).
    #[serde(skip)]
    start_fd_samples: usize,
    /// The fds of the newest FD_FLOOR_SAMPLES samples, for the end figure's floor.
    #[serde(skip)]
    recent_fds: std::collections::VecDeque<u64>,
    /// Alive when the soak ended.
    pub alive_at_end: bool,
}

fn sample(pid: u32, at_ms: i64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at_ms,
        rss_kib,
        fds,
    })
}

#[derive(Default)]
pub struct Procs {
    pub list: Vec<Incarnation>,
    /// The cause of the next new process of each node, told by whoever starts it.
    expected: Vec<(String, String)>,
}

impl Procs {
    /// The next new process of `node` is started by `by`.
    pub fn expect(&mut self, node: &str, by: &str) {
        self.expected.retain(|(n, _)| n != node);
        self.expected.push((node.to_string(), by.to_string()));
    }

    /// Samples every running node; a pid not seen before starts a new incarnation.
    pub fn sample_all(&mut self, now_ms: i64) {
        for (node, _) in NODES {
            let Some(pid) = node_pid(node) else { continue };
            let i = match self
                .list
                .iter()
                .position(|x| x.node == node && x.pid == pid)
            {
                Some(i) => i,
                None => {
                    let by = self
                        .expected
                        .iter()
                        .position(|(n, _)| n == node)
                        .map(|i| self.expected.remove(i).1)
                        .unwrap_or_else(|| "up".into());
                    self.list.push(Incarnation {
                        node: node.to_string(),
                        pid,
                        started_by: by,
                        first_seen_ms: now_ms,
                        start: None,
                        end: None,
                        max_rss_kib: 0,
                        max_fds: 0,
                        samples: 0,
                        start_fd_samples: 0,
                        recent_fds: Default::default(),
                        alive_at_end: false,
                    });
                    self.list.len() - 1
                }
            };
            let Some(s) = sample(pid, now_ms) else {
                continue;
            };
            let inc = &mut self.list[i];
            inc.samples += 1;
            inc.max_rss_kib = inc.max_rss_kib.max(s.rss_kib);
            inc.max_fds = inc.max_fds.max(s.fds);
            if inc.start.is_none() && now_ms - inc.first_seen_ms >= WARM_UP_MS {
                inc.start = Some(s);
            }
            if let Some(start) = inc.start.as_mut() {
                if inc.start_fd_samples < FD_FLOOR_SAMPLES {
                    start.fds = start.fds.min(s.fds);
                    inc.start_fd_samples += 1;
                }
            }
            if inc.recent_fds.len() == FD_FLOOR_SAMPLES {
                inc.recent_fds.pop_front();
            }
            inc.recent_fds.push_back(s.fds);
            let floor = inc.recent_fds.iter().copied().min().unwrap_or(s.fds);
            inc.end = Some(Sample { fds: floor, ..s });
        }
    }

    /// Marks the processes running now as alive at the end (after a last sample).
    pub fn finish(&mut self, now_ms: i64) {
        self.sample_all(now_ms);
        for (node, _) in NODES {
            if let Some(pid) = node_pid(node) {
                for inc in self.list.iter_mut() {
                    if inc.node == node && inc.pid == pid {
                        inc.alive_at_end = true;
                    }
                }
            }
        }
    }
}

/// The judgement of one node's process alive at the end.
#[derive(Debug, Serialize)]
pub struct Flatness {
    pub node: String,
    pub pid: u32,
    pub started_by: String,
    pub age_s: f64,
    pub rss_kib: Option<(u64, u64)>,
    pub fds: Option<(u64, u64)>,
    pub rss_change: Option<f64>,
    pub fds_change: Option<f64>,
    /// "flat", "grew"/"shrank" beyond FLAT_WITHIN, or "too young" (restarted less than the
    /// warm-up before the end: there is no start figure to compare with).
    pub judgement: String,
}

pub fn flatness(procs: &Procs, end_ms: i64) -> Vec<Flatness> {
    let change = |a: u64, b: u64| (b as f64 - a as f64) / (a.max(1) as f64);
    procs
        .list
        .iter()
        .filter(|i| i.alive_at_end)
        .map(|i| {
            let pair = i.start.zip(i.end);
            let rss_change = pair.map(|(s, e)| change(s.rss_kib, e.rss_kib));
            let fds_change = pair.map(|(s, e)| change(s.fds, e.fds));
            let judgement = match (rss_change, fds_change) {
                (Some(r), Some(f)) if r.abs() <= FLAT_WITHIN && f.abs() <= FLAT_WITHIN => {
                    "flat".to_string()
                }
                (Some(r), Some(f)) => {
                    let worst = if r.abs() >= f.abs() { r } else { f };
                    let what = if r.abs() >= f.abs() { "RSS" } else { "fds" };
                    let dir = if worst > 0.0 { "grew" } else { "shrank" };
                    format!("{what} {dir} {:+.1} %", worst * 100.0)
                }
                _ => "too young".to_string(),
            };
            Flatness {
                node: i.node.clone(),
                pid: i.pid,
                started_by: i.started_by.clone(),
                age_s: (end_ms - i.first_seen_ms) as f64 / 1000.0,
                rss_kib: pair.map(|(s, e)| (s.rss_kib, e.rss_kib)),
                fds: pair.map(|(s, e)| (s.fds, e.fds)),
                rss_change,
                fds_change,
                judgement,
            }
        })
        .collect()
}

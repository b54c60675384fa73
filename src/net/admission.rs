//! Which connection attempts get a handshake. A TLS handshake costs the server real work
//! before it knows who calls, so attempts from validated addresses (QUIC Retry already
//! proved the caller receives at its source address) are metered by two token buckets: one
//! for the whole node, one per source IP. A behaving peer dials once, and again only after
//! its connection ended; an attempt beyond the buckets is refused before any cryptography.
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Handshakes a single source IP may start in a burst, per node behind that IP.
pub const PER_IP_BURST: f64 = 8.0;
/// Handshakes per second a single source IP may sustain, per node behind that IP.
pub const PER_IP_RATE: f64 = 4.0;
/// Handshakes per second the whole node accepts on top of one per peer.
pub const GLOBAL_RATE_BASE: f64 = 32.0;
/// Source IPs remembered at most; only full buckets (no different from a fresh one) are
/// forgotten, so the bound costs nobody a token.
const MAX_TRACKED_IPS: usize = 4096;

#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            burst,
            rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// Why an attempt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// This source IP started too many handshakes.
    SourceIp,
    /// The node as a whole is receiving too many handshakes.
    Global,
}

/// The node's handshake meter.
#[derive(Debug)]
pub struct Admission {
    global: Bucket,
    per_ip: HashMap<IpAddr, Bucket>,
    /// How many peers of the fleet dial from each IP (several nodes may share one).
    nodes_at: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(now: Instant) -> Admission {
        let mut a = Admission {
            global: Bucket::full(GLOBAL_RATE_BASE, GLOBAL_RATE_BASE, now),
            per_ip: HashMap::new(),
            nodes_at: HashMap::new(),
        };
        a.set_peers(std::iter::empty(), now);
        a
    }

    /// Sizes the buckets for the fleet: after this node restarts every peer dials at once, so
    /// the global burst admits all of them twice over.
    pub fn set_peers(&mut self, peer_ips: impl Iterator<Item = IpAddr>, now: Instant) {
        self.nodes_at.clear();
        for ip in peer_ips {
            *self.nodes_at.entry(ip).or_default() += 1;
        }
        let peers = self.nodes_at.values().sum::<usize>() as f64;
        self.global.refill(now);
        let burst = 2.0 * peers + GLOBAL_RATE_BASE;
        // A larger fleet may dial at once right away; a smaller one keeps what it has left.
        self.global.tokens = (self.global.tokens + (burst - self.global.burst).max(0.0)).min(burst);
        self.global.burst = burst;
        self.global.rate = peers + GLOBAL_RATE_BASE;
        self.per_ip.clear();
    }

    /// Takes a token of `ip`'s bucket and of the global one, or refuses without taking any.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let weight = self.nodes_at.get(&ip).copied().unwrap_or(1).max(1) as f64;
        if self.per_ip.len() >= MAX_TRACKED_IPS && !self.per_ip.contains_key(&ip) {
            self.per_ip.retain(|_, b| {
                b.refill(now);
                b.tokens < b.burst
            });
        }
        let bucket = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| Bucket::full(PER_IP_BURST * weight, PER_IP_RATE * weight, now));
        if !bucket.has_token(now) {
            return Err(Throttled::SourceIp);
        }
        if !self.global.has_token(now) {
            return Err(Throttled::Global);
        }
        bucket.take();
        self.global.take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0);
        let x = ip("10.0.0.9");
        for _ in 0..PER_IP_BURST as usize {
            assert_eq!(a.admit(x, t0), Ok(()));
        }
        assert_eq!(a.admit(x, t0), Err(Throttled::SourceIp));
        // Another source is not held back by the first one's excess.
        assert_eq!(a.admit(ip("10.0.0.10"), t0), Ok(()));
        // A quarter second later the first has one token again (4 per second).
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(a.admit(x, t1), Ok(()));
        assert_eq!(a.admit(x, t1), Err(Throttled::SourceIp));
    }

    #[test]
    fn an_ip_shared_by_several_peers_gets_an_allowance_for_each() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0);
        let shared = ip("192.0.2.1");
        a.set_peers([shared, shared, shared].into_iter(), t0);
        for _ in 0..(3.0 * PER_IP_BURST) as usize {
            assert_eq!(a.admit(shared, t0), Ok(()));
        }
        assert_eq!(a.admit(shared, t0), Err(Throttled::SourceIp));
    }

    #[test]
    fn many_sources_together_meet_the_global_bucket() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0);
        let peers: Vec<IpAddr> = (1..=10).map(|i| ip(&format!("10.1.0.{i}"))).collect();
        a.set_peers(peers.iter().copied(), t0);
        let burst = (2 * peers.len()) as f64 + GLOBAL_RATE_BASE;
        let mut admitted = 0;
        for i in 0..200u32 {
            let src = IpAddr::from([10, 2, (i / 250) as u8, (i % 250) as u8]);
            if a.admit(src, t0).is_ok() {
                admitted += 1;
            } else {
                assert_eq!(a.admit(src, t0), Err(Throttled::Global));
            }
        }
        assert_eq!(admitted as f64, burst);
        // Every peer dialing right after a restart fits in what is left of a second later.
        let t1 = t0 + Duration::from_secs(1);
        for p in &peers {
            assert_eq!(a.admit(*p, t1), Ok(()));
        }
    }
}

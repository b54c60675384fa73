//! A UDP relay that can cut, delay and drop traffic between sites on one machine.
//!
//! Each route listens on a `public` address (what the fleet file names as a node's `mesh`) and
//! forwards to the node's real `upstream` address (its `mesh_bind`). Every client source
//! address gets its own upstream socket, so the node sees one peer per client and its replies
//! find their way back to the right client through the public socket. On top of that the
//! relay injects the faults a WAN has and loopback has not: cuts between client IPs and public
//! addresses, a one-way delay and seeded random loss, for every packet or per link between
//! client IPs and public addresses (a WAN between sites, none inside a site). Sessions live
//! as long as the relay: it is meant for tests and testbeds with a bounded set of clients.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::hash_map::{Entry, HashMap};
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Packets relayed and dropped since the start, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub forwarded: u64,
    /// Dropped by a cut or by random loss.
    pub dropped: u64,
}

/// The one-way delay and loss of a link between a client IP and a public address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    pub delay: Duration,
    /// 0..=100
    pub loss_percent: u8,
}

/// The faults in force, consulted for every packet, and what they did.
struct State {
    /// (client IP, public address) pairs whose packets are dropped both ways.
    blocked: HashSet<(IpAddr, SocketAddr)>,
    /// Per (client IP, public address) faults, in place of `delay` and `loss_percent`.
    links: HashMap<(IpAddr, SocketAddr), LinkFaults>,
    delay: Duration,
    loss_percent: u8,
    rng: StdRng,
    stats: RelayStats,
}

impl State {
    fn new() -> State {
        State {
            blocked: HashSet::new(),
            links: HashMap::new(),
            delay: Duration::ZERO,
            loss_percent: 0,
            rng: StdRng::seed_from_u64(0),
            stats: RelayStats::default(),
        }
    }

    /// The fate of one packet between `client` and `public`: None to drop it, else its delay.
    fn admit(&mut self, client: IpAddr, public: SocketAddr) -> Option<Duration> {
        let link = self.links.get(&(client, public)).copied();
        let (delay, loss) = link.map_or((self.delay, self.loss_percent), |l| {
            (l.delay, l.loss_percent)
        });
        let lost = loss > 0 && self.rng.random_range(0..100u8) < loss;
        if lost || self.blocked.contains(&(client, public)) {
            self.stats.dropped += 1;
            return None;
        }
        self.stats.forwarded += 1;
        Some(delay)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A packet waiting out its delay: when it is due, and how and where it goes.
type Delayed = (Instant, Arc<UdpSocket>, SocketAddr, Vec<u8>);

/// What the tasks of one route share.
#[derive(Clone)]
struct Line {
    state: Arc<Mutex<State>>,
    public: SocketAddr,
    delayed: mpsc::UnboundedSender<Delayed>,
}

impl Line {
    /// Sends `b` from `socket` to `to`, unless the faults between `client` and this route
    /// drop it.
    async fn forward(&self, client: IpAddr, socket: &Arc<UdpSocket>, to: SocketAddr, b: &[u8]) {
        let fate = lock(&self.state).admit(client, self.public);
        match fate {
            None => {}
            Some(d) if d.is_zero() => drop(socket.send_to(b, to).await),
            Some(d) => drop(
                self.delayed
                    .send((Instant::now() + d, socket.clone(), to, b.into())),
            ),
        }
    }
}

/// The running relay. Dropping it (or `shutdown`) stops every task and frees every socket.
pub struct Relay {
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    routes: JoinSet<()>,
    public: Vec<SocketAddr>,
}

impl Relay {
    /// Binds every `public` address (port 0: any free port, see `public_addrs`) and forwards
    /// what arrives there to its `upstream`.
    pub async fn start(routes: Vec<(SocketAddr, SocketAddr)>) -> std::io::Result<Relay> {
        let state = Arc::new(Mutex::new(State::new()));
        // Bind everything first, so that a failure leaves nothing running.
        let mut bound = Vec::new();
        for (public, upstream) in routes {
            let socket = Arc::new(UdpSocket::bind(public).await?);
            bound.push((socket.local_addr()?, socket, upstream));
        }
        let (stop, _) = watch::channel(false);
        let mut routes = JoinSet::new();
        let public = bound.iter().map(|(p, _, _)| *p).collect();
        for (public, socket, upstream) in bound {
            routes.spawn(route(
                state.clone(),
                public,
                socket,
                upstream,
                stop.subscribe(),
            ));
        }
        Ok(Relay {
            state,
            stop,
            routes,
            public,
        })
    }

    /// The bound public addresses, in the order of the routes.
    pub fn public_addrs(&self) -> &[SocketAddr] {
        &self.public
    }

    /// Drops every packet, both ways, between clients whose source IP is in `from` and the
    /// public addresses `to`: a cut between sites. Adds to the cuts already in force.
    pub fn block(&self, from: &[IpAddr], to: &[SocketAddr]) {
        let mut s = lock(&self.state);
        for ip in from {
            s.blocked.extend(to.iter().map(|public| (*ip, *public)));
        }
    }

    /// Lifts every cut.
    pub fn unblock_all(&self) {
        lock(&self.state).blocked.clear();
    }

    /// Holds every packet, both directions, this long before forwarding it. Packets already
    /// waiting keep their delay, so lowering it may bunch a few of them up.
    pub fn set_delay(&self, one_way: Duration) {
        lock(&self.state).delay = one_way;
    }

    /// Gives the links between clients whose source IP is in `from` and the public addresses
    /// `to` their own delay and loss (both directions), in place of `set_delay` and
    /// `set_loss`'s: a WAN between two sites while each site's own traffic stays fast. Loss
    /// draws from the RNG `set_loss` seeded.
    pub fn set_link(&self, from: &[IpAddr], to: &[SocketAddr], faults: LinkFaults) {
        let mut s = lock(&self.state);
        for ip in from {
            s.links
                .extend(to.iter().map(|public| ((*ip, *public), faults)));
        }
    }

    /// Forgets every `set_link`.
    pub fn clear_links(&self) {
        lock(&self.state).links.clear();
    }

    /// Drops `percent` (0..=100) of the packets, both directions, drawn from a `seed`ed RNG.
    pub fn set_loss(&self, percent: u8, seed: u64) {
        let mut s = lock(&self.state);
        s.loss_percent = percent.min(100);
        s.rng = StdRng::seed_from_u64(seed);
    }

    pub fn stats(&self) -> RelayStats {
        lock(&self.state).stats
    }

    /// Stops every task and waits until every socket is closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.routes.join_next().await.is_some() {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropping `routes` aborts the route tasks, and with them the session tasks they own.
        let _ = self.stop.send(true);
    }
}

/// Forwards client packets from one public socket to the node, one upstream socket per client.
async fn route(
    state: Arc<Mutex<State>>,
    public: SocketAddr,
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    // Session readers and the delay line; aborted when this task ends or is dropped.
    let mut tasks = JoinSet::new();
    let (delayed, mut delay_rx) = mpsc::unbounded_channel::<Delayed>();
    tasks.spawn(async move {
        // Each at its due time: packets of links with different delays overtake each other.
        // (due, arrival number): equal due times keep their arrival order.
        let mut waiting = BinaryHeap::new();
        let mut packets = HashMap::new();
        let mut arrived = 0u64;
        loop {
            let next = waiting.peek().map(|&Reverse(k): &Reverse<(Instant, u64)>| k.0);
            tokio::select! {
                got = delay_rx.recv() => {
                    let Some((due, socket, to, bytes)) = got else { break };
                    arrived += 1;
                    waiting.push(Reverse((due, arrived)));
                    packets.insert(arrived, (socket, to, bytes));
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    let Some(Reverse((_, n))) = waiting.pop() else { continue };
                    if let Some((socket, to, bytes)) = packets.remove(&n) {
                        let _ = socket.send_to(&bytes, to).await;
                    }
                }
            }
        }
    });
    let line = Line {
        state,
        public,
        delayed,
    };
    let mut sessions: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = tokio::select! {
            // Only ever set to true; an error means the handle is gone.
            _ = stop.changed() => break,
            // An error (e.g. a late ICMP report) concerns one packet, not the socket.
            r = socket.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => continue },
        };
        let session = match sessions.entry(client) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                // Bound on the public address's IP, port 0: the node sees one peer per client.
                let Ok(session) = UdpSocket::bind((public.ip(), 0)).await.map(Arc::new) else {
                    continue;
                };
                let (line, public_socket) = (line.clone(), socket.clone());
                let s = session.clone();
                // The node's replies to this client go back through the public socket.
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        match s.recv_from(&mut buf).await {
                            // Only the node may answer through this session.
                            Ok((n, from)) if from == upstream => {
                                let reply = &buf[..n];
                                line.forward(client.ip(), &public_socket, client, reply)
                                    .await
                            }
                            Ok(_) | Err(_) => {}
                        }
                    }
                });
                e.insert(session).clone()
            }
        };
        line.forward(client.ip(), &session, upstream, &buf[..len])
            .await;
    }
    tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    /// Sends `msg` to `to` and returns the reply and where it came from.
    async fn ask(c: &UdpSocket, to: SocketAddr, msg: &str, wait: Duration) -> Option<String> {
        c.send_to(msg.as_bytes(), to).await.unwrap();
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(wait, c.recv_from(&mut buf)).await;
        let (n, from) = got.ok()?.ok()?;
        Some(format!("{:?} from {from}", &buf[..n]))
    }

    #[tokio::test]
    async fn forwards_cuts_and_delays_per_client() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let route = ("127.0.0.1:0".parse().unwrap(), echo.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let relay = Relay::start(vec![route]).await.unwrap();
        let public = relay.public_addrs()[0];
        let echo = |m: &str| Some(format!("{:?} from {public}", m.as_bytes()));
        let c1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c2 = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        assert_eq!(ask(&c1, public, "1", WAIT).await, echo("1"));
        assert_eq!(ask(&c2, public, "2", WAIT).await, echo("2"));
        let s = relay.stats();
        assert_eq!((s.forwarded, s.dropped), (4, 0));

        relay.block(&["127.0.0.2".parse().unwrap()], &[public]);
        let short = Duration::from_millis(200);
        assert_eq!(ask(&c2, public, "x", short).await, None);
        assert_eq!(ask(&c1, public, "3", WAIT).await, echo("3"));
        assert_eq!(relay.stats().dropped, 1);
        relay.unblock_all();
        assert_eq!(ask(&c2, public, "4", WAIT).await, echo("4"));

        relay.set_delay(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(ask(&c1, public, "5", WAIT).await, echo("5"));
        assert!(t.elapsed() >= Duration::from_millis(200));

        // A link of its own for c2: slow; c1's packets, 20 ms each way, overtake c2's in the
        // same delay line.
        relay.set_delay(Duration::from_millis(20));
        let slow = LinkFaults {
            delay: Duration::from_millis(150),
            loss_percent: 0,
        };
        relay.set_link(&["127.0.0.2".parse().unwrap()], &[public], slow);
        let t = Instant::now();
        c2.send_to(b"6", public).await.unwrap();
        assert_eq!(ask(&c1, public, "7", WAIT).await, echo("7"));
        let fast = t.elapsed();
        assert!(fast >= Duration::from_millis(40), "{fast:?}");
        assert!(
            fast < Duration::from_millis(150),
            "c1 was held behind c2: {fast:?}"
        );
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(WAIT, c2.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"6");
        assert!(t.elapsed() >= Duration::from_millis(300), "150 ms each way");
        relay.clear_links();

        relay.shutdown().await;
        drop(std::net::UdpSocket::bind(public).expect("port released"));
        server.abort();
    }

    #[test]
    fn loss_is_seeded() {
        let (client, public) = ("127.0.0.2".parse().unwrap(), "127.0.0.1:9".parse().unwrap());
        let fates = |seed| {
            let mut s = State::new();
            (s.loss_percent, s.rng) = (30, StdRng::seed_from_u64(seed));
            let fates: Vec<_> = (0..200).map(|_| s.admit(client, public)).collect();
            assert_eq!(s.stats.forwarded + s.stats.dropped, 200);
            assert!((30..=90).contains(&s.stats.dropped), "{:?}", s.stats);
            fates
        };
        assert_eq!(fates(42), fates(42), "the same seed loses the same packets");
        assert_ne!(fates(42), fates(43));
    }
}

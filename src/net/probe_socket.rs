//! The mesh's UDP socket as quinn sees it, with probe packets taken out: every received
//! datagram whose first byte has the QUIC fixed bit (0x40) clear is a probe packet, handled
//! right here in the receive path (a probe answered through the same socket, an answer handed
//! to the inbox), and never reaches quinn. Everything else passes through untouched. So
//! probes cost one MAC and at most one system call per packet instead of a QUIC packet each
//! way (a Pinger's round is sent in batches, `probe_batch`), and operators open no second
//! port.
//!
//! It owns the socket and the buffers of its batches; the sessions that seal and check the
//! packets are `probe_sessions`'.

use super::inbox::Answer;
use super::probe::{self, PROBE_LEN};
use super::probe_batch::{BatchSender, Datagram};
use super::probe_sessions::{OutgoingProbe, ProbeSessions, Reply};
use super::shared::bump;
use crate::core::types::NodeId;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Receive batches made only of probe packets handled in one `poll_recv` before quinn gets
/// its turn back (it then simply calls again): bounds the time spent here per call.
const PROBE_ONLY_BATCHES: usize = 32;

/// The size of each datagram a `RecvMeta` holds: several of `stride` bytes (GRO, the last
/// one shorter), or one of `len`.
pub(super) fn stride(meta: &RecvMeta) -> usize {
    if meta.stride == 0 {
        meta.len
    } else {
        meta.stride
    }
}

/// A packet the receive path sends back once the sessions are unlocked.
#[derive(Debug)]
struct SendBack {
    to: SocketAddr,
    src_ip: Option<IpAddr>,
    packet: [u8; PROBE_LEN],
    /// A Ready packet (sent from the socket's default address), else a probe answer (from
    /// the address the probe came to).
    ready: bool,
}

/// What one receive batch leaves for after the sessions' lock, kept between batches so that
/// a batch allocates nothing. Only quinn's endpoint driver receives, so its lock is never
/// contended.
#[derive(Default, Debug)]
struct ReceiveScratch {
    replies: Vec<SendBack>,
    answers: Vec<(NodeId, Answer)>,
}

/// What a Pinger's round of probes is sealed into, kept between rounds: each probe with its
/// index in the round.
type SealScratch = Vec<(usize, SocketAddr, [u8; PROBE_LEN])>;

impl Datagram for (usize, SocketAddr, [u8; PROBE_LEN]) {
    fn destination(&self) -> SocketAddr {
        self.1
    }

    fn payload(&self) -> &[u8] {
        &self.2
    }
}

/// quinn's socket with the probe packets taken out of what it receives.
#[derive(Debug)]
pub(super) struct ProbeSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// The same socket, for a Pinger's rounds of probes in batches.
    batch: BatchSender,
    sessions: Arc<ProbeSessions>,
    scratch: Mutex<ReceiveScratch>,
    sealed: Mutex<SealScratch>,
}

impl ProbeSocket {
    /// `socket` is the mesh socket: quinn gets it (through `runtime`), with the probe
    /// packets taken out of what it receives.
    pub fn new(
        socket: std::net::UdpSocket,
        runtime: &dyn quinn::Runtime,
        sessions: Arc<ProbeSessions>,
    ) -> io::Result<ProbeSocket> {
        let batch = BatchSender::new(&socket)?;
        let inner = runtime.wrap_udp_socket(socket)?;
        Ok(ProbeSocket {
            inner,
            batch,
            sessions,
            scratch: Mutex::default(),
            sealed: Mutex::default(),
        })
    }

    /// Sends a batch of probes, in as few system calls as the platform allows
    /// (`probe_batch`); returns the indexes of those not sent (counted), for lack of a
    /// session or because the socket refused them, in order.
    pub fn send_probes(&self, probes: &[OutgoingProbe]) -> Vec<usize> {
        let c = &self.sessions.counters;
        let mut not_sent = Vec::new();
        let mut sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        sealed.clear();
        self.sessions
            .seal_probes(probes, &mut sealed, &mut not_sent);
        let sent = self.batch.send(sealed.as_slice(), |i, e| {
            let index = sealed[i].0;
            tracing::debug!(peer = %probes[index].to, error = %e, "probe not sent");
            not_sent.push(index);
        });
        sealed.clear();
        drop(sealed);
        let udp = &c.udp;
        udp[0].fetch_add(sent as u64, Ordering::Relaxed);
        udp[1].fetch_add((sent * PROBE_LEN) as u64, Ordering::Relaxed);
        c.probes_sent.fetch_add(sent as u64, Ordering::Relaxed);
        c.send_failures
            .fetch_add(not_sent.len() as u64, Ordering::Relaxed);
        not_sent.sort_unstable();
        not_sent
    }

    /// Sends a probe to `to` now; false (counted) when there is no session or the socket
    /// refused it.
    pub fn send_probe(&self, to: &NodeId, nonce: u64, sent_us: u64) -> bool {
        let c = &self.sessions.counters;
        let Some((destination, bytes)) = self.sessions.seal_probe(to, nonce, sent_us) else {
            bump(&c.send_failures);
            return false;
        };
        match self.send(destination, None, &bytes) {
            Ok(()) => {
                bump(&c.probes_sent);
                true
            }
            Err(e) => {
                bump(&c.send_failures);
                tracing::debug!(peer = %to, error = %e, "probe not sent");
                false
            }
        }
    }

    /// Sends the Ready packet of a session just opened (best effort: the peer waits a bounded
    /// time).
    pub fn greet(&self, to: SocketAddr, ready: &[u8]) {
        if let Err(e) = self.send(to, None, ready) {
            bump(&self.sessions.counters.send_failures);
            tracing::debug!(%to, error = %e, "probe session ready not sent");
        }
    }

    fn send(
        &self,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        bytes: &[u8],
    ) -> io::Result<()> {
        self.inner.try_send(&Transmit {
            destination,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip,
        })?;
        let udp = &self.sessions.counters.udp;
        bump(&udp[0]);
        udp[1].fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Handles the probe packets among the `n` received datagrams and compacts the rest to
    /// the front of `bufs`/`metas`; returns how many remain for quinn. A `RecvMeta` may hold
    /// several `stride`-sized datagrams (GRO): probe segments are cut out of it.
    ///
    /// The batch's probe packets are checked under one lock of the sessions; what they make
    /// this node send, and the answers for the node (one lock of the inbox, one wake-up), wait
    /// until it is released.
    fn take_probes(&self, bufs: &mut [IoSliceMut<'_>], metas: &mut [RecvMeta], n: usize) -> usize {
        let at = Instant::now();
        let mut kept = 0;
        let (mut datagrams, mut bytes) = (0, 0);
        let mut table = None;
        if metas[..n]
            .iter()
            .zip(bufs.iter())
            .any(|(m, b)| m.len > 0 && probe::is_probe_datagram(b[0]))
        {
            let t = table.insert(self.sessions.lock());
            t.prefetch_received(bufs, metas, n);
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let ReceiveScratch { replies, answers } = &mut *scratch;
        for i in 0..n {
            let meta = metas[i];
            let stride = stride(&meta);
            let buf = &mut bufs[i][..meta.len];
            let (mut read, mut write) = (0, 0);
            while read < meta.len {
                let end = (read + stride).min(meta.len);
                if probe::is_probe_datagram(buf[read]) {
                    datagrams += 1;
                    bytes += end - read;
                    let t = table.get_or_insert_with(|| self.sessions.lock());
                    match self.sessions.receive(t, &buf[read..end], at) {
                        Some(Reply::Answer(packet)) => replies.push(SendBack {
                            to: meta.addr,
                            src_ip: meta.dst_ip,
                            packet,
                            ready: false,
                        }),
                        Some(Reply::Ready(packet)) => replies.push(SendBack {
                            to: meta.addr,
                            src_ip: None,
                            packet,
                            ready: true,
                        }),
                        Some(Reply::Deliver(peer, answer)) => answers.push((peer, answer)),
                        None => {}
                    }
                } else {
                    buf.copy_within(read..end, write);
                    write += end - read;
                }
                read = end;
            }
            if write == 0 {
                continue;
            }
            // The buffers are equal chunks of quinn's receive buffer: swapping the slices
            // moves the datagrams without copying them.
            bufs.swap(kept, i);
            metas[kept] = RecvMeta { len: write, ..meta };
            kept += 1;
        }
        drop(table);
        if datagrams > 0 {
            let udp = &self.sessions.counters.udp;
            udp[2].fetch_add(datagrams, Ordering::Relaxed);
            udp[3].fetch_add(bytes as u64, Ordering::Relaxed);
        }
        for r in replies.drain(..) {
            if r.ready {
                self.greet(r.to, &r.packet);
            } else {
                self.answer(r.to, r.src_ip, &r.packet);
            }
        }
        if !answers.is_empty() {
            let dropped = self.sessions.inbox.push_answers(answers);
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "probe answers dropped: their peers' queues are full"
                );
            }
        }
        kept
    }

    fn answer(&self, to: SocketAddr, src_ip: Option<IpAddr>, answer: &[u8]) {
        let c = &self.sessions.counters;
        match self.send(to, src_ip, answer) {
            Ok(()) => bump(&c.probes_answered_by_me),
            Err(e) => {
                bump(&c.send_failures);
                tracing::debug!(%to, error = %e, "probe answer not sent");
            }
        }
    }
}

/// The inner socket's poller, holding this socket too: a connection's poller lives until the
/// connection has taken a new socket (`Endpoint::rebind`), so the shutdown's wait for the
/// last `ProbeSocket` (`Shared::shutdown`) also waits for every poller, and with them for the
/// socket's descriptor.
#[derive(Debug)]
struct Poller {
    inner: Pin<Box<dyn UdpPoller>>,
    _socket: Arc<ProbeSocket>,
}

impl UdpPoller for Poller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_writable(cx)
    }
}

impl AsyncUdpSocket for ProbeSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            inner: self.inner.clone().create_io_poller(),
            _socket: self,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        for _ in 0..PROBE_ONLY_BATCHES {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let kept = self.take_probes(bufs, meta, n);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
        Poll::Ready(Ok(0))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// One datagram per send: quinn keeps a send buffer per connection sized for this many
    /// segments (up to 10 × MTU, ~14 KiB, held for the connection's life). The mesh's messages
    /// are small, so GSO would save little, while at a thousand connections per node those
    /// buffers are most of its memory.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
#[path = "probe_socket_tests.rs"]
mod tests;

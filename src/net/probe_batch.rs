//! Sends a batch of probe packets in as few system calls as the platform allows. A Pinger's
//! round goes to every Indicator at once, each to a different address: quinn-udp's GSO only
//! batches datagrams to one destination, but Linux `sendmmsg` sends datagrams to many
//! destinations in one call. Elsewhere each packet is its own send.
//!
//! It owns nothing but a second handle on the mesh socket (a duplicated descriptor of the
//! same socket, so the same port and the same buffers); it does not know what a probe is.

use std::io;
use std::net::SocketAddr;

/// Datagrams per `sendmmsg` call. The kernel takes up to 1,024 (UIO_MAXIOV) per call; past a
/// few dozen the call's fixed cost is already spread thin, and a chunk's headers stay small.
pub(super) const CHUNK: usize = 64;

/// One datagram of a batch: where it goes and its bytes.
pub(super) trait Datagram {
    fn destination(&self) -> SocketAddr;
    fn payload(&self) -> &[u8];
}

impl<B: AsRef<[u8]>> Datagram for (SocketAddr, B) {
    fn destination(&self) -> SocketAddr {
        self.0
    }

    fn payload(&self) -> &[u8] {
        self.1.as_ref()
    }
}

/// A second handle on the mesh socket, for batched sends beside quinn's.
#[derive(Debug)]
pub(super) struct BatchSender {
    socket: std::net::UdpSocket,
}

impl BatchSender {
    /// Duplicates the socket's descriptor (the socket is released once both are closed). The
    /// socket is non-blocking already (tokio's); the sends ask for it too.
    pub fn new(socket: &std::net::UdpSocket) -> io::Result<BatchSender> {
        Ok(BatchSender {
            socket: socket.try_clone()?,
        })
    }

    /// Sends `packets` in order, each to its address, and calls `failed` with the index of
    /// every packet not sent and why. Once the socket's send buffer is full (`WouldBlock`),
    /// the rest of the batch fails with it, as a single send would; any other error fails
    /// that packet alone (an unreachable destination, say) and the next ones are still sent.
    /// Returns how many were sent.
    pub fn send<D: Datagram>(
        &self,
        packets: &[D],
        mut failed: impl FnMut(usize, &io::Error),
    ) -> usize {
        let mut sent = 0;
        for (chunk_index, chunk) in packets.chunks(CHUNK).enumerate() {
            let base = chunk_index * CHUNK;
            match self.send_chunk(chunk, |i, e| failed(base + i, e)) {
                Ok(n) => sent += n,
                Err(would_block) => {
                    for i in base + chunk.len()..packets.len() {
                        failed(i, &would_block);
                    }
                    return sent;
                }
            }
        }
        sent
    }

    /// One chunk: Ok(sent), or Err(WouldBlock) once the socket is full (the chunk's unsent
    /// packets were reported as failed already; the caller fails the rest).
    #[cfg(target_os = "linux")]
    fn send_chunk<D: Datagram>(
        &self,
        chunk: &[D],
        mut failed: impl FnMut(usize, &io::Error),
    ) -> Result<usize, io::Error> {
        use rustix::net::addr::SocketAddrArg;
        use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
        use smallvec::SmallVec;
        use std::io::IoSlice;
        // A chunk's headers on the stack (about 14 KiB at 64 datagrams): a round's sixteen
        // chunks allocate nothing.
        type OnStack<T> = SmallVec<[T; CHUNK]>;
        let addrs: OnStack<SocketAddrAny> =
            chunk.iter().map(|d| d.destination().as_any()).collect();
        let iovs: OnStack<[IoSlice<'_>; 1]> =
            chunk.iter().map(|d| [IoSlice::new(d.payload())]).collect();
        // No ancillary data: probes go out with the socket's defaults (no ECN, no source
        // address), as quinn sends them one by one.
        let mut controls: OnStack<SendAncillaryBuffer<'_, '_, '_>> = chunk
            .iter()
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: OnStack<MMsgHdr<'_>> = addrs
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((to, iov), control)| MMsgHdr::new_with_addr(to, iov, control))
            .collect();
        let (mut at, mut sent) = (0, 0);
        while at < msgs.len() {
            // The kernel sends a prefix of the messages: the count, or the error of the first
            // message when it sent none.
            match sendmmsg(&self.socket, &mut msgs[at..], SendFlags::DONTWAIT) {
                Ok(0) => {
                    // Not documented for a non-empty batch; treated as a full socket rather
                    // than spinning.
                    let e = io::Error::from(io::ErrorKind::WouldBlock);
                    (at..msgs.len()).for_each(|i| failed(i, &e));
                    return Err(e);
                }
                Ok(n) => {
                    at += n;
                    sent += n;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    let e = io::Error::from(e);
                    if e.kind() == io::ErrorKind::WouldBlock {
                        (at..msgs.len()).for_each(|i| failed(i, &e));
                        return Err(e);
                    }
                    failed(at, &e);
                    at += 1;
                }
            }
        }
        Ok(sent)
    }

    #[cfg(not(target_os = "linux"))]
    fn send_chunk<D: Datagram>(
        &self,
        chunk: &[D],
        mut failed: impl FnMut(usize, &io::Error),
    ) -> Result<usize, io::Error> {
        let mut sent = 0;
        for (i, d) in chunk.iter().enumerate() {
            match self.socket.send_to(d.payload(), d.destination()) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    (i..chunk.len()).for_each(|j| failed(j, &e));
                    return Err(e);
                }
                Err(e) => failed(i, &e),
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    #[test]
    fn a_batch_of_several_chunks_reaches_every_destination_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        let batch = BatchSender::new(&sender).unwrap();
        let receivers: Vec<UdpSocket> = (0..3).map(|_| receiver()).collect();
        // 150 packets over 3 chunks, round-robin over the receivers, each carrying its index.
        let packets: Vec<(SocketAddr, [u8; 2])> = (0..150u16)
            .map(|i| {
                let to = receivers[usize::from(i) % 3].local_addr().unwrap();
                (to, i.to_be_bytes())
            })
            .collect();
        let mut failures = Vec::new();
        let sent = batch.send(&packets, |i, e| failures.push((i, e.kind())));
        assert_eq!((sent, failures), (150, vec![]));
        for (r, receiver) in receivers.iter().enumerate() {
            let mut buf = [0u8; 8];
            for k in 0..50u16 {
                let (n, from) = receiver.recv_from(&mut buf).unwrap();
                assert_eq!(
                    from,
                    sender.local_addr().unwrap(),
                    "sent from the socket itself"
                );
                assert_eq!(&buf[..n], &(k * 3 + r as u16).to_be_bytes());
            }
        }
    }

    #[test]
    fn a_packet_the_kernel_refuses_fails_alone() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        let batch = BatchSender::new(&sender).unwrap();
        let receiver = receiver();
        let ok = receiver.local_addr().unwrap();
        // An IPv6 destination from an IPv4 socket: refused by the kernel for that one packet.
        let refused: SocketAddr = "[::1]:9".parse().unwrap();
        let packets = [(ok, [1u8]), (refused, [2]), (ok, [3])];
        let mut failures = Vec::new();
        let sent = batch.send(&packets, |i, _| failures.push(i));
        assert_eq!((sent, failures), (2, vec![1]));
        let mut buf = [0u8; 8];
        for expected in [1u8, 3] {
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[expected]);
        }
    }
}

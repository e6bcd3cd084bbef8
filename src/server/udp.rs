//! `--udp`: the echo over UDP (RFC 862's other half), on a thread of its own, and
//! the rules that keep an echo over UDP from being an amplifier or one end of a loop
//! (CVE-1999-0103): the reply is the request's size, some source ports get none, and each
//! address gets a rate.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, info};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::{RESOURCE_PAUSE, Shared};
use crate::echo;
use crate::numbers::thousands;
use crate::platform::{self, Waker};

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
pub const MAX_DATAGRAM: usize = 65_507;

/// The socket's buffers, each way.
const BUFFER: usize = 4 << 20;

/// Source ports never answered: the port a sender cannot have (0), and echo (7), daytime (13),
/// qotd (17), chargen (19) and time (37), which answer anything, so that two such servers
/// cannot be made to answer each other forever.
const REFLECTING_PORTS: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// A peer silent this long is new again when it comes back (its `info` line).
const PEER_MEMORY: Duration = Duration::from_secs(60);
/// Peers and rate buckets remembered at most; past it, the oldest are forgotten first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// Datagrams a second answered per source address.
    pub rate: u32,
}

/// Why a datagram got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// From a port in `REFLECTING_PORTS`.
    Port(u16),
    /// Over `--udp-rate` for its address.
    Rate,
    /// The reply could not be sent (the socket's buffer was full, the peer unreachable).
    Send,
}

/// Datagram totals since the start, for the log's summaries.
#[derive(Default)]
pub(crate) struct Datagrams {
    received: AtomicU64,
    echoed: AtomicU64,
    bytes: AtomicU64,
    by_port: AtomicU64,
    by_rate: AtomicU64,
    by_send: AtomicU64,
}

/// `Datagrams` read at one moment; the difference of two is what happened between.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub received: u64,
    pub echoed: u64,
    pub bytes: u64,
    pub by_port: u64,
    pub by_rate: u64,
    pub by_send: u64,
}

impl Datagrams {
    pub fn counts(&self) -> Counts {
        Counts {
            received: self.received.load(Relaxed),
            echoed: self.echoed.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            by_port: self.by_port.load(Relaxed),
            by_rate: self.by_rate.load(Relaxed),
            by_send: self.by_send.load(Relaxed),
        }
    }

    fn dropped(&self, why: Dropped) {
        match why {
            Dropped::Port(_) => &self.by_port,
            Dropped::Rate => &self.by_rate,
            Dropped::Send => &self.by_send,
        }
        .fetch_add(1, Relaxed);
    }
}

impl Counts {
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            received: self.received - earlier.received,
            echoed: self.echoed - earlier.echoed,
            bytes: self.bytes - earlier.bytes,
            by_port: self.by_port - earlier.by_port,
            by_rate: self.by_rate - earlier.by_rate,
            by_send: self.by_send - earlier.by_send,
        }
    }

    pub fn dropped(self) -> u64 {
        self.by_port + self.by_rate + self.by_send
    }

    /// `dropped 3 (2 over --udp-rate, 1 from a reflecting port)`, or nothing when none were.
    pub fn dropped_by_reason(self) -> String {
        let reasons: Vec<String> = [
            (self.by_rate, "over --udp-rate"),
            (self.by_port, "from a reflecting port"),
            (self.by_send, "unsendable"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{} {why}", thousands(*n)))
        .collect();
        if reasons.is_empty() {
            String::new()
        } else {
            format!(
                ", {} dropped ({})",
                thousands(self.dropped()),
                reasons.join(", ")
            )
        }
    }
}

/// The UDP socket on `addr`, sharing the port with other servers if `reuse_port`.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        platform::set_reuse_port(&socket)?;
    }
    if addr.is_ipv6()
        && let Err(e) = socket.set_only_v6(false)
    {
        debug!("cannot take IPv4 datagrams on {addr}: {e}");
    }
    // Bursts (an open loop's, many flows') wait in the buffer instead of being dropped by
    // the kernel; the system caps the size (Linux: net.core.rmem_max).
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(BUFFER)),
        ("send", socket.set_send_buffer_size(BUFFER)),
    ] {
        if let Err(e) = result {
            debug!("cannot enlarge the UDP {what} buffer: {e}");
        }
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Waiting happens beside the stop's waker.
    socket.set_nonblocking(true)?;
    platform::ignore_unreachable_peers(&socket)?;
    Ok(socket)
}

/// Echoes on `socket` until the server stops, on a thread of its own.
///
/// One thread, not several on the socket: two, on 2 cores, answered a stream of datagrams up
/// to 1.6x faster (150,000/s against 95,000/s) but sent a flow's replies out of order (0.5-2%
/// of them at 150,000/s): bench would blame the network for what the server did. One thread
/// answers rr traffic as fast as TCP (1 flow: 19,300/s against 18,700/s; 50 flows: 118,000/s
/// against 80,000/s), and never reorders.
pub fn serve(
    socket: UdpSocket,
    options: UdpOptions,
    shared: &Arc<Shared>,
    waker: &Arc<Waker>,
) -> Result<JoinHandle<()>> {
    let local = socket.local_addr().context("cannot read the UDP address")?;
    if !local.ip().is_loopback() {
        log::warn!(
            "UDP echo on {local} answers anyone who can reach it, at whatever source address \
             they write: replies are never larger than requests, source ports {} get none, and \
             each address gets at most {} a second (--udp-rate)",
            REFLECTING_PORTS.map(|p| p.to_string()).join(", "),
            thousands(u64::from(options.rate))
        );
    }
    info!("UDP echo on {local}");
    let (shared, waker) = (Arc::clone(shared), Arc::clone(waker));
    let mut peers = Peers::new(options.rate);
    thread::Builder::new()
        .name("udp".into())
        .spawn(move || echo_datagrams(&socket, &shared, &waker, &mut peers))
        .context("cannot start the UDP thread")
}

/// The loop: a datagram in, its echo out, until the server stops accepting.
fn echo_datagrams(socket: &UdpSocket, shared: &Shared, waker: &Waker, peers: &mut Peers) {
    // Room for any datagram, IPv6's up to 65,527 bytes too: Windows fails a receive that
    // does not fit.
    let mut buf = vec![0u8; 1 << 16];
    let datagrams = &shared.datagrams;
    while !shared.stopping() {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Err(e) = platform::wait_readable(SockRef::from(socket), waker) {
                    shared
                        .warnings
                        .warn(|held_back| format!("UDP: waiting failed: {e}{held_back}"));
                    thread::sleep(RESOURCE_PAUSE);
                }
                continue;
            }
            // Windows, where `SIO_UDP_CONNRESET` could not be turned off: an earlier reply
            // was refused. Nothing is wrong with the socket.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                shared
                    .warnings
                    .warn(|held_back| format!("UDP: receive failed: {e}{held_back}"));
                thread::sleep(RESOURCE_PAUSE);
                continue;
            }
        };
        datagrams.received.fetch_add(1, Relaxed);
        // As people write it (an IPv4 client of a dual-stack socket is `::ffff:a.b.c.d`), for
        // the log and the rate; the reply goes back to `from` as it came.
        let peer = SocketAddr::new(from.ip().to_canonical(), from.port());
        let verdict = peers.admit(peer, Instant::now());
        let why = match verdict {
            Verdict::Answer { new } => {
                if new && shared.activity.new_peer() {
                    info!(peer:% = peer; "UDP {peer}: new peer");
                }
                let datagram = &mut buf[..n];
                echo::uppercase(datagram);
                match socket.send_to(datagram, from) {
                    Ok(_) => {
                        datagrams.echoed.fetch_add(1, Relaxed);
                        datagrams.bytes.fetch_add(n as u64, Relaxed);
                        debug!("UDP {peer}: echoed {n} bytes");
                        continue;
                    }
                    Err(e) => {
                        debug!("UDP {peer}: cannot send the echo of {n} bytes: {e}");
                        Dropped::Send
                    }
                }
            }
            Verdict::Drop(why) => why,
        };
        datagrams.dropped(why);
        match why {
            Dropped::Port(port) => debug!(
                "UDP {peer}: dropped {n} bytes: source port {port} belongs to a service that \
                 answers anything, and answering could start a loop"
            ),
            Dropped::Rate => debug!("UDP {peer}: dropped {n} bytes: over --udp-rate"),
            Dropped::Send => {}
        }
    }
}

/// What to do with a datagram from a peer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Echo it; `new`: the first from this peer (in `PEER_MEMORY`).
    Answer {
        new: bool,
    },
    Drop(Dropped),
}

/// Who has sent lately: peers for their `new peer` line, addresses for their rate.
struct Peers {
    rate: f64,
    seen: HashMap<SocketAddr, Instant>,
    buckets: HashMap<IpAddr, Bucket>,
}

/// A token bucket: `tokens` datagrams may be answered now; it fills at the rate, to one
/// second's worth.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Peers {
    fn new(rate: u32) -> Peers {
        Peers {
            rate: f64::from(rate),
            seen: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    fn admit(&mut self, peer: SocketAddr, now: Instant) -> Verdict {
        if REFLECTING_PORTS.contains(&peer.port()) {
            return Verdict::Drop(Dropped::Port(peer.port()));
        }
        if self.buckets.len() >= MAX_TRACKED {
            // A bucket a second old is full again: forgetting it changes nothing.
            self.buckets
                .retain(|_, b| now.duration_since(b.at) < Duration::from_secs(1));
        }
        let rate = self.rate;
        let bucket = self.buckets.entry(peer.ip()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Verdict::Drop(Dropped::Rate);
        }
        bucket.tokens -= 1.0;
        if self.seen.len() >= MAX_TRACKED {
            self.seen
                .retain(|_, at| now.duration_since(*at) < PEER_MEMORY);
            if self.seen.len() >= MAX_TRACKED {
                // A flood of new peers: their lines would be summarized anyway.
                self.seen.clear();
            }
        }
        let new = match self.seen.insert(peer, now) {
            Some(before) => now.duration_since(before) >= PEER_MEMORY,
            None => true,
        };
        Verdict::Answer { new }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn datagrams_from_echo_like_ports_get_no_answer() {
        let mut peers = Peers::new(1000);
        let now = Instant::now();
        for port in [0, 7, 13, 17, 19, 37] {
            assert_eq!(
                peers.admit(from(port), now),
                Verdict::Drop(Dropped::Port(port))
            );
        }
        assert_eq!(peers.admit(from(8), now), Verdict::Answer { new: true });
        assert_eq!(peers.admit(from(8), now), Verdict::Answer { new: false });
    }

    #[test]
    fn each_address_gets_its_rate_and_no_more() {
        let mut peers = Peers::new(10);
        let start = Instant::now();
        let answered = (0..100)
            .filter(|i| matches!(peers.admit(from(5000 + i), start), Verdict::Answer { .. }))
            .count();
        assert_eq!(
            answered, 10,
            "one second's worth at once, from any of its ports"
        );
        let other = SocketAddr::from(([192, 0, 2, 2], 5000));
        assert!(matches!(peers.admit(other, start), Verdict::Answer { .. }));
        let later = start + Duration::from_millis(500);
        let answered = (0..100)
            .filter(|_| matches!(peers.admit(from(5000), later), Verdict::Answer { .. }))
            .count();
        assert_eq!(answered, 5, "half a second refills half");
    }

    #[test]
    fn a_peer_silent_for_a_minute_is_new_again() {
        let mut peers = Peers::new(1000);
        let start = Instant::now();
        assert_eq!(peers.admit(from(9), start), Verdict::Answer { new: true });
        let later = start + PEER_MEMORY;
        assert_eq!(peers.admit(from(9), later), Verdict::Answer { new: true });
    }

    #[test]
    fn drops_are_summarized_by_reason() {
        let counts = Counts {
            by_rate: 2,
            by_port: 1,
            ..Counts::default()
        };
        assert_eq!(
            counts.dropped_by_reason(),
            ", 3 dropped (2 over --udp-rate, 1 from a reflecting port)"
        );
        assert_eq!(Counts::default().dropped_by_reason(), "");
    }
}

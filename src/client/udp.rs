//! `client --udp`: a message is one datagram, sent again when no reply comes in time; stdin is
//! a datagram per line, with the replies printed as they arrive and a count, at the end, of
//! what UDP lost, duplicated or reordered on the way (`Tally`).

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use log::{debug, info, warn};

use super::Expect;
use crate::echo::{self, Echo};
use crate::numbers::thousands;
use crate::output::{Output, write_out};
use crate::server::MAX_DATAGRAM;

/// How long the replies to stdin's lines are waited for once it ends, when `--timeout` is not
/// given; also each try's wait for a message's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the receiving thread looks up from its wait to see whether it is done.
const LOOK_UP: Duration = Duration::from_millis(50);
/// Room for a burst of replies: the system's default buffer drops some of a fast pipe's.
const RECEIVE_BUFFER: usize = 4 << 20;

/// A datagram socket connected to `addr`, so that only its replies come in and an ICMP port
/// unreachable shows as a refused receive.
pub fn connect(addr: SocketAddr) -> Result<UdpSocket> {
    let any: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).context("cannot open a UDP socket")?;
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER) {
        debug!("cannot enlarge the UDP receive buffer: {e}");
    }
    socket
        .connect(addr)
        .with_context(|| format!("cannot send to UDP {addr}"))?;
    info!("sending UDP datagrams to {addr}");
    Ok(socket)
}

/// Whether an error from the socket is an ICMP port unreachable: refused on Unix, reset on
/// Windows.
fn is_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
    )
}

/// What an error from the socket means here.
fn failed(e: std::io::Error, addr: SocketAddr) -> anyhow::Error {
    if is_refusal(&e) {
        anyhow!("nothing is listening on UDP {addr}")
    } else {
        anyhow!(e).context(format!("cannot exchange datagrams with UDP {addr}"))
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn too_long(len: usize, what: &str) -> anyhow::Error {
    anyhow!(
        "{what} is {} bytes, longer than the largest UDP datagram ({} bytes)",
        thousands(len as u64),
        thousands(MAX_DATAGRAM as u64)
    )
}

/// `client --udp`: the message, or stdin's lines, to the first of `addrs` that does not refuse
/// them.
pub fn run(
    addrs: Vec<SocketAddr>,
    input: Option<Vec<u8>>,
    stdout: &File,
    expect: Expect,
    timeout: Option<Duration>,
    retries: u32,
) -> Result<()> {
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    match input {
        Some(message) => {
            let reply = exchange_first(&addrs, &message, expect, timeout, retries)?.1;
            let reply = reply.ok_or_else(|| no_reply(retries + 1, timeout))?;
            // Like echo, and like the TCP client: the reply, then a newline.
            write_out(stdout, &reply)?;
            write_out(stdout, b"\n")?;
            Ok(())
        }
        None => lines(addrs, stdout, expect, timeout),
    }
}

/// The address of `addrs` whose server echoes `probe` (bench's first look at a server): a
/// server that is not there is one clear error.
pub(crate) fn reach(
    addrs: &[SocketAddr],
    probe: &[u8],
    expect: Expect,
    timeout: Duration,
) -> Result<SocketAddr> {
    const RETRIES: u32 = 2;
    match exchange_first(addrs, probe, expect, timeout, RETRIES)? {
        (_, Some(_), addr) => Ok(addr),
        (_, None, _) => Err(no_reply(RETRIES + 1, timeout)),
    }
}

fn no_reply(tries: u32, timeout: Duration) -> anyhow::Error {
    anyhow!(
        "no reply after {tries} {}, {timeout:?} each (UDP does not retransmit: the request or \
         the reply may have been lost)",
        if tries == 1 { "try" } else { "tries" }
    )
}

/// Sends `datagram` to each address in turn until one does not refuse it (a name such as
/// localhost may stand for ::1 and 127.0.0.1, and the server listen on one of them): the
/// socket, and the reply if one came in `1 + retries` tries.
fn exchange_first(
    addrs: &[SocketAddr],
    datagram: &[u8],
    expect: Expect,
    timeout: Duration,
    retries: u32,
) -> Result<(UdpSocket, Option<Vec<u8>>, SocketAddr)> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(too_long(datagram.len(), "the message"));
    }
    let mut refused = None;
    for &addr in addrs {
        let socket = connect(addr)?;
        match exchange_one(&socket, datagram, expect, timeout, retries) {
            Ok(reply) => return Ok((socket, reply, addr)),
            Err(e) if is_refusal(&e) => {
                debug!("nothing is listening on UDP {addr}");
                refused = Some(addr);
            }
            Err(e) => return Err(failed(e, addr)),
        }
    }
    match refused {
        Some(addr) => Err(anyhow!("nothing is listening on UDP {addr}")),
        None => Err(anyhow!("no addresses to send to")),
    }
}

/// One datagram, up to `1 + retries` times, `timeout` apart: its reply, once it is the echo;
/// `None` if none came.
fn exchange_one(
    socket: &UdpSocket,
    datagram: &[u8],
    expect: Expect,
    timeout: Duration,
    retries: u32,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 1 << 16];
    let tries = retries + 1;
    for attempt in 1..=tries {
        if attempt > 1 {
            debug!("no reply in {timeout:?}: sending again (try {attempt} of {tries})");
        }
        socket.send(datagram)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let reply = &buf[..n];
                    check(expect, datagram, reply).map_err(std::io::Error::other)?;
                    return Ok(Some(reply.to_vec()));
                }
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// Whether `reply` is the echo of `sent`, in words if not.
fn check(expect: Expect, sent: &[u8], reply: &[u8]) -> Result<()> {
    let Expect::Echo(kind) = expect else {
        return Ok(());
    };
    if reply.len() != sent.len() {
        bail!(
            "the reply is {} bytes, the datagram sent {}: not its echo",
            thousands(reply.len() as u64),
            thousands(sent.len() as u64)
        );
    }
    echo::check(kind, sent, reply, 0).map_err(|m| anyhow!("{m}"))
}

/// Stdin, a datagram per line (its newline included, so the output is the input's echo, line
/// for line); replies go to `stdout` as they arrive. The first line finds the address that
/// answers. Fails if any reply is missing or wrong.
fn lines(addrs: Vec<SocketAddr>, stdout: &File, expect: Expect, timeout: Duration) -> Result<()> {
    let mut input = BufReader::new(crate::platform::stdin().context("cannot open stdin")?);
    let Some(first) = read_line(&mut input, 1)? else {
        return Ok(());
    };
    let mut tally = Tally::new(expect);
    tally.sent(&first);
    let (socket, reply, addr) = exchange_first(&addrs, &first, expect, timeout, 0)?;
    if let Some(reply) = reply {
        tally.replied(&reply);
        if let Output::Closed = write_out(stdout, &reply)? {
            return Ok(());
        }
    }
    let socket = Arc::new(socket);
    let tally = Arc::new(Mutex::new(tally));
    let receiver = {
        let (socket, tally, stdout) = (
            Arc::clone(&socket),
            Arc::clone(&tally),
            stdout.try_clone().context("cannot share stdout")?,
        );
        thread::Builder::new()
            .name("receive".into())
            .spawn(move || receive(&socket, addr, &tally, &stdout, timeout))
            .context("cannot start the receiving thread")?
    };
    let sent = send_lines(&socket, addr, input, &tally);
    lock(&tally).input_ended = Some(Instant::now());
    let received = receiver
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    sent?;
    received?;
    let tally = lock(&tally);
    tally.report()
}

fn send_lines(
    socket: &UdpSocket,
    addr: SocketAddr,
    mut input: BufReader<File>,
    tally: &Mutex<Tally>,
) -> Result<()> {
    // Line 1 went with the first exchange.
    for number in 2.. {
        let Some(line) = read_line(&mut input, number)? else {
            break;
        };
        {
            let mut tally = lock(tally);
            if tally.done {
                break;
            }
            tally.sent(&line);
        }
        socket.send(&line).map_err(|e| failed(e, addr))?;
    }
    Ok(())
}

/// Line `number` of the input, its newline included; `None` at the end.
fn read_line(input: &mut BufReader<File>, number: u64) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if input
        .read_until(b'\n', &mut line)
        .context("cannot read stdin")?
        == 0
    {
        return Ok(None);
    }
    if line.len() > MAX_DATAGRAM {
        return Err(too_long(line.len(), &format!("line {number}")));
    }
    Ok(Some(line))
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // Nothing panics holding it; a poisoned tally is still whole.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The receiving thread: prints and tallies replies until every datagram has its reply or
/// `timeout` has passed without one since the input ended.
fn receive(
    socket: &UdpSocket,
    addr: SocketAddr,
    tally: &Mutex<Tally>,
    stdout: &File,
    timeout: Duration,
) -> Result<()> {
    socket
        .set_read_timeout(Some(LOOK_UP))
        .context("cannot set the UDP timeout")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut last = Instant::now();
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                last = Instant::now();
                let reply = &buf[..n];
                lock(tally).replied(reply);
                if let Output::Closed = write_out(stdout, reply)? {
                    lock(tally).done = true;
                    return Ok(());
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                lock(tally).done = true;
                return Err(failed(e, addr));
            }
        }
        let tally = lock(tally);
        if let Some(ended) = tally.input_ended {
            let quiet = Instant::now().duration_since(ended.max(last));
            if tally.all_answered() || quiet >= timeout {
                return Ok(());
            }
        }
    }
}

/// What came back for what was sent, matched by content: UDP carries no sequence number, and
/// the echo of each line is known.
#[derive(Debug)]
pub(crate) struct Tally {
    expect: Expect,
    /// Each datagram's expected reply, and how many times it came back.
    sent: Vec<(Vec<u8>, u32)>,
    /// The latest datagram (by sending order) answered so far.
    latest: Option<usize>,
    reordered: u64,
    duplicated: u64,
    /// Replies that are the echo of nothing sent; the first, for the error.
    wrong: u64,
    first_wrong: Option<String>,
    input_ended: Option<Instant>,
    /// Stop: stdout closed, or the socket failed.
    done: bool,
}

impl Tally {
    pub fn new(expect: Expect) -> Tally {
        Tally {
            expect,
            sent: Vec::new(),
            latest: None,
            reordered: 0,
            duplicated: 0,
            wrong: 0,
            first_wrong: None,
            input_ended: None,
            done: false,
        }
    }

    pub fn sent(&mut self, datagram: &[u8]) {
        let expected = match self.expect {
            Expect::Echo(kind) => datagram.iter().map(|&b| kind.of(b)).collect(),
            Expect::Any => datagram.to_vec(),
        };
        self.sent.push((expected, 0));
    }

    pub fn replied(&mut self, reply: &[u8]) {
        let matching = |(expected, _): &(Vec<u8>, u32)| match self.expect {
            Expect::Echo(_) => expected == reply,
            Expect::Any => true,
        };
        let index = self
            .sent
            .iter()
            .position(|entry| matching(entry) && entry.1 == 0)
            .or_else(|| self.sent.iter().position(matching));
        let Some(i) = index else {
            self.wrong += 1;
            if self.first_wrong.is_none() {
                self.first_wrong = Some(self.describe_wrong(reply));
            }
            return;
        };
        self.sent[i].1 += 1;
        if self.sent[i].1 > 1 {
            self.duplicated += 1;
            return;
        }
        match self.latest {
            Some(latest) if i < latest => self.reordered += 1,
            _ => self.latest = Some(i),
        }
    }

    fn describe_wrong(&self, reply: &[u8]) -> String {
        let shown = String::from_utf8_lossy(&reply[..reply.len().min(40)]).into_owned();
        let same_length = self.sent.iter().find(|(e, _)| e.len() == reply.len());
        match (self.expect, same_length) {
            (Expect::Echo(kind), Some((expected, _))) => {
                let sent: Vec<u8> = expected.iter().map(|&b| unecho(kind, b)).collect();
                match echo::check(kind, &sent, reply, 0) {
                    Err(m) => format!("a reply is the echo of nothing sent ({shown:?}): {m}"),
                    Ok(()) => format!("a reply is the echo of nothing sent ({shown:?})"),
                }
            }
            _ => format!("a reply is the echo of nothing sent ({shown:?})"),
        }
    }

    fn all_answered(&self) -> bool {
        self.sent.iter().all(|(_, n)| *n > 0)
    }

    /// `3 of 100 datagrams got no reply; 1 came back out of order`: an error if any reply is
    /// missing or wrong; a warning for duplicates and reordering, which UDP allows.
    pub fn report(&self) -> Result<()> {
        let total = self.sent.len() as u64;
        let lost = self.sent.iter().filter(|(_, n)| *n == 0).count() as u64;
        let mut parts = Vec::new();
        if lost > 0 {
            parts.push(format!(
                "{} of {} datagrams got no reply",
                thousands(lost),
                thousands(total)
            ));
        }
        if self.reordered > 0 {
            parts.push(format!(
                "{} came back out of order",
                thousands(self.reordered)
            ));
        }
        if self.duplicated > 0 {
            parts.push(format!(
                "{} came back more than once",
                thousands(self.duplicated)
            ));
        }
        if self.wrong > 0 {
            let first = self.first_wrong.as_deref().unwrap_or_default();
            parts.push(format!("{} wrong: {first}", thousands(self.wrong)));
        }
        let said = parts.join("; ");
        if lost > 0 || self.wrong > 0 {
            bail!("{said}");
        }
        if parts.is_empty() {
            info!(
                "{} datagrams, every one echoed once, in order",
                thousands(total)
            );
        } else {
            warn!("{said} (all {} echoed)", thousands(total));
        }
        Ok(())
    }
}

/// A byte that echoes as `b`, to show what a wrong reply was closest to.
fn unecho(kind: Echo, b: u8) -> u8 {
    match kind {
        Echo::Uppercase => b.to_ascii_lowercase(),
        Echo::Plain => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(lines: &[&str]) -> Tally {
        let mut tally = Tally::new(Expect::Echo(Echo::Uppercase));
        for line in lines {
            tally.sent(line.as_bytes());
        }
        tally
    }

    #[test]
    fn replies_in_order_report_nothing_wrong() {
        let mut t = tally(&["a\n", "b\n", "a\n"]);
        for reply in ["A\n", "B\n", "A\n"] {
            t.replied(reply.as_bytes());
        }
        assert!(t.all_answered());
        assert_eq!((t.reordered, t.duplicated, t.wrong), (0, 0, 0));
        assert!(t.report().is_ok());
    }

    #[test]
    fn loss_reordering_and_duplicates_are_counted_and_loss_fails() {
        let mut t = tally(&["a\n", "b\n", "c\n", "d\n"]);
        for reply in ["B\n", "A\n", "B\n", "D\n"] {
            t.replied(reply.as_bytes());
        }
        assert_eq!((t.reordered, t.duplicated), (1, 1));
        let e = t.report().unwrap_err().to_string();
        assert_eq!(
            e,
            "1 of 4 datagrams got no reply; 1 came back out of order; 1 came back more than once"
        );
    }

    #[test]
    fn a_reply_that_echoes_nothing_sent_fails_and_says_where() {
        let mut t = tally(&["abc\n"]);
        t.replied(b"ABD\n");
        let e = t.report().unwrap_err().to_string();
        assert!(e.contains("1 of 1 datagrams got no reply"), "{e}");
        assert!(e.contains("differs from the echo at byte 2"), "{e}");
    }
}

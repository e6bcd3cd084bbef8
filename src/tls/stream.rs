//! A TLS connection over a blocking `TcpStream`, readable by one thread while another writes
//! (the client's two directions), or echoed on by one thread (the server).
//!
//! rustls holds the connection's state; this type moves bytes between it and the socket. The
//! socket is only ever read or written without the state's lock held, so a thread blocked on
//! the socket in one direction never stops the other: a full-duplex stream cannot deadlock here.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::ops::DerefMut;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rustls::{ConnectionCommon, SideData};

use super::Failed;
use crate::stall;

/// First read buffer: enough for a few small records, and little for an idle connection to
/// keep; it grows to `LARGE` once a read fills it, as the plain echo's buffer does.
const SMALL: usize = 1024;
const LARGE: usize = 64 * 1024;

/// Who uses a stream: one thread (the server's echo), or a reader and a writer at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    One,
    Two,
}

/// The connection and its socket. `C` is rustls' `ServerConnection` or `ClientConnection`.
pub struct Stream<C> {
    socket: Arc<TcpStream>,
    threads: Threads,
    conn: Mutex<C>,
    incoming: Mutex<Incoming>,
    /// The socket's write side: held while writing, with the bytes being written.
    outgoing: Mutex<Vec<u8>>,
    write_timeout: Mutex<Option<Duration>>,
}

/// Bytes read from the socket that rustls has not taken yet.
#[derive(Default)]
struct Incoming {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the room it had.
    filled: bool,
    /// The socket reached its end; `told`: rustls knows.
    eof: bool,
    told: bool,
    /// The peer's close_notify has been read: it sends nothing more.
    peer_closed: bool,
}

/// What a handshake's first bytes from the peer say, before rustls parses them.
pub enum FirstBytes {
    /// Too few bytes to tell yet.
    Unsure,
    /// They can start a TLS handshake.
    Tls,
    /// They cannot: why, for the error.
    NotTls(String),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics with a lock held; a poisoned lock's data is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// rustls' errors as I/O errors; `explain` reads the rustls error back out.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl<C, S> Stream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    /// `already`: bytes read from the socket before the handshake (after a PROXY header).
    pub fn new(socket: Arc<TcpStream>, threads: Threads, conn: C, already: &[u8]) -> Stream<C> {
        let incoming = Incoming {
            buf: already.to_vec(),
            end: already.len(),
            ..Incoming::default()
        };
        Stream {
            socket,
            threads,
            conn: Mutex::new(conn),
            incoming: Mutex::new(incoming),
            outgoing: Mutex::new(Vec::new()),
            write_timeout: Mutex::new(None),
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Runs `f` on the connection's state (what was negotiated, the peer's certificates).
    pub fn with<T>(&self, f: impl FnOnce(&C) -> T) -> T {
        f(&lock(&self.conn))
    }

    /// The socket's write timeout, for the stall rule (see `stall::write_all`); the caller sets
    /// the socket's own.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.write_timeout) = timeout;
    }

    /// Completes the handshake by `deadline`. `first` judges the peer's first bytes before
    /// rustls does, so that a peer that does not speak TLS gets a plain answer. The socket's
    /// read timeout is left as it was found.
    pub fn handshake(
        &self,
        deadline: Instant,
        first: impl Fn(&[u8]) -> FirstBytes,
    ) -> io::Result<()> {
        let read_timeout = self.socket.read_timeout()?;
        let result = self.shake(deadline, first);
        self.socket.set_read_timeout(read_timeout)?;
        result
    }

    fn shake(&self, deadline: Instant, first: impl Fn(&[u8]) -> FirstBytes) -> io::Result<()> {
        let mut incoming = lock(&self.incoming);
        let mut judged = false;
        loop {
            self.send_pending(lock(&self.outgoing))?;
            if !judged {
                match first(&incoming.buf[incoming.start..incoming.end]) {
                    FirstBytes::Tls => judged = true,
                    FirstBytes::NotTls(why) => return Err(io::Error::other(Failed(why))),
                    FirstBytes::Unsure if incoming.eof => judged = true,
                    FirstBytes::Unsure => {}
                }
            }
            if judged {
                let mut conn = lock(&self.conn);
                if let Err(e) = feed(&mut conn, &mut incoming) {
                    drop(conn);
                    // The alert that says why, if the socket takes it.
                    let _ = self.send_pending_if_free();
                    return Err(e);
                }
                if !conn.is_handshaking() {
                    // What is left (a client's last flight, a server's session tickets) goes
                    // out with the first write, or before the first wait for the peer (see
                    // `read`): one packet fewer per connection. A peer that left at once
                    // (`openssl s_time`, a TLS health check) is found then, as any other.
                    return Ok(());
                }
                if conn.wants_write() {
                    continue;
                }
                if incoming.told {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
            }
            self.fill(&mut incoming, Some(deadline))?;
        }
    }

    /// Sends close_notify: the TLS end of our side, before the TCP one.
    pub fn close(&self) -> io::Result<()> {
        self.write_and_close(&[])
    }

    /// Sends `bytes` and close_notify after them, in one write where they fit (rustls takes
    /// 64 KiB at a time).
    pub fn write_and_close(&self, mut bytes: &[u8]) -> io::Result<()> {
        loop {
            let out = lock(&self.outgoing);
            let mut conn = lock(&self.conn);
            let n = conn.writer().write(bytes)?;
            bytes = &bytes[n..];
            if bytes.is_empty() {
                conn.send_close_notify();
            }
            drop(conn);
            self.send_pending(out)?;
            if bytes.is_empty() {
                return Ok(());
            }
        }
    }

    /// Reads what the socket has into `incoming`, by `deadline` if there is one (see
    /// `stall::read_by`). The buffer grows once a read fills all the room it was given: the
    /// socket had more, a bulk stream.
    fn fill(&self, incoming: &mut Incoming, deadline: Option<Instant>) -> io::Result<()> {
        if incoming.start == incoming.end {
            incoming.start = 0;
            incoming.end = 0;
        } else if incoming.end == incoming.buf.len() && incoming.start > 0 {
            // A partial record at the end: moved to the front rather than the buffer grown.
            let (start, end) = (incoming.start, incoming.end);
            incoming.buf.copy_within(start..end, 0);
            incoming.end -= start;
            incoming.start = 0;
        }
        let len = incoming.buf.len();
        let full = incoming.end == len;
        let wanted = if full && len >= LARGE {
            len * 2
        } else if incoming.filled || (full && len > 0) {
            LARGE.max(len)
        } else {
            SMALL.max(len)
        };
        if wanted > len {
            incoming.buf.resize(wanted, 0);
        }
        let end = incoming.end;
        let room = incoming.buf.len() - end;
        let room_left = &mut incoming.buf[end..];
        let n = match deadline {
            Some(deadline) => stall::read_by(&self.socket, room_left, deadline)?,
            None => loop {
                match (&*self.socket).read(room_left) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    other => break other?,
                }
            },
        };
        incoming.filled = n == room;
        if n == 0 {
            incoming.eof = true;
        }
        incoming.end += n;
        Ok(())
    }

    /// Writes out what rustls has queued (records, alerts, tickets), `out` held, until nothing
    /// is left. Used by one thread, the records go from rustls straight to the socket. Used by
    /// two, they are copied out and written without the state's lock, which a reader may need
    /// meanwhile; the write side is released under that lock, so a reader that queues more
    /// after the last look either finds the write side free or is seen by its holder.
    fn send_pending(&self, mut out: MutexGuard<'_, Vec<u8>>) -> io::Result<()> {
        let timeout = *lock(&self.write_timeout);
        if self.threads == Threads::One {
            let mut conn = lock(&self.conn);
            let mut socket = Stalling(&self.socket, timeout);
            while conn.wants_write() {
                conn.write_tls(&mut socket)?;
            }
            return Ok(());
        }
        loop {
            let mut conn = lock(&self.conn);
            if !conn.wants_write() {
                drop(out);
                return Ok(());
            }
            out.clear();
            while conn.wants_write() {
                conn.write_tls(&mut *out)?;
            }
            drop(conn);
            stall::write_all(&*self.socket, &out, timeout)?;
        }
    }

    /// `send_pending` from the reading side: a writer busy on the socket sends it instead.
    fn send_pending_if_free(&self) -> io::Result<()> {
        match self.outgoing.try_lock() {
            Ok(out) => self.send_pending(out),
            Err(TryLockError::Poisoned(out)) => self.send_pending(out.into_inner()),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }
}

/// The socket as rustls writes to it, under the stall rule (see `stall`).
struct Stalling<'a>(&'a TcpStream, Option<Duration>);

impl Write for Stalling<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        stall::write_some(self.0, bufs, self.1)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands rustls the bytes read so far, until it has plaintext for the reader; then, once the
/// socket ended and everything was taken, the end.
fn feed<S: SideData>(conn: &mut ConnectionCommon<S>, incoming: &mut Incoming) -> io::Result<()> {
    while incoming.start < incoming.end {
        let n = conn.read_tls(&mut &incoming.buf[incoming.start..incoming.end])?;
        incoming.start += n;
        let state = conn.process_new_packets().map_err(tls_error)?;
        incoming.peer_closed |= state.peer_has_closed();
        if n == 0 || state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
            return Ok(());
        }
    }
    if incoming.eof && !incoming.told {
        incoming.told = true;
        conn.read_tls(&mut io::empty())?;
        conn.process_new_packets().map_err(tls_error)?;
    }
    Ok(())
}

/// Plaintext from the peer. `Ok(0)` is its close_notify; a TCP end without one is
/// `UnexpectedEof` (the stream may have been cut short).
impl<C, S> Read for &Stream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut incoming = lock(&self.incoming);
        loop {
            let mut conn = lock(&self.conn);
            // Plaintext left from the last read goes first: rustls takes no more records while
            // it holds some.
            let mut read = conn.reader().read(out);
            if matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock) {
                if let Err(e) = feed(&mut conn, &mut incoming) {
                    drop(conn);
                    let _ = self.send_pending_if_free();
                    return Err(e);
                }
                read = conn.reader().read(out);
            }
            let read = match read {
                // Records already read are taken too, up to `out`'s size: a bulk stream then
                // moves in large writes, not one record's worth (16 KiB) at a time. Less than
                // asked means rustls holds no more plaintext, so it takes more records. An
                // error here is rustls' and comes back on the next read.
                Ok(mut n) if n > 0 => {
                    while n < out.len() && incoming.start < incoming.end {
                        if feed(&mut conn, &mut incoming).is_err() {
                            break;
                        }
                        match conn.reader().read(&mut out[n..]) {
                            Ok(more) if more > 0 => n += more,
                            _ => break,
                        }
                    }
                    Ok(n)
                }
                other => other,
            };
            // What is queued goes out before we wait for the peer, which may be waiting for
            // it; with plaintext in hand, the reply that follows carries it.
            let pending = conn.wants_write()
                && read
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::WouldBlock);
            drop(conn);
            // All taken: an idle connection keeps no buffer of its own (the small one comes
            // back from the allocator's thread cache in nanoseconds).
            if incoming.start == incoming.end && incoming.buf.len() <= SMALL {
                incoming.buf = Vec::new();
                (incoming.start, incoming.end) = (0, 0);
            }
            if pending {
                self.send_pending_if_free()?;
            }
            match read {
                Err(e) if e.kind() == ErrorKind::WouldBlock && !incoming.told => {}
                other => return other,
            }
            self.fill(&mut incoming, None)?;
        }
    }
}

/// Plaintext to the peer, sent before `write` returns; except the server's echo of what came
/// with the peer's close_notify, which goes out with ours (see `close`) in one packet.
impl<C, S> Write for &Stream<C>
where
    C: DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = lock(&self.outgoing);
        let mut conn = lock(&self.conn);
        // One write held at most: rustls takes no more than 64 KiB of records unsent.
        let hold =
            self.threads == Threads::One && !conn.wants_write() && lock(&self.incoming).peer_closed;
        let n = conn.writer().write(buf)?;
        drop(conn);
        if hold && n == buf.len() {
            return Ok(n);
        }
        self.send_pending(out)?;
        if n == 0 && !buf.is_empty() {
            // A held write filled rustls' buffer; it is empty now.
            return self.write(buf);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

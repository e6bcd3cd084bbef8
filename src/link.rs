//! A connection as the client and bench use it: plain TCP, or TLS over it. Each direction may
//! be used by its own thread, so every method takes `&self`.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use rustls::ClientConnection;

use crate::{platform, stall, tls};

pub trait Link: Send + Sync + 'static {
    /// The socket underneath, for timeouts and for ending the exchange.
    fn socket(&self) -> &TcpStream;
    /// Sends all of `bytes`; a write the server takes nothing of for `timeout` is a stall.
    fn send(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()>;
    /// Ends our side: the server sees the end of its input.
    fn finish(&self) -> io::Result<()>;
    /// `send` then `finish`, in as few packets as the link can.
    fn send_last(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.send(bytes, timeout)?;
        self.finish()
    }
    /// Some of the reply; 0 at its end.
    fn receive(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// The cause of an error, in words, where the error alone does not say it.
    fn explain(&self, _e: &io::Error) -> Option<String> {
        None
    }
}

/// A link's reply as a `Read`.
impl Read for &dyn Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.receive(buf)
    }
}

impl Link for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }

    fn send(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        stall::write_all(self, bytes, timeout)
    }

    fn finish(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn send_last(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        stall::write_all(platform::BeforeFin(self), bytes, timeout)?;
        self.finish()
    }

    fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self).read(buf)
    }
}

/// A TLS connection and the client that made it (which explains its errors).
pub struct TlsLink {
    pub stream: tls::Stream<ClientConnection>,
    pub client: Arc<tls::Client>,
}

impl Link for TlsLink {
    fn socket(&self) -> &TcpStream {
        self.stream.socket()
    }

    fn send(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(timeout);
        stall::write_all(&self.stream, bytes, timeout)
    }

    /// close_notify, then the TCP half-close.
    fn finish(&self) -> io::Result<()> {
        self.stream.close()?;
        self.socket().shutdown(Shutdown::Write)
    }

    /// The last bytes and close_notify in one record flight.
    fn send_last(&self, bytes: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(timeout);
        self.stream.write_and_close(bytes)?;
        self.socket().shutdown(Shutdown::Write)
    }

    fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        match (&mut &self.stream).read(buf) {
            // The byte count tells whether anything was cut short; the check reports that.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                debug!("the server closed the connection without a TLS close_notify");
                Ok(0)
            }
            other => other,
        }
    }

    fn explain(&self, e: &io::Error) -> Option<String> {
        self.client.explain(e)
    }
}

//! The client: sends a message or stdin to the server while it copies the reply to stdout, and
//! checks that the reply is the echo of what it sent.
//!
//! `exchange.rs` runs the two directions; `check.rs` holds the reply check.

mod check;
mod exchange;
pub(crate) mod udp;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use log::{debug, info};

use crate::link::TlsLink;
use crate::output::write_out;
use crate::{addr, platform, proxy, tls};
pub use check::Expect;
pub(crate) use exchange::exchange;

/// Used for each address tried when `--timeout` is not given.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Options {
    pub host: String,
    pub port: u16,
    pub family: addr::Family,
    pub timeout: Option<Duration>,
    /// `None` streams stdin.
    pub message: Option<Vec<u8>>,
    pub expect: Expect,
    /// Begin with a PROXY protocol header of this version.
    pub send_proxy: Option<proxy::ProxyVersion>,
    /// Speak TLS.
    pub tls: Option<tls::ClientOptions>,
    /// Send datagrams instead, each retried this many times without a reply.
    pub udp: Option<u32>,
}

pub fn run(options: Options) -> Result<()> {
    if let Some(retries) = options.udp {
        let addrs = addr::resolve_only(&options.host, options.port, options.family)?.collect();
        let stdout = platform::stdout().context("cannot open stdout")?;
        return udp::run(
            addrs,
            options.message,
            &stdout,
            options.expect,
            options.timeout,
            retries,
        );
    }
    // A bad certificate file is a mistake worth hearing about before connecting.
    let tls = match &options.tls {
        Some(tls) => Some(tls::Client::new(tls, &options.host)?),
        None => None,
    };
    let stream = connect(
        &options.host,
        options.port,
        options.family,
        options.timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    )?;
    if let Some(version) = options.send_proxy {
        send_proxy_header(&stream, version)?;
    }
    let stdout = platform::stdout().context("cannot open stdout")?;
    // Only a message from the command line gets a newline after its reply (see below).
    let is_message = options.message.is_some();
    let input = match options.message {
        Some(message) => exchange::Input::Message(message),
        None => exchange::Input::at_hand(platform::stdin().context("cannot open stdin")?)
            .context("cannot read stdin")?,
    };
    let finished = match tls {
        None => exchange(stream, input, &stdout, options.timeout, options.expect)?,
        Some(client) => {
            let handshake = options.timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let stream = client.connect(Arc::new(stream), Instant::now() + handshake)?;
            for line in stream.with(tls::describe_server) {
                info!("{line}");
            }
            let link = TlsLink {
                stream,
                client: Arc::new(client),
            };
            exchange(link, input, &stdout, options.timeout, options.expect)?
        }
    };
    // Like echo: a message's reply gets a newline, unless stdout closed before the reply ended.
    if is_message && finished {
        write_out(&stdout, b"\n")?;
    }
    Ok(())
}

/// The header goes first and is not part of the echo: the server strips it.
fn send_proxy_header(mut stream: &TcpStream, version: proxy::ProxyVersion) -> Result<()> {
    let local = stream
        .local_addr()
        .context("cannot read the connection's address")?;
    let peer = stream
        .peer_addr()
        .context("cannot read the server's address")?;
    let header = proxy::header(version, local, peer).context("cannot build a PROXY header")?;
    stream
        .write_all(&header)
        .context("cannot send the PROXY header")
}

/// Connects to the first address of `host` (of `family`) that accepts, each attempt bounded
/// by `timeout`.
pub(crate) fn connect(
    host: &str,
    port: u16,
    family: addr::Family,
    timeout: Duration,
) -> Result<TcpStream> {
    let shown = addr::show(host, port);
    let addrs = addr::resolve_only(host, port, family)?;
    let mut last_error = None;
    let mut tried = Vec::new();
    for addr in addrs {
        tried.push(addr.to_string());
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                info!("connected to {addr}");
                // Small writes go out at once instead of waiting for the previous one's ACK.
                stream
                    .set_nodelay(true)
                    .with_context(|| format!("cannot configure the connection to {shown}"))?;
                return Ok(stream);
            }
            Err(e) => {
                debug!("cannot connect to {addr}: {e}");
                last_error = Some(e);
            }
        }
    }
    // A name that stands for several addresses says which were tried.
    let tried = match tried.as_slice() {
        [one] if *one == shown => String::new(),
        all => format!(" ({})", all.join(", ")),
    };
    match last_error {
        // The commonest mistake of all: no server there yet.
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(anyhow!(
            "cannot connect to {shown}{tried}: {e}: is tcpdemo server running there? (tcpdemo \
             server --port {port})"
        )),
        Some(e) => Err(e).with_context(|| format!("cannot connect to {shown}{tried}")),
        None => Err(anyhow!("cannot connect to {shown}: no addresses")),
    }
}

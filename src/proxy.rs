//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a load balancer
//! puts before a connection's bytes to say whom it carries them for. Parsed and built with the
//! `ppp` crate.

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::v2::{Builder, Command, Protocol, Version};
use ppp::{HeaderResult, PartialResult};

use crate::stall;

/// The longest header there can be: version 2's 16 bytes and a payload of up to 65,535.
const MAX_HEADER: usize = 16 + 65_535;

/// Whom a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's connection, carried by the proxy.
    Client(SocketAddr),
    /// The proxy's own (version 2 `LOCAL`, version 1 `UNKNOWN`): a health check, say.
    Proxy,
}

/// A header's version, for the client to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderVersion {
    V1,
    V2,
}

/// Why a connection's first bytes were not a usable header.
#[derive(Debug)]
pub enum BadHeader {
    Invalid,
    TooSlow(Duration),
    Closed,
    Io(io::Error),
}

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadHeader::Invalid => f.write_str("no valid PROXY protocol header"),
            BadHeader::TooSlow(limit) => write!(f, "no PROXY protocol header within {limit:?}"),
            BadHeader::Closed => f.write_str("closed before a whole PROXY protocol header"),
            BadHeader::Io(e) => write!(f, "reading the PROXY protocol header failed: {e}"),
        }
    }
}

/// Reads the header that must begin the connection, within `limit`. Returns whom the
/// connection is for, and the bytes that came after the header (the start of the data).
pub fn read_header(stream: &TcpStream, limit: Duration) -> Result<(Origin, Vec<u8>), BadHeader> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = match stall::read_by(stream, &mut chunk, deadline) {
            Ok(0) => return Err(BadHeader::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::TimedOut => return Err(BadHeader::TooSlow(limit)),
            Err(e) => return Err(BadHeader::Io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse(&buf)? {
            let (origin, len) = parsed;
            return Ok((origin, buf.split_off(len)));
        }
        if buf.len() > MAX_HEADER {
            return Err(BadHeader::Invalid);
        }
    }
}

/// A whole header at the start of `buf`: whom it names and its length. `None` while it may
/// still be incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Origin, usize)>, BadHeader> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(header)) => {
            let origin = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Origin::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Origin::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => Origin::Proxy,
            };
            Ok(Some((origin, header.header.len())))
        }
        HeaderResult::V2(Ok(header)) => {
            let origin = match (header.command, header.addresses) {
                (Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Origin::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Origin::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => Origin::Proxy,
            };
            Ok(Some((origin, header.len())))
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(BadHeader::Invalid),
    }
}

/// The header a client sends first, naming its connection's own addresses.
pub fn header(version: HeaderVersion, local: SocketAddr, peer: SocketAddr) -> io::Result<Vec<u8>> {
    match version {
        HeaderVersion::V1 => Ok(ppp::v1::Addresses::from((local, peer))
            .to_string()
            .into_bytes()),
        HeaderVersion::V2 => Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (local, peer),
        )
        .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.5:40000".parse().unwrap(),
            "127.0.0.1:1234".parse().unwrap(),
        )
    }

    #[test]
    fn both_versions_round_trip_and_keep_the_data_after_them() {
        let (client, server) = addrs();
        for version in [HeaderVersion::V1, HeaderVersion::V2] {
            let mut bytes = header(version, client, server).unwrap();
            let len = bytes.len();
            bytes.extend_from_slice(b"hello");
            assert_eq!(parse(&bytes).unwrap(), Some((Origin::Client(client), len)));
            assert_eq!(
                parse(&bytes[..len - 1]).unwrap(),
                None,
                "{version:?} incomplete"
            );
        }
    }

    #[test]
    fn a_local_header_is_the_proxy_s_own_connection() {
        let local = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(parse(&local).unwrap(), Some((Origin::Proxy, 16)));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Origin::Proxy, 15))
        );
    }

    #[test]
    fn plain_data_is_not_a_header() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(BadHeader::Invalid)
        ));
        assert!(matches!(parse(b"hello world\r\n"), Err(BadHeader::Invalid)));
    }
}

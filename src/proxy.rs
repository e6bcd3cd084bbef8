//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a load balancer
//! puts before a connection's bytes to say whom it carries them for. Parsed and built with the
//! `ppp` crate.

use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::HeaderResult;
use ppp::v2::{Builder, Command, Protocol, Version};

use crate::stall;

/// Version 2's first 12 bytes; its 16-byte fixed part ends in the length of the rest.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1 is one line, `PROXY ` to CRLF, of 107 bytes at most.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
const V1_MAX: usize = 107;

/// Whom a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client's connection, carried by the proxy.
    Client(SocketAddr),
    /// The proxy's own (version 2 `LOCAL`, version 1 `UNKNOWN`): a health check, say.
    Proxy,
}

/// A header's version, for the client to send (`--send-proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// Why a connection's first bytes were not a usable header.
#[derive(Debug)]
pub(crate) enum BadHeader {
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
pub(crate) fn read_header(
    stream: &TcpStream,
    limit: Duration,
) -> Result<(Origin, Vec<u8>), BadHeader> {
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
    }
}

/// The length of the header that begins `buf`, once all of it is there; `None` while it may
/// still be incomplete. The `ppp` crate is handed only whole headers: given part of a version
/// 1 header cut after a field (`PROXY TCP4 1.2.3.4 5.6.7.8 1111 `), it answers "invalid",
/// not "incomplete", and a valid header cut there by the network was refused.
fn header_len(buf: &[u8]) -> Result<Option<usize>, BadHeader> {
    let begins = |prefix: &[u8]| buf.starts_with(prefix) || prefix.starts_with(buf);
    if begins(V2_SIGNATURE) {
        return Ok(match buf.get(14..16) {
            Some(&[high, low]) => {
                let len = 16 + usize::from(u16::from_be_bytes([high, low]));
                (buf.len() >= len).then_some(len)
            }
            _ => None,
        });
    }
    if begins(V1_PREFIX) {
        return match buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) if end + 2 <= V1_MAX => Ok(Some(end + 2)),
            None if buf.len() < V1_MAX => Ok(None),
            _ => Err(BadHeader::Invalid),
        };
    }
    Err(BadHeader::Invalid)
}

/// A whole header at the start of `buf`: whom it names and its length. `None` while it may
/// still be incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Origin, usize)>, BadHeader> {
    let Some(len) = header_len(buf)? else {
        return Ok(None);
    };
    let result = HeaderResult::parse(&buf[..len]);
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
            Ok(Some((origin, len)))
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
            Ok(Some((origin, len)))
        }
        // Whole, so never incomplete: only invalid.
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(BadHeader::Invalid),
    }
}

/// The header a client sends first, naming its connection's own addresses.
pub(crate) fn header(
    version: ProxyVersion,
    local: SocketAddr,
    peer: SocketAddr,
) -> io::Result<Vec<u8>> {
    match version {
        ProxyVersion::V1 => Ok(ppp::v1::Addresses::from((local, peer))
            .to_string()
            .into_bytes()),
        ProxyVersion::V2 => Builder::with_addresses(
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
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
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

    /// A version 2 `LOCAL` header: the proxy's own connection (a health check).
    fn local_header() -> Vec<u8> {
        Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap()
    }

    #[test]
    fn a_local_header_is_the_proxy_s_own_connection() {
        let local = local_header();
        assert_eq!(parse(&local).unwrap(), Some((Origin::Proxy, 16)));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Origin::Proxy, 15))
        );
    }

    /// Every header cut at every point is incomplete until its last byte, then whole.
    #[test]
    fn a_header_cut_anywhere_is_incomplete_until_whole() {
        let (client, server) = addrs();
        let v6 = (
            "[2001:db8::5]:40000".parse().unwrap(),
            "[2001:db8::1]:1234".parse().unwrap(),
        );
        let local = local_header();
        let mut headers = vec![b"PROXY UNKNOWN\r\n".to_vec(), local];
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            headers.push(header(version, client, server).unwrap());
            headers.push(header(version, v6.0, v6.1).unwrap());
        }
        headers.push(b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec());
        for whole in headers {
            let len = whole.len();
            let mut data = whole.clone();
            data.extend_from_slice(b"hello");
            for cut in 0..len {
                assert_eq!(
                    parse(&data[..cut]).ok(),
                    Some(None),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(&whole)
                );
            }
            for end in len..data.len() {
                assert!(
                    matches!(parse(&data[..end]), Ok(Some((_, n))) if n == len),
                    "{:?} with {end} bytes",
                    String::from_utf8_lossy(&whole)
                );
            }
        }
    }

    #[test]
    fn a_v1_line_too_long_or_garbled_is_invalid() {
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(BadHeader::Invalid)));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 nonsense\r\n"),
            Err(BadHeader::Invalid)
        ));
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

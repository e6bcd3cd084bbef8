//! TLS for the server, the client and bench, with rustls (and its ring provider).
//!
//! `server.rs` and `client.rs` hold each side's configuration; `stream.rs` runs a TLS
//! connection over a blocking socket; `certs.rs` reads, generates and describes certificates;
//! `explain.rs` turns a failed handshake into its cause and its fix.

mod certs;
mod client;
mod explain;
mod server;
mod stream;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ConnectionCommon, HandshakeKind, ProtocolVersion};

pub use client::{Client, ClientOptions, Version, describe_server};
pub use explain::explain;
pub use server::{ServerOptions, accept, client_hello, server_config};
pub use stream::{FirstBytes, Stream, Threads};

/// ring's suites, AES-128-GCM first: as safe as AES-256 for this purpose, and faster (the
/// order a client offers is the order the server picks from).
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !format!("{:?}", suite.suite()).contains("AES_128_GCM"));
    Arc::new(provider)
}

/// TLS record types are 20 to 24 (RFC 8446 5.1); a handshake starts with 22.
const HANDSHAKE: u8 = 22;

/// A TLS failure, explained: a peer that does not speak TLS, or a handshake's cause in words.
#[derive(Debug)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// Whether an I/O error is TLS's own (a failed handshake, a bad record, a peer that does not
/// speak TLS) rather than the network's.
pub fn is_tls(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>() || inner.is::<Failed>())
}

/// `TLSv1.3 TLS13_AES_128_GCM_SHA256`: what a connection negotiated, as OpenSSL names versions.
pub fn session<S>(conn: &ConnectionCommon<S>) -> String {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version} {:?}", suite.suite()),
        None => version,
    }
}

/// Whether a connection resumed an earlier session.
pub fn resumed<S>(conn: &ConnectionCommon<S>) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// The subject of the peer's certificate (a client's, under mTLS).
pub fn peer_subject<S>(conn: &ConnectionCommon<S>) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    Some(certs::describe(cert).subject)
}

#[cfg(test)]
mod tests {
    use super::client::server_hello;
    use super::*;

    fn verdict(judged: FirstBytes) -> Option<String> {
        match judged {
            FirstBytes::Unsure => Some("unsure".into()),
            FirstBytes::Tls => None,
            FirstBytes::NotTls(why) => Some(why),
        }
    }

    #[test]
    fn a_client_that_does_not_speak_tls_is_told_apart_by_its_first_byte() {
        assert_eq!(verdict(client_hello(b"")).as_deref(), Some("unsure"));
        assert_eq!(verdict(client_hello(&[22, 3, 1])), None);
        assert_eq!(
            verdict(client_hello(b"GET / HTTP/1.1\r\n")).as_deref(),
            Some("not TLS: the client sent plain text")
        );
        assert!(verdict(client_hello(&[0x80, 1])).unwrap().contains("0x80"));
    }

    #[test]
    fn a_plain_echo_of_our_client_hello_is_not_a_server_hello() {
        // A ClientHello record, as an uppercasing echo server sends it back: the bytes that
        // matter are not letters, so they come back unchanged.
        let echoed = [22, 3, 1, 0, 0xf8, 1, 0, 0, 0xf4, 3, 3];
        assert!(
            verdict(server_hello(&echoed))
                .unwrap()
                .contains("echoed our TLS handshake")
        );
        assert_eq!(verdict(server_hello(&[22, 3, 3, 0, 0x7a, 2, 0])), None);
        assert!(
            verdict(server_hello(b"HELLO"))
                .unwrap()
                .contains("plain text")
        );
        assert_eq!(
            verdict(server_hello(&[22, 3, 3])).as_deref(),
            Some("unsure")
        );
    }

    #[test]
    fn names_and_dates_read_as_people_write_them() {
        assert_eq!(certs::plain_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(certs::plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(certs::plain_name("IpAddress(0::1)"), "::1");
        assert_eq!(certs::date(1_614_816_000), "2021-03-04 00:00:00 UTC");
    }
}

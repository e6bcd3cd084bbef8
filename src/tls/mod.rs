//! TLS for the server, the client and bench, with rustls (and its ring provider).
//!
//! `stream.rs` runs a TLS connection over a blocking socket; `certs.rs` reads, generates and
//! describes certificates; `explain.rs` turns a failed handshake into its cause and its fix.

mod certs;
mod explain;
mod stream;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use log::{debug, info, warn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, DigitallySignedStruct, HandshakeKind,
    ProtocolVersion, RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::platform;
pub use explain::explain;
pub use stream::{FirstBytes, Stream, Threads};

/// How a server serves TLS.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--tls-cert` and `--tls-key`; none: a temporary self-signed certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `--tls-write-cert`: where to write the temporary certificate, for clients to trust.
    pub write_cert: Option<PathBuf>,
    /// `--tls-client-ca`: require a client certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// How a client (or bench) checks the server and presents itself.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `--tls-ca`: trusted besides the system's roots.
    pub ca: Option<PathBuf>,
    /// `--tls-server-name`: for SNI and verification; default: the host connected to.
    pub server_name: Option<String>,
    /// `--tls-insecure`: no verification at all.
    pub insecure: bool,
    /// `--tls-cert` and `--tls-key`: a client certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `--tls-version`: offer only this one.
    pub version: Option<Version>,
    /// Resume sessions across connections (bench's `--tls-resume`).
    pub resume: bool,
}

/// A TLS version a client can be held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// ring's suites, AES-128-GCM first: as safe as AES-256 for this purpose, and faster (the
/// order a client offers is the order the server picks from).
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !format!("{:?}", suite.suite()).contains("AES_128_GCM"));
    Arc::new(provider)
}

/// The server's TLS configuration: its certificate (read, or generated for `names`: the
/// loopback names and `--host`), logged with how clients can trust it.
pub fn server_config(options: &ServerOptions, host: &str) -> Result<Arc<ServerConfig>> {
    let identity = match &options.identity {
        Some((cert, key)) => certs::read_identity(cert, key)?,
        None => {
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(Into::into).into();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if !host.is_empty() && !names.iter().any(|n| n == host) && !is_wildcard(host) {
                names.push(host.into());
            }
            let (identity, pem) = certs::generate(&names)?;
            info!(
                "TLS: a temporary self-signed certificate for {}, SHA-256 {}",
                names.join(", "),
                certs::fingerprint(&identity.chain[0])
            );
            match &options.write_cert {
                Some(path) => {
                    std::fs::write(path, pem).with_context(|| {
                        format!("cannot write the certificate to {}", path.display())
                    })?;
                    info!(
                        "TLS: wrote the certificate to {0}; clients trust it with --tls-ca {0}",
                        path.display()
                    );
                }
                None => info!(
                    "TLS: clients trust it with --tls-insecure, or with --tls-ca FILE after \
                     --tls-write-cert FILE here"
                ),
            }
            identity
        }
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?;
    let builder = match &options.client_ca {
        Some(path) => {
            let roots = certs::read_roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("cannot use {} as the client CA", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .context("cannot use that certificate and key together")?;
    // Stateless tickets: resumption costs the server no memory, however many clients.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("cannot set up TLS")?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

fn is_wildcard(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// A client side: its configuration, the name it checks, and whether the server asked for a
/// certificate (for the error when it refuses us).
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    own_cert: Arc<OwnCert>,
    pub insecure: bool,
    has_ca: bool,
}

impl Client {
    pub fn new(options: &ClientOptions, host: &str) -> Result<Client> {
        let shown = options.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(shown.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| anyhow!("{shown} is not a server name TLS can check"))?
            .to_owned();
        let versions: &[&rustls::SupportedProtocolVersion] = match options.version {
            None => rustls::DEFAULT_VERSIONS,
            Some(Version::Tls12) => &[&rustls::version::TLS12],
            Some(Version::Tls13) => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .context("cannot set up TLS")?;
        let builder = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Anything(
                    provider().signature_verification_algorithms,
                )))
        } else {
            builder.with_root_certificates(roots(options)?)
        };
        let key = match &options.identity {
            Some((cert, key)) => {
                let identity = certs::read_identity(cert, key)?;
                let signer = provider()
                    .key_provider
                    .load_private_key(identity.key)
                    .with_context(|| format!("cannot use the key in {}", key.display()))?;
                Some(Arc::new(CertifiedKey::new(identity.chain, signer)))
            }
            None => None,
        };
        let own_cert = Arc::new(OwnCert {
            key,
            asked: AtomicBool::new(false),
        });
        let mut config = builder.with_client_cert_resolver(Arc::clone(&own_cert) as _);
        config.resumption = if options.resume {
            Resumption::in_memory_sessions(1024)
        } else {
            Resumption::disabled()
        };
        Ok(Client {
            config: Arc::new(config),
            name,
            own_cert,
            insecure: options.insecure,
            has_ca: options.ca.is_some(),
        })
    }

    /// Starts TLS on a connected socket and completes the handshake by `deadline`.
    pub fn connect(
        &self,
        socket: Arc<TcpStream>,
        deadline: Instant,
    ) -> Result<Stream<ClientConnection>> {
        self.handshake(socket, deadline)
            .map_err(|e| anyhow!("TLS handshake with the server failed: {e}"))
    }

    /// `connect` for bench: an I/O error, its TLS cause explained in a `Failed`.
    pub fn handshake(
        &self,
        socket: Arc<TcpStream>,
        deadline: Instant,
    ) -> std::io::Result<Stream<ClientConnection>> {
        let conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|e| std::io::Error::other(Failed(format!("cannot start TLS: {e}"))))?;
        let stream = Stream::new(socket, Threads::Two, conn, &[]);
        match stream.handshake(deadline, server_hello) {
            Ok(()) => Ok(stream),
            Err(e) if is_tls(&e) => Err(std::io::Error::new(e.kind(), Failed(self.explain(&e)))),
            Err(e) => Err(e),
        }
    }

    /// An error on this connection, with its cause and fix where known.
    pub fn explain(&self, e: &std::io::Error) -> String {
        let cert = match (
            self.own_cert.asked.load(Ordering::Relaxed),
            self.own_cert.key.is_some(),
        ) {
            (false, _) => explain::ClientCert::NotAsked,
            (true, false) => explain::ClientCert::AskedNone,
            (true, true) => explain::ClientCert::Sent,
        };
        explain::client(e, &self.name, cert, self.has_ca).unwrap_or_else(|| e.to_string())
    }
}

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

/// The system's roots and `--tls-ca`.
fn roots(options: &ClientOptions) -> Result<RootCertStore> {
    let mut roots = match &options.ca {
        Some(path) => certs::read_roots(path)?,
        None => RootCertStore::empty(),
    };
    let (system, errors) = platform::system_roots();
    for e in errors {
        debug!("system roots: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(system);
    debug!("TLS: {added} system roots ({ignored} unusable)");
    if roots.is_empty() {
        warn!("TLS: no trusted roots found on this system; use --tls-ca FILE");
    }
    Ok(roots)
}

/// The client's certificate, if it has one; the server asking for one is remembered.
#[derive(Debug)]
struct OwnCert {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for OwnCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// `--tls-insecure`: any certificate will do; the handshake's signatures are still checked, so
/// the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct Anything(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Anything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A new server-side connection, for `Stream::new`.
pub fn accept(config: &Arc<ServerConfig>) -> Result<ServerConnection, rustls::Error> {
    ServerConnection::new(Arc::clone(config))
}

/// TLS record types are 20 to 24 (RFC 8446 5.1); a handshake starts with 22.
const HANDSHAKE: u8 = 22;

/// A client's first bytes: a TLS handshake record, or not TLS at all.
pub fn client_hello(bytes: &[u8]) -> FirstBytes {
    match bytes.first() {
        None => FirstBytes::Unsure,
        Some(&HANDSHAKE) => FirstBytes::Tls,
        Some(b) if b.is_ascii_graphic() || b.is_ascii_whitespace() => {
            FirstBytes::NotTls("not TLS: the client sent plain text".into())
        }
        Some(b) => FirstBytes::NotTls(format!(
            "not TLS: the client's first byte is 0x{b:02x}, not a TLS handshake"
        )),
    }
}

/// A server's first bytes: TLS, or a server that does not speak it. A plain echo server sends
/// our own ClientHello back (handshake type 1 where a ServerHello has 2), uppercased or not.
pub fn server_hello(bytes: &[u8]) -> FirstBytes {
    const NOT_TLS: &str = "the server does not speak TLS";
    match bytes {
        [] => FirstBytes::Unsure,
        [first, ..] if !(20..=24).contains(first) => FirstBytes::NotTls(format!(
            "{NOT_TLS}: it answered with {}",
            if first.is_ascii_graphic() || first.is_ascii_whitespace() {
                "plain text"
            } else {
                "something else"
            }
        )),
        [HANDSHAKE, _, _, _, _, 1, ..] => FirstBytes::NotTls(format!(
            "{NOT_TLS}: it echoed our TLS handshake back (a plain echo server? drop --tls)"
        )),
        [_, _, _, _, _, _, ..] => FirstBytes::Tls,
        _ => FirstBytes::Unsure,
    }
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

/// What `openssl s_client` users want to know, in two lines: the session, then the server's
/// certificate.
pub fn describe_server(conn: &ClientConnection) -> [String; 2] {
    let session = format!("TLS: {}", session(conn));
    let cert = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => {
            let d = certs::describe(cert);
            format!(
                "TLS: certificate {}, issued by {}, expires {}, SHA-256 {}",
                d.subject,
                d.issuer,
                d.not_after,
                certs::fingerprint(cert)
            )
        }
        None => "TLS: no certificate".into(),
    };
    [session, cert]
}

#[cfg(test)]
mod tests {
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
        assert_eq!(certs::date(1_614_816_000), "2021-03-04 00:00:00 UTC");
    }
}

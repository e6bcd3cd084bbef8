//! The client's side (the client's and bench's): what it trusts, the certificate it may
//! present, how a server's first bytes are judged, and what -v says of the server.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use log::{debug, warn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{Failed, FirstBytes, HANDSHAKE, Stream, Threads, certs, explain, provider, session};
use crate::platform;

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
        let name = ServerName::try_from(crate::addr::bare(shown))
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
            Err(e) => Err(match self.explain(&e) {
                Some(why) => std::io::Error::new(e.kind(), Failed(why)),
                None => e,
            }),
        }
    }

    /// The cause of an error on this connection, and its fix, where the error alone does not
    /// say them.
    pub fn explain(&self, e: &std::io::Error) -> Option<String> {
        let cert = match (
            self.own_cert.asked.load(Ordering::Relaxed),
            self.own_cert.key.is_some(),
        ) {
            (false, _) => explain::ClientCert::NotAsked,
            (true, false) => explain::ClientCert::AskedNone,
            (true, true) => explain::ClientCert::Sent,
        };
        explain::client(e, &self.name, cert, self.has_ca)
    }
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

/// A server's first bytes: TLS, or a server that does not speak it. A plain echo server sends
/// our own ClientHello back (handshake type 1 where a ServerHello has 2), uppercased or not.
pub(super) fn server_hello(bytes: &[u8]) -> FirstBytes {
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

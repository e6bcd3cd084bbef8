//! The server's side: its configuration (a certificate read or generated, mTLS) and how a
//! client's first bytes are judged.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use log::info;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection};

use super::{FirstBytes, HANDSHAKE, certs, provider};

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

/// The server's TLS configuration: its certificate (read, or generated for `names`: the
/// loopback names and `--host`), logged with how clients can trust it.
pub fn server_config(options: &ServerOptions, host: &str) -> Result<Arc<ServerConfig>> {
    let identity = match &options.identity {
        Some((cert, key)) => certs::read_identity(cert, key)?,
        None => {
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(Into::into).into();
            let host = crate::addr::bare(host);
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

/// A new server-side connection, for `Stream::new`.
pub fn accept(config: &Arc<ServerConfig>) -> Result<ServerConnection, rustls::Error> {
    ServerConnection::new(Arc::clone(config))
}

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

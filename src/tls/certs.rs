//! Certificates and keys: read from PEM files, generated for a server started with `--tls`
//! alone, and described for people (subject, issuer, expiry, SHA-256 fingerprint).

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate chain (the server's or a client's own) and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads a chain (leaf first) and its key, in the usual PEM forms: PKCS#8, PKCS#1 (RSA) or
/// SEC1 (EC) keys.
pub fn read_identity(cert: &Path, key: &Path) -> Result<Identity> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow!(
            "cannot read a private key from {}: {}",
            key.display(),
            pem_error(e)
        )
    })?;
    Ok(Identity { chain, key })
}

/// Every certificate in a PEM file; none is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow!(
                "cannot read certificates from {}: {}",
                path.display(),
                pem_error(e)
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{} holds no certificate (a PEM file with -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM block of that kind in it".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// A CA file as a trust store.
pub fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("cannot use a certificate in {} as a CA", path.display()))?;
    }
    Ok(roots)
}

/// A throwaway self-signed certificate (ECDSA P-256) for these names and addresses, valid
/// from a day ago (clocks differ) for a year, and its key: a server started with `--tls` alone
/// serves one.
pub fn generate(names: &[String]) -> Result<(Identity, String)> {
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).context("cannot generate a certificate")?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("tcpdemo temporary certificate for {}", names.join(" ")),
    );
    let signing_key = rcgen::KeyPair::generate().context("cannot generate a key")?;
    let cert = params
        .self_signed(&signing_key)
        .context("cannot generate a certificate")?;
    let key = PrivateKeyDer::try_from(signing_key.serialize_der())
        .map_err(|e| anyhow!("cannot use the generated key: {e}"))?;
    let pem = cert.pem();
    let chain = vec![cert.der().clone()];
    Ok((Identity { chain, key }, pem))
}

/// The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// What a certificate says of itself, for log lines.
pub struct Description {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

pub fn describe(cert: &CertificateDer<'_>) -> Description {
    match X509Certificate::from_der(cert.as_ref()) {
        Ok((_, parsed)) => Description {
            subject: parsed.subject().to_string(),
            issuer: parsed.issuer().to_string(),
            not_after: date(parsed.validity().not_after.timestamp()),
        },
        Err(_) => Description {
            subject: "(unreadable)".into(),
            issuer: "(unreadable)".into(),
            not_after: "(unreadable)".into(),
        },
    }
}

/// A certificate's time, as people read it: `2027-11-28 17:08:50 UTC`.
pub fn date(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} s after 1970"),
    }
}

/// A time from a certificate error.
pub fn unix_date(time: UnixTime) -> String {
    date(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
}

/// The names a certificate is for, as rustls lists them (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), as people write them.
pub fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented)
        .trim_matches('"');
    // rustls writes IPv6 addresses its own way (`0::1`).
    match inner.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => inner.to_string(),
    }
}

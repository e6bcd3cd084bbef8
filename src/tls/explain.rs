//! A failed TLS connection, explained: the cause in words, and the flag that fixes it.

use std::io::{self, ErrorKind};

use rustls::{AlertDescription, CertificateError, Error};
use rustls_pki_types::ServerName;

use super::Failed;
use super::certs::{plain_name, unix_date};

/// The rustls error inside an I/O error, if that is what it is.
fn rustls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref()?.downcast_ref::<Error>()
}

/// An error already explained (a peer that does not speak TLS).
fn explained(e: &io::Error) -> Option<&Failed> {
    e.get_ref()?.downcast_ref::<Failed>()
}

/// A server's failed handshake, for the connection's close line.
pub fn explain(e: &io::Error) -> String {
    if let Some(failed) = explained(e) {
        return failed.to_string();
    }
    match rustls_error(e) {
        Some(Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown),
        )) => format!(
            "TLS handshake failed: the client does not trust this server's certificate ({alert:?})"
        ),
        Some(Error::NoCertificatesPresented) => {
            "TLS handshake failed: the client sent no certificate (--tls-client-ca requires one)"
                .into()
        }
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "TLS handshake failed: the client's certificate is not signed by the --tls-client-ca CA"
                .into()
        }
        Some(Error::InvalidCertificate(why)) => {
            format!("TLS handshake failed: the client's certificate will not do: {why:?}")
        }
        Some(other) => format!("TLS handshake failed: {other}"),
        None if e.kind() == ErrorKind::TimedOut => "no TLS handshake in time".into(),
        None => format!("TLS handshake failed: {e}"),
    }
}

/// Whether the server asked for a client certificate, and whether we sent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    NotAsked,
    AskedNone,
    Sent,
}

/// A client's failed connection: `None` when there is nothing to add to the error itself.
/// `has_ca`: `--tls-ca` was given.
pub fn client(
    e: &io::Error,
    name: &ServerName<'_>,
    cert: ClientCert,
    has_ca: bool,
) -> Option<String> {
    let asked = cert == ClientCert::AskedNone;
    if let Some(failed) = explained(e) {
        return Some(failed.to_string());
    }
    let asked_for_cert = || {
        "the server asked for a client certificate: use --tls-cert FILE --tls-key FILE".to_string()
    };
    let Some(error) = rustls_error(e) else {
        return match e.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset if asked => {
                Some(asked_for_cert())
            }
            ErrorKind::TimedOut => {
                Some("no answer from the server in time (does it speak TLS?)".into())
            }
            ErrorKind::UnexpectedEof => Some("the server closed the connection".into()),
            _ => None,
        };
    };
    let name = name.to_str();
    let trusted = if has_ca {
        "by a CA this system or --tls-ca trusts"
    } else {
        "by a CA this system trusts"
    };
    Some(match error {
        Error::InvalidCertificate(why) => match why {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed {trusted} (self-signed?): use --tls-ca \
                 FILE, or --tls-insecure to skip verification"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the certificate is for {}, not {name} (connect by that name, or use \
                 --tls-server-name NAME)",
                presented
                    .iter()
                    .map(|n| plain_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CertificateError::NotValidForName => format!("the certificate is not for {name}"),
            CertificateError::ExpiredContext { not_after, .. } => {
                format!(
                    "the server's certificate expired on {}",
                    unix_date(*not_after)
                )
            }
            CertificateError::Expired => "the server's certificate has expired".into(),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "the server's certificate is not valid until {}",
                unix_date(*not_before)
            ),
            CertificateError::Other(other)
                if format!("{other:?}").contains("CaUsedAsEndEntity") =>
            {
                "the server's certificate is a CA's (basicConstraints CA:TRUE), which cannot be a \
                 server's own: issue it with CA:FALSE"
                    .into()
            }
            other => format!("the server's certificate is invalid: {other:?}"),
        },
        Error::AlertReceived(AlertDescription::CertificateRequired) => asked_for_cert(),
        Error::AlertReceived(_) if asked => asked_for_cert(),
        Error::AlertReceived(alert) if cert == ClientCert::Sent => format!(
            "the server did not accept our client certificate ({alert:?}; the server's log says \
             why)"
        ),
        other => other.to_string(),
    })
}

//! Host and port as users write them: `localhost`, `127.0.0.1`, `::1` or `[::1]`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::vec;

use anyhow::{Context, Result};

/// A host without the brackets an IPv6 address may come in: `[::1]` is `::1`.
pub(crate) fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Which of a host's addresses to use (netcat's `-4` and `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

impl Family {
    pub fn from_flags(ipv4: bool, ipv6: bool) -> Family {
        match (ipv4, ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        }
    }

    fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// Every address `host` names on `port`, in the resolver's order.
pub(crate) fn resolve(host: &str, port: u16) -> Result<vec::IntoIter<SocketAddr>> {
    resolve_only(host, port, Family::Any)
}

/// `resolve`, keeping only the addresses of `family`.
pub(crate) fn resolve_only(
    host: &str,
    port: u16,
    family: Family,
) -> Result<vec::IntoIter<SocketAddr>> {
    let all = (bare(host), port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?;
    let kept: Vec<SocketAddr> = all.filter(|a| family.admits(a)).collect();
    if kept.is_empty() && family != Family::Any {
        let which = if family == Family::V4 { "IPv4" } else { "IPv6" };
        anyhow::bail!("cannot resolve {host}: it has no {which} address");
    }
    Ok(kept.into_iter())
}

/// `host:port`, with an IPv6 address in brackets: `[::1]:1234`.
pub(crate) fn show(host: &str, port: u16) -> String {
    match bare(host) {
        v6 if v6.contains(':') => format!("[{v6}]:{port}"),
        name => format!("{name}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_shown_in_brackets_whether_or_not_given_in_them() {
        assert_eq!(show("::1", 80), "[::1]:80");
        assert_eq!(show("[::1]", 80), "[::1]:80");
        assert_eq!(show("localhost", 80), "localhost:80");
        assert!(resolve("[::1]", 80).is_ok());
    }

    #[test]
    fn a_family_keeps_only_its_addresses() {
        let v4: Vec<_> = resolve_only("127.0.0.1", 80, Family::V4).unwrap().collect();
        assert_eq!(v4.len(), 1);
        let error = resolve_only("127.0.0.1", 80, Family::V6).unwrap_err();
        assert!(error.to_string().contains("no IPv6 address"), "{error}");
    }
}

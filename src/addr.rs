//! Host and port as users write them: `localhost`, `127.0.0.1`, `::1` or `[::1]`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::vec;

use anyhow::{Context, Result};

fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Every address `host` names on `port`, in the resolver's order.
pub fn resolve(host: &str, port: u16) -> Result<vec::IntoIter<SocketAddr>> {
    (bare(host), port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))
}

/// `host:port`, with an IPv6 address in brackets: `[::1]:1234`.
pub fn show(host: &str, port: u16) -> String {
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
}

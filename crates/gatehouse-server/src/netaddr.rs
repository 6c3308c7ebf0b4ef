//! The client's address: the socket peer, or the nearest untrusted hop of `X-Forwarded-For`
//! when (and only when) the peer is a configured trusted proxy.

use std::net::IpAddr;

use gatehouse_core::ipallow::canonical;
use http::HeaderMap;
use ipnet::IpNet;

/// Walks `X-Forwarded-For` from the right, skipping trusted proxies; the first other hop is the client.
/// Malformed entries stop the walk at the last address we could trust.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// The client address of a request's `parts`: its peer, or per [`client_ip`] behind trusted proxies.
/// `None` when the connection's peer is not known (a request not from a socket).
pub(crate) fn client_of(parts: &http::request::Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?.0.ip();
    Some(client_ip(peer, &parts.headers, trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_table() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let rows: &[(&str, &[&str], &str)] = &[
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            ("10.0.0.2", &["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6, 1.2.3.4, 10.0.0.7"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6", "1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["garbage, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["1.2.3.4, garbage"], "10.0.0.2"),
            ("10.0.0.2", &[], "10.0.0.2"),
            ("::ffff:10.0.0.2", &["1.2.3.4"], "1.2.3.4"),
        ];
        for (peer, xff, want) in rows {
            let mut h = HeaderMap::new();
            for v in *xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            assert_eq!(client_ip(peer.parse().unwrap(), &h, &trusted).to_string(), *want, "{peer} {xff:?}");
        }
    }
}

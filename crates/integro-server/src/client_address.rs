//! The address a request comes from, for the throttles that count per
//! source: the TCP peer's, unless the peer is a trusted reverse proxy
//! (`INTEGRO_TRUSTED_PROXIES`), in which case the last address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Without trusted
//! proxies the header is never read: anyone can write it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

/// The peer's address a request's extensions hold (unspecified when the
/// server was not started with connection info).
pub fn peer(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client's address given the TCP peer's and the request's headers,
/// trusting `X-Forwarded-For` only from `trusted` peers.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Each proxy appends the address it received from: read from the right,
    // past our own proxies, to the first address none of them added.
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: Option<&str>) -> (Extensions, HeaderMap) {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let mut headers = HeaderMap::new();
        if let Some(f) = forwarded {
            headers.insert("x-forwarded-for", f.parse().unwrap());
        }
        (extensions, headers)
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let (e, h) = request("203.0.113.9:4000", Some("198.51.100.1"));
        assert_eq!(
            client_address(super::peer(&e), &h, &[proxy]).to_string(),
            "203.0.113.9"
        );
        let (e, h) = request("10.0.0.2:4000", Some("1.2.3.4, 198.51.100.1"));
        assert_eq!(
            client_address(super::peer(&e), &h, &[proxy]).to_string(),
            "198.51.100.1"
        );
        let (e, h) = request("10.0.0.2:4000", Some("198.51.100.1, 10.0.0.2"));
        assert_eq!(
            client_address(super::peer(&e), &h, &[proxy]).to_string(),
            "198.51.100.1"
        );
        let (e, h) = request("10.0.0.2:4000", None);
        assert_eq!(
            client_address(super::peer(&e), &h, &[proxy]).to_string(),
            "10.0.0.2"
        );
        let (e, h) = request("10.0.0.2:4000", Some("198.51.100.1"));
        assert_eq!(
            client_address(super::peer(&e), &h, &[]).to_string(),
            "10.0.0.2"
        );
    }
}

//! Filter chain selection, Envoy's order: destination port, destination IP (longest
//! prefix), server name (exact, then longest `*.` wildcard), transport protocol,
//! application protocol, source IP (longest prefix), source port. At each step the
//! chains that name the connection's value explicitly win; chains that say nothing are
//! the fallback; if neither exists, nothing matches.

use std::net::{IpAddr, SocketAddr};

use crate::config::listener::{ChainMatch, FilterChain, Listener};

/// What chain matching reads from a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub dst: SocketAddr,
    pub src: SocketAddr,
    pub sni: Option<String>,
    pub transport: &'static str,
    pub alpn: Vec<String>,
}

fn in_range(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Keeps the candidates with the best score (`Some`); falls back to those for which
/// the criterion is unset (`None` score from `unset`).
fn narrow(
    chains: Vec<&FilterChain>,
    unset: impl Fn(&ChainMatch) -> bool,
    score: impl Fn(&ChainMatch) -> Option<usize>,
) -> Vec<&FilterChain> {
    let best = chains
        .iter()
        .filter(|c| !unset(&c.matcher))
        .filter_map(|c| score(&c.matcher))
        .max();
    match best {
        Some(b) => chains
            .into_iter()
            .filter(|c| !unset(&c.matcher) && score(&c.matcher) == Some(b))
            .collect(),
        None => chains.into_iter().filter(|c| unset(&c.matcher)).collect(),
    }
}

fn best_prefix(ranges: &[(IpAddr, u8)], ip: IpAddr) -> Option<usize> {
    ranges
        .iter()
        .filter(|r| in_range(ip, **r))
        .map(|r| usize::from(r.1))
        .max()
}

fn sni_score(names: &[String], sni: Option<&str>) -> Option<usize> {
    let sni = sni?;
    names
        .iter()
        .filter_map(|n| {
            if n == sni {
                Some(usize::MAX)
            } else if let Some(suffix) = n.strip_prefix('*') {
                (sni.len() > suffix.len() && sni.ends_with(suffix)).then_some(suffix.len())
            } else {
                None
            }
        })
        .max()
}

/// The chain `conn` selects on `l`, or the listener's default chain.
pub fn select<'a>(l: &'a Listener, conn: &ConnInfo) -> Option<&'a FilterChain> {
    let mut c: Vec<&FilterChain> = l.chains.iter().collect();
    c = narrow(
        c,
        |m| m.destination_port.is_none(),
        |m| (m.destination_port == Some(conn.dst.port())).then_some(1),
    );
    c = narrow(
        c,
        |m| m.prefix_ranges.is_empty(),
        |m| best_prefix(&m.prefix_ranges, conn.dst.ip()),
    );
    c = narrow(
        c,
        |m| m.server_names.is_empty(),
        |m| sni_score(&m.server_names, conn.sni.as_deref()),
    );
    c = narrow(
        c,
        |m| m.transport_protocol.is_none(),
        |m| (m.transport_protocol.as_deref() == Some(conn.transport)).then_some(1),
    );
    c = narrow(
        c,
        |m| m.application_protocols.is_empty(),
        |m| {
            m.application_protocols
                .iter()
                .any(|p| conn.alpn.contains(p))
                .then_some(1)
        },
    );
    c = narrow(
        c,
        |m| m.source_prefix_ranges.is_empty(),
        |m| best_prefix(&m.source_prefix_ranges, conn.src.ip()),
    );
    c = narrow(
        c,
        |m| m.source_ports.is_empty(),
        |m| m.source_ports.contains(&conn.src.port()).then_some(1),
    );
    c.first().copied().or(l.default_chain.as_ref())
}

/// Whether any chain needs the TLS or HTTP inspector's answer.
pub fn needs_inspection(l: &Listener) -> (bool, bool) {
    let tls = l.tls_inspector
        && l.chains
            .iter()
            .any(|c| !c.matcher.server_names.is_empty() || c.matcher.transport_protocol.is_some());
    let http = l.http_inspector
        && l.chains
            .iter()
            .any(|c| !c.matcher.application_protocols.is_empty());
    (
        tls,
        http || (l.tls_inspector
            && l.chains
                .iter()
                .any(|c| !c.matcher.application_protocols.is_empty())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("10.1.2.3"), (ip("10.0.0.0"), 8)));
        assert!(!in_range(ip("11.1.2.3"), (ip("10.0.0.0"), 8)));
        assert!(in_range(ip("1.2.3.4"), (ip("0.0.0.0"), 0)));
        assert!(in_range(ip("::1"), (ip("::1"), 128)));
        assert_eq!(
            sni_score(&["*.example.com".into()], Some("a.example.com")),
            Some(12)
        );
        assert_eq!(
            sni_score(&["*.example.com".into()], Some(".example.com")),
            None
        );
    }
}

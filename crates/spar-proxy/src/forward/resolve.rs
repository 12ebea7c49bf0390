//! Where a name the application asked its forward proxy for goes: the address a captured
//! connection to that service would have had, so the same listener, routes and policies
//! apply.
//!
//! In a pod, `reviews` resolves (search list `<ns>.svc.cluster.local`, `svc.cluster.local`)
//! to the service's cluster IP and iptables hands the connection to the sidecar with that
//! original destination. The forward proxy gets the name itself, so it looks it up in what
//! the control plane sent:
//! - a TCP service has its own outbound listener `<vip>_<port>` whose TCP proxy names the
//!   service's cluster (`outbound|<port>|<subset>|<host>`): the destination is that VIP;
//! - an HTTP service shares the port's wildcard listener `0.0.0.0_<port>`, whose route
//!   configuration lists the service's names among a virtual host's domains: the destination
//!   is the wildcard address, and the request is routed by its Host as in a pod;
//! - any other name is resolved with the system resolver and goes where a captured
//!   connection to that address would (PassthroughCluster or BlackHoleCluster, as the
//!   mesh's `outboundTrafficPolicy` made the sidecar's `virtualOutbound`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::listener::{NetworkFilter, Routes};
use crate::config::Snapshot;

/// Why a name has no destination.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{host} is not a service of the mesh and the system resolver does not know it: {why}")]
    Unknown { host: String, why: String },
}

/// The destination for `host:port` (see the module docs). `namespace` is the proxy's own,
/// for short names as a pod's resolver search list expands them.
pub async fn resolve(
    snap: &Snapshot,
    namespace: &str,
    host: &str,
    port: u16,
) -> Result<SocketAddr, ResolveError> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    let names = search_list(&host, namespace);
    if let Some(dst) = mesh_destination(snap, &names, port) {
        return Ok(dst);
    }
    let found = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(|mut addrs| addrs.next());
    match found {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(ResolveError::Unknown {
            host,
            why: "no addresses".into(),
        }),
        Err(e) => Err(ResolveError::Unknown {
            host,
            why: e.to_string(),
        }),
    }
}

/// The names `host` may stand for, most specific first, as a pod's resolv.conf expands them.
pub fn search_list(host: &str, namespace: &str) -> Vec<String> {
    let mut out = vec![host.to_string()];
    let suffix = "svc.cluster.local";
    match host.matches('.').count() {
        0 => {
            out.push(format!("{host}.{namespace}.{suffix}"));
            out.push(format!("{host}.{namespace}"));
        }
        1 => out.push(format!("{host}.{suffix}")),
        _ => {}
    }
    out
}

/// The address a captured connection to one of `names` on `port` would have had.
fn mesh_destination(snap: &Snapshot, names: &[String], port: u16) -> Option<SocketAddr> {
    let on_port = || snap.listeners.values().filter(|l| l.address.port() == port);
    // A TCP service: its own listener at its VIP.
    for l in on_port().filter(|l| !l.address.ip().is_unspecified()) {
        for chain in &l.chains {
            if let NetworkFilter::Tcp(t) = &chain.filter {
                let serves = t.clusters.iter().any(|(c, _)| {
                    c.rsplit('|')
                        .next()
                        .is_some_and(|h| names.iter().any(|n| n == h))
                });
                if serves {
                    return Some(l.address);
                }
            }
        }
    }
    // An HTTP service: a virtual host of the port's wildcard listener names it.
    for l in on_port().filter(|l| l.address.ip().is_unspecified()) {
        for chain in &l.chains {
            let NetworkFilter::Http(hcm) = &chain.filter else {
                continue;
            };
            let rc = match &hcm.routes {
                Routes::Inline(rc) => Some(&**rc),
                Routes::Rds(name) => snap.routes.get(name).map(|r| &**r),
            };
            let with_port = |n: &String| format!("{n}:{port}");
            let named = rc.is_some_and(|rc| {
                rc.virtual_hosts.iter().any(|vh| {
                    vh.domains
                        .iter()
                        .any(|d| names.iter().any(|n| d == n || *d == with_port(n)))
                })
            });
            if named {
                return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::search_list;

    #[test]
    fn short_names_expand_like_a_pods_resolver() {
        assert_eq!(
            search_list("reviews", "bookinfo"),
            [
                "reviews",
                "reviews.bookinfo.svc.cluster.local",
                "reviews.bookinfo"
            ]
        );
        assert_eq!(
            search_list("reviews.other", "bookinfo"),
            ["reviews.other", "reviews.other.svc.cluster.local"]
        );
        assert_eq!(search_list("example.com.x", "ns"), ["example.com.x"]);
    }
}

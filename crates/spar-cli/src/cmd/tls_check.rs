//! `spar ctl tls-check <proxy> <service>`: the effective mutual-TLS mode on both sides of
//! every port of a service, as the proxies were actually sent it (Istio's old
//! `istioctl authn tls-check`).
//!
//! The client side is `<proxy>`'s outbound cluster for each port: ISTIO_MUTUAL (the SDS
//! `default`/`ROOTCA` pair), MUTUAL or SIMPLE (other TLS), AUTO (TLS only to endpoints
//! marked `tlsMode: istio`) or DISABLE. The server side is, for each endpoint of that
//! cluster, the connected sidecar at that address: its `virtualInbound` chains for the port
//! say STRICT (TLS with a client certificate only), PERMISSIVE (TLS or plaintext) or
//! DISABLE (plaintext); an address with no connected sidecar takes plaintext only. A client
//! that sends TLS to a plaintext-only server, or plaintext to a STRICT one, is a CONFLICT;
//! the exit code is then 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;
use spar_proxy::config::cluster::Cluster;
use spar_proxy::config::tls::{Source, UpstreamTls};
use spar_proxy::Snapshot;

use super::ctl::http_get;

/// Whether the two sides of a service agree on mutual TLS.
#[derive(clap::Args)]
pub struct Args {
    /// The client proxy: its node id, or `<pod>.<namespace>`.
    pub proxy: String,

    /// The service host (`reviews.default.svc.cluster.local`; `reviews.default` and
    /// `reviews` are completed with the proxy's namespace).
    pub service: String,

    /// The control plane's monitoring address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub cp: String,
}

#[derive(Deserialize)]
struct Proxy {
    proxy: String,
}

/// What a client cluster sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    IstioMutual,
    Mutual,
    Simple,
    /// ISTIO_MUTUAL to endpoints marked `tlsMode: istio`, plaintext to the rest.
    Auto,
    Disable,
}

impl Client {
    fn of(c: &Cluster) -> Client {
        match &c.tls {
            Some(t) if is_istio(t) => Client::IstioMutual,
            Some(t) if t.cert.is_some() => Client::Mutual,
            Some(_) => Client::Simple,
            None if c.tls_matches.iter().any(|m| {
                m.tls.is_some() && m.fields.iter().any(|(k, v)| k == "tlsMode" && v == "istio")
            }) =>
            {
                Client::Auto
            }
            None => Client::Disable,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Client::IstioMutual => "ISTIO_MUTUAL",
            Client::Mutual => "MUTUAL",
            Client::Simple => "SIMPLE",
            Client::Auto => "AUTO",
            Client::Disable => "DISABLE",
        }
    }

    /// Whether it sends TLS to an endpoint with these transport-socket-match fields.
    fn sends_tls(self, tls_match: &[(String, String)]) -> bool {
        match self {
            Client::Disable => false,
            Client::Auto => tls_match
                .iter()
                .any(|(k, v)| k == "tlsMode" && v == "istio"),
            _ => true,
        }
    }
}

fn is_istio(t: &UpstreamTls) -> bool {
    matches!(&t.cert, Some(Source::Sds(n)) if n == "default")
        && matches!(&t.validation, Some(Source::Sds(n)) if n == "ROOTCA")
}

/// What a server sidecar accepts on a port.
fn server_mode(s: &Snapshot, port: u16) -> &'static str {
    let Some(inbound) = s.listeners.get("virtualInbound") else {
        return "NO INBOUND";
    };
    let on_port: Vec<_> = inbound
        .chains
        .iter()
        .filter(|c| c.matcher.destination_port == Some(port))
        .collect();
    let chains: Vec<_> = if on_port.is_empty() {
        inbound
            .chains
            .iter()
            .filter(|c| c.matcher.destination_port.is_none())
            .collect()
    } else {
        on_port
    };
    let mtls = chains
        .iter()
        .any(|c| c.tls.as_ref().is_some_and(|t| t.require_client_cert));
    let plain = chains
        .iter()
        .any(|c| c.tls.is_none() && c.matcher.transport_protocol.as_deref() != Some("tls"));
    match (mtls, plain) {
        (true, false) => "STRICT",
        (true, true) => "PERMISSIVE",
        _ => "DISABLE",
    }
}

/// The full host name of `service` as `proxy_id`'s namespace completes it.
fn full_host(service: &str, proxy_id: &str) -> String {
    let ns = proxy_id
        .split('~')
        .nth(2)
        .and_then(|p| p.rsplit_once('.'))
        .map_or("default", |(_, ns)| ns);
    match service.matches('.').count() {
        0 => format!("{service}.{ns}.svc.cluster.local"),
        1 => format!("{service}.svc.cluster.local"),
        _ => service.to_string(),
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let id = super::proxy_config::resolve(&args.cp, &args.proxy)?;
    let client = super::explain::online(&args.cp, &id)?;
    let host = full_host(&args.service, &id);
    let suffix = format!("||{host}");
    let clusters: Vec<(&String, &std::sync::Arc<Cluster>)> = client
        .clusters
        .iter()
        .filter(|(n, _)| n.starts_with("outbound|") && n.ends_with(&suffix))
        .collect();
    if clusters.is_empty() {
        anyhow::bail!(
            "{id} has no outbound cluster for {host} (is the host right, and visible to it? see `spar ctl proxy-config {} clusters`)",
            args.proxy
        );
    }
    // Connected sidecars by IP (the node id's second part).
    let proxies: Vec<Proxy> = serde_json::from_str(&http_get(&args.cp, "/debug/syncz")?)
        .context("reading /debug/syncz")?;
    let by_ip: BTreeMap<String, String> = proxies
        .into_iter()
        .filter(|p| p.proxy.starts_with("sidecar~"))
        .filter_map(|p| Some((p.proxy.split('~').nth(1)?.to_string(), p.proxy.clone())))
        .collect();
    let mut servers: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:<10} {:<13} {:<11} {:<22} SERVER SIDECAR",
        "HOST:PORT", "STATUS", "CLIENT", "SERVER", "ENDPOINT"
    );
    let mut conflict = false;
    for (name, c) in clusters {
        let port = name.split('|').nth(1).unwrap_or("?");
        let mode = Client::of(c);
        let eds = if c.eds_service_name.is_empty() {
            name.as_str()
        } else {
            c.eds_service_name.as_str()
        };
        let hosts: Vec<_> = client
            .assignments
            .get(eds)
            .map(|ls| ls.iter().flat_map(|l| l.hosts.iter()).cloned().collect())
            .or_else(|| {
                c.inline_hosts
                    .as_ref()
                    .map(|ls| ls.iter().flat_map(|l| l.hosts.iter()).cloned().collect())
            })
            .unwrap_or_default();
        if hosts.is_empty() {
            let _ = writeln!(
                out,
                "{:<48} {:<10} {:<13} {:<11} {:<22} -",
                format!("{host}:{port}"),
                "NO ENDPOINTS",
                mode.name(),
                "-",
                "-"
            );
            continue;
        }
        for h in hosts {
            let ip = h.hostname.clone();
            let (server, sidecar) = match by_ip.get(&ip) {
                Some(server_id) => {
                    if !servers.contains_key(server_id) {
                        let snap = super::explain::online(&args.cp, server_id)
                            .with_context(|| format!("reading what {server_id} was sent"))?;
                        servers.insert(server_id.clone(), snap);
                    }
                    (server_mode(&servers[server_id], h.port), server_id.as_str())
                }
                None => ("PLAINTEXT", "none"),
            };
            let tls = mode.sends_tls(&h.tls_match);
            let ok = match server {
                "STRICT" => tls && matches!(mode, Client::IstioMutual | Client::Auto),
                "PERMISSIVE" => true,
                _ => !tls,
            };
            conflict |= !ok;
            let _ = writeln!(
                out,
                "{:<48} {:<10} {:<13} {:<11} {:<22} {sidecar}",
                format!("{host}:{port}"),
                if ok { "OK" } else { "CONFLICT" },
                match (mode, tls) {
                    // Auto mTLS decides per endpoint: say what this one gets.
                    (Client::Auto, true) => "AUTO mTLS",
                    (Client::Auto, false) => "AUTO plain",
                    _ => mode.name(),
                },
                server,
                format!("{ip}:{}", h.port),
            );
        }
    }
    print!("{out}");
    Ok(if conflict {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_completed_with_the_proxy_namespace() {
        let id = "sidecar~10.0.0.1~productpage-1.bookinfo~bookinfo.svc.cluster.local";
        assert_eq!(
            full_host("reviews", id),
            "reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            full_host("reviews.other", id),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(
            full_host("a.b.svc.cluster.local", id),
            "a.b.svc.cluster.local"
        );
    }
}

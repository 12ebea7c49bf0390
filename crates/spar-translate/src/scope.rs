//! The `Sidecar` resource: which services a sidecar sees (`egress[].hosts`) and its
//! own `outboundTrafficPolicy`.
//!
//! Selection follows Istio: a Sidecar in the proxy's namespace whose `workloadSelector`
//! matches the proxy's labels, else the one in its namespace without a selector, else the
//! one in the root namespace without a selector. Egress hosts are `<namespace>/<host>`
//! with namespace `*` (any), `.` (the proxy's) or `~` (none), and host `*`, `*.suffix`
//! or a hostname. Egress listeners' `port`, `bind` and `captureMode` shape the outbound
//! listeners, see [`crate::listener::sidecar`].

use spar_model::istio::types::{OutboundTrafficPolicyMode, Sidecar};
use spar_model::{Kind, Resource};
use spar_registry::Service;

use crate::node::ProxyNode;

/// The Sidecar resource in force for `node`, if any.
pub fn select<'a>(config: &'a spar_model::ConfigSet, node: &'a ProxyNode) -> Option<&'a Sidecar> {
    let sidecars: Vec<(&Resource, &Sidecar)> = config
        .of_kind(Kind::Sidecar)
        .filter_map(|r| Some((r, r.body.sidecar()?)))
        .collect();
    let root = config.root_namespace();
    let node_ns = node.namespace.as_str();
    let in_ns = |ns: &'a str| sidecars.iter().filter(move |(r, _)| r.meta.namespace == ns);
    let selecting = in_ns(node_ns).find(|(_, s)| {
        s.workload_selector.as_ref().is_some_and(|sel| {
            !sel.labels.is_empty()
                && sel
                    .labels
                    .iter()
                    .all(|(k, v)| node.labels.get(k) == Some(v))
        })
    });
    selecting
        .or_else(|| in_ns(node_ns).find(|(_, s)| s.workload_selector.is_none()))
        .or_else(|| in_ns(root).find(|(_, s)| s.workload_selector.is_none()))
        .map(|(_, s)| *s)
}

fn host_allows(pattern: &str, hostname: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => hostname.ends_with(suffix),
        None => pattern == hostname,
    }
}

/// Whether one `ns/host` egress entry admits `svc` for a proxy in `node_ns`.
pub fn entry_allows(entry: &str, svc: &Service, node_ns: &str) -> bool {
    let (ns, host) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = match ns {
        "*" => true,
        "~" => false,
        "." => svc.namespace == node_ns,
        other => svc.namespace == other,
    };
    ns_ok && host_allows(host, &svc.hostname)
}

/// Whether the Sidecar lets the proxy see `svc` (no egress section: everything).
pub fn allows(sidecar: &Sidecar, svc: &Service, node_ns: &str) -> bool {
    sidecar.egress.is_empty()
        || sidecar
            .egress
            .iter()
            .flat_map(|e| e.hosts.iter())
            .any(|h| entry_allows(h, svc, node_ns))
}

/// The Sidecar's own `outboundTrafficPolicy` mode: `Some(true)` for ALLOW_ANY.
pub fn allow_any(sidecar: &Sidecar) -> Option<bool> {
    sidecar
        .outbound_traffic_policy
        .as_ref()
        .and_then(|p| p.mode)
        .map(|m| m == OutboundTrafficPolicyMode::AllowAny)
}

//! Gateways: selectors that match no gateway workload, and servers that conflict on
//! one workload and port.

use spar_model::istio::Gateway;
use spar_model::resource::Resource;
use spar_model::{Diagnostic, FieldPath, Kind};

use crate::codes;
use crate::finding;
use crate::index::{hosts_overlap, labels_match, Index};

pub fn analyze(idx: &Index, out: &mut Vec<Diagnostic>) {
    let gateways: Vec<(&Resource, &Gateway)> = idx
        .set
        .of_kind(Kind::Gateway)
        .filter_map(|r| r.body.gateway().map(|g| (r, g)))
        .collect();
    if idx.knows_workloads() {
        for (r, g) in &gateways {
            if idx.workloads_matching(None, &g.selector).next().is_none() {
                let selector = g
                    .selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push(finding(
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    FieldPath::root().field("spec").field("selector"),
                    format!(
                        "the selector {selector} referenced by this Gateway matches no workload; no gateway will serve it (check the gateway Deployment's pod labels)"
                    ),
                ));
            }
        }
    }
    for (i, (ra, ga)) in gateways.iter().enumerate() {
        for (rb, gb) in gateways.iter().skip(i + 1) {
            if !same_workloads(idx, ga, gb) {
                continue;
            }
            conflicts(ra, ga, rb, gb, out);
        }
    }
}

/// Two gateways apply to the same proxies when their selectors are equal, or when the
/// input's workloads show one proxy selected by both.
fn same_workloads(idx: &Index, a: &Gateway, b: &Gateway) -> bool {
    a.selector == b.selector
        || idx
            .workloads
            .iter()
            .any(|w| labels_match(&a.selector, w.labels) && labels_match(&b.selector, w.labels))
}

fn conflicts(ra: &Resource, ga: &Gateway, rb: &Resource, gb: &Gateway, out: &mut Vec<Diagnostic>) {
    for (i, sa) in ga.servers.iter().enumerate() {
        let Some(pa) = &sa.port else { continue };
        for sb in &gb.servers {
            let Some(pb) = &sb.port else { continue };
            if pa.number != pb.number || pa.number.is_none() {
                continue;
            }
            let proto = |p: &Option<String>| p.as_deref().unwrap_or("").to_ascii_uppercase();
            let host_clash = sa.hosts.iter().any(|ha| {
                sb.hosts
                    .iter()
                    .any(|hb| hosts_overlap(strip_ns(ha), strip_ns(hb)))
            });
            let protocol_clash = proto(&pa.protocol) != proto(&pb.protocol);
            // Same hosts over plain HTTP merge; TLS-terminated and TCP servers cannot share.
            let tls_or_tcp = !matches!(
                proto(&pa.protocol).as_str(),
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
            );
            if protocol_clash || (host_clash && tls_or_tcp) {
                let why = if protocol_clash {
                    format!(
                        "protocol {} vs {}",
                        proto(&pa.protocol),
                        proto(&pb.protocol)
                    )
                } else {
                    "overlapping hosts".to_string()
                };
                out.push(finding(
                    codes::CONFLICTING_GATEWAYS,
                    ra,
                    FieldPath::root().field("spec").field("servers").index(i).field("port"),
                    format!(
                        "conflicts with Gateway {}/{} on port {} ({why}); one workload cannot serve both — use different ports or merge the servers",
                        rb.namespace(),
                        rb.name(),
                        pa.number.unwrap_or_default()
                    ),
                ));
            }
        }
    }
}

fn strip_ns(host: &str) -> &str {
    host.split_once('/').map_or(host, |(_, h)| h)
}

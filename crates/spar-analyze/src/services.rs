//! Services and their subsets: DestinationRule subsets that select nothing, addresses
//! claimed twice, and Sidecar egress hosts that match no service.

use std::collections::BTreeMap;

use spar_model::{Diagnostic, FieldPath, Kind};

use crate::codes;
use crate::finding;
use crate::index::{hosts_overlap, labels_match, qualify, Index};

pub fn analyze(idx: &Index, out: &mut Vec<Diagnostic>) {
    subsets(idx, out);
    addresses(idx, out);
    sidecar_egress(idx, out);
}

fn subsets(idx: &Index, out: &mut Vec<Diagnostic>) {
    if !idx.knows_workloads() {
        return;
    }
    for r in idx.set.of_kind(Kind::DestinationRule) {
        let Some(dr) = r.body.destination_rule() else {
            continue;
        };
        let Some(host) = dr.host.as_deref() else {
            continue;
        };
        for svc in idx.services_for_host(host, r.namespace()) {
            let Some(selector) = svc.selector else {
                continue;
            };
            // Judge only services whose workloads the input describes.
            if idx
                .workloads_matching(Some(svc.namespace), selector)
                .next()
                .is_none()
            {
                continue;
            }
            for (i, subset) in dr.subsets.iter().enumerate() {
                let mut wanted: BTreeMap<String, String> = selector.clone();
                wanted.extend(subset.labels.clone());
                let selects = idx
                    .workloads
                    .iter()
                    .any(|w| w.namespace == svc.namespace && labels_match(&wanted, w.labels));
                if !selects {
                    let labels = subset
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    out.push(finding(
                        codes::SUBSET_SELECTS_NO_WORKLOAD,
                        r,
                        FieldPath::root().field("spec").field("subsets").index(i),
                        format!(
                            "subset {} (labels {labels}) selects none of the workloads of {}; requests routed to it fail with 503 (no healthy upstream)",
                            subset.name.as_deref().unwrap_or("?"),
                            svc.host
                        ),
                    ));
                }
            }
        }
    }
}

fn addresses(idx: &Index, out: &mut Vec<Diagnostic>) {
    for (i, a) in idx.services.iter().enumerate() {
        for b in idx.services.iter().skip(i + 1) {
            if std::ptr::eq(a.resource, b.resource) {
                continue;
            }
            let shared: Vec<&String> = a
                .addresses
                .iter()
                .filter(|x| b.addresses.contains(x))
                .collect();
            let ports_overlap = a.ports.is_empty()
                || b.ports.is_empty()
                || a.ports.iter().any(|p| b.ports.contains(p));
            if shared.is_empty() || !ports_overlap {
                continue;
            }
            for r in [a.resource, b.resource] {
                let (this, other) = if std::ptr::eq(r, a.resource) {
                    (a, b)
                } else {
                    (b, a)
                };
                out.push(finding(
                    codes::SERVICE_ENTRY_ADDRESS_CONFLICT,
                    r,
                    FieldPath::root().field("spec").field(if r.kind == Kind::Service { "clusterIP" } else { "addresses" }),
                    format!(
                        "address {} of {} is also claimed by {} ({} {}/{}); traffic to it reaches only one of them",
                        shared[0],
                        this.host,
                        other.host,
                        other.resource.kind,
                        other.resource.namespace(),
                        other.resource.name()
                    ),
                ));
            }
        }
    }
}

fn sidecar_egress(idx: &Index, out: &mut Vec<Diagnostic>) {
    for r in idx.set.of_kind(Kind::Sidecar) {
        let Some(sc) = r.body.sidecar() else { continue };
        for (i, listener) in sc.egress.iter().enumerate() {
            for (j, entry) in listener.hosts.iter().enumerate() {
                let Some((ns, host)) = entry.split_once('/') else {
                    continue;
                };
                if ns == "~" || host == "*" {
                    continue;
                }
                let ns = if ns == "." { r.namespace() } else { ns };
                let matched = idx.services.iter().any(|s| {
                    (ns == "*" || s.namespace == ns)
                        && qualify(host, s.namespace)
                            .iter()
                            .any(|h| hosts_overlap(h, &s.host))
                });
                if !matched {
                    out.push(finding(
                        codes::SIDECAR_EGRESS_HOST_UNMATCHED,
                        r,
                        FieldPath::root().field("spec").field("egress").index(i).field("hosts").index(j),
                        format!("egress host {entry} matches no service or ServiceEntry; calls to it will not be routed"),
                    ));
                }
            }
        }
    }
}

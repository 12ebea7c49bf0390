//! VirtualService references and conflicts: gateways, destination hosts and subsets,
//! hosts claimed twice, and rules bound to a gateway but not to the mesh.

use std::collections::BTreeMap;

use spar_model::istio::{Destination, VirtualService};
use spar_model::resource::Resource;
use spar_model::{Diagnostic, FieldPath, Kind};

use crate::codes;
use crate::finding;
use crate::index::{hosts_overlap, qualify, Index};

pub fn analyze(idx: &Index, out: &mut Vec<Diagnostic>) {
    let mut mesh_hosts: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    let mut gateway_hosts: BTreeMap<(String, String), Vec<&Resource>> = BTreeMap::new();
    for r in idx.set.of_kind(Kind::VirtualService) {
        let Some(vs) = r.body.virtual_service() else {
            continue;
        };
        let spec = FieldPath::root().field("spec");
        check_gateways(idx, r, vs, &spec, out);
        check_destinations(idx, r, vs, &spec, out);
        check_mesh_binding(idx, r, vs, &spec, out);
        let gateways = bound_gateways(r, vs);
        for host in &vs.hosts {
            let fq = qualify(host, r.namespace()).swap_remove(0);
            for g in &gateways {
                if g == "mesh" {
                    mesh_hosts.entry(fq.clone()).or_default().push(r);
                } else {
                    gateway_hosts
                        .entry((g.clone(), fq.clone()))
                        .or_default()
                        .push(r);
                }
            }
        }
    }
    for (host, claimants) in mesh_hosts.iter().filter(|(_, v)| v.len() > 1) {
        let names = names_of(claimants);
        for r in claimants {
            out.push(finding(
                codes::CONFLICTING_VIRTUAL_SERVICE_HOSTS,
                r,
                FieldPath::root().field("spec").field("hosts"),
                format!(
                    "the VirtualServices {names} associated with mesh define the same host {host}; only one takes effect for sidecars — merge them into one VirtualService"
                ),
            ));
        }
    }
    for ((gateway, host), claimants) in gateway_hosts.iter().filter(|(_, v)| v.len() > 1) {
        let names = names_of(claimants);
        for r in claimants {
            out.push(finding(
                codes::GATEWAY_VIRTUAL_SERVICE_HOST_OVERLAP,
                r,
                FieldPath::root().field("spec").field("hosts"),
                format!(
                    "the VirtualServices {names} bound to gateway {gateway} define the same host {host}; their routes are merged and the first match wins"
                ),
            ));
        }
    }
}

fn names_of(rs: &[&Resource]) -> String {
    rs.iter()
        .map(|r| format!("{}/{}", r.namespace(), r.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ns/name` of every gateway a VirtualService binds to; `mesh` when none is listed.
fn bound_gateways(r: &Resource, vs: &VirtualService) -> Vec<String> {
    if vs.gateways.is_empty() {
        return vec!["mesh".to_string()];
    }
    vs.gateways
        .iter()
        .map(|g| qualify_gateway(g, r.namespace()))
        .collect()
}

fn qualify_gateway(g: &str, namespace: &str) -> String {
    if g == "mesh" || g.contains('/') {
        g.to_string()
    } else {
        // `name.namespace` is the older spelling Istio still accepts.
        match g.split_once('.') {
            Some((name, ns)) if !ns.contains('.') => format!("{ns}/{name}"),
            _ => format!("{namespace}/{g}"),
        }
    }
}

fn gateway_exists(idx: &Index, qualified: &str) -> bool {
    let Some((ns, name)) = qualified.split_once('/') else {
        return false;
    };
    idx.set
        .of_kind(Kind::Gateway)
        .any(|g| g.namespace() == ns && g.name() == name)
}

fn check_gateways(
    idx: &Index,
    r: &Resource,
    vs: &VirtualService,
    spec: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let mut report = |path: FieldPath, g: &str| {
        let q = qualify_gateway(g, r.namespace());
        if q != "mesh" && !gateway_exists(idx, &q) {
            out.push(finding(
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                r,
                path,
                format!(
                    "referenced gateway not found: {q:?}; define a Gateway {q} or fix the name"
                ),
            ));
        }
    };
    for (i, g) in vs.gateways.iter().enumerate() {
        report(spec.field("gateways").index(i), g);
    }
    for (i, route) in vs.http.iter().enumerate() {
        for (j, m) in route.r#match.iter().enumerate() {
            for (k, g) in m.gateways.iter().enumerate() {
                report(
                    spec.field("http")
                        .index(i)
                        .field("match")
                        .index(j)
                        .field("gateways")
                        .index(k),
                    g,
                );
            }
        }
    }
}

/// Every destination of a VirtualService with its field path.
fn destinations<'v>(vs: &'v VirtualService, spec: &FieldPath) -> Vec<(FieldPath, &'v Destination)> {
    let mut out = Vec::new();
    for (i, route) in vs.http.iter().enumerate() {
        let base = spec.field("http").index(i);
        for (j, d) in route.route.iter().enumerate() {
            if let Some(dest) = &d.destination {
                out.push((base.field("route").index(j).field("destination"), dest));
            }
        }
        if let Some(m) = &route.mirror {
            out.push((base.field("mirror"), m));
        }
        for (j, m) in route.mirrors.iter().enumerate() {
            if let Some(dest) = &m.destination {
                out.push((base.field("mirrors").index(j).field("destination"), dest));
            }
        }
    }
    for (section, routes) in [
        ("tcp", vs.tcp.iter().map(|t| &t.route).collect::<Vec<_>>()),
        ("tls", vs.tls.iter().map(|t| &t.route).collect()),
    ] {
        for (i, route) in routes.into_iter().enumerate() {
            for (j, d) in route.iter().enumerate() {
                if let Some(dest) = &d.destination {
                    out.push((
                        spec.field(section)
                            .index(i)
                            .field("route")
                            .index(j)
                            .field("destination"),
                        dest,
                    ));
                }
            }
        }
    }
    out
}

fn check_destinations(
    idx: &Index,
    r: &Resource,
    vs: &VirtualService,
    spec: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    for (path, dest) in destinations(vs, spec) {
        let Some(host) = dest.host.as_deref() else {
            continue;
        };
        if host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        if idx.services_for_host(host, r.namespace()).is_empty() {
            out.push(finding(
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                r,
                path.field("host"),
                format!(
                    "referenced host not found: {:?}; add a Kubernetes Service or a ServiceEntry for it",
                    qualify(host, r.namespace())[0]
                ),
            ));
            continue;
        }
        if let Some(subset) = dest.subset.as_deref() {
            if !subset_defined(idx, host, r.namespace(), subset) {
                out.push(finding(
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    path.field("subset"),
                    format!(
                        "referenced host+subset in DestinationRule not found: \"{}+{subset}\"; define subset {subset} in a DestinationRule for that host",
                        qualify(host, r.namespace())[0]
                    ),
                ));
            }
        }
    }
}

fn subset_defined(idx: &Index, host: &str, namespace: &str, subset: &str) -> bool {
    let wanted = qualify(host, namespace);
    idx.set.of_kind(Kind::DestinationRule).any(|dr_res| {
        let Some(dr) = dr_res.body.destination_rule() else {
            return false;
        };
        let Some(dr_host) = dr.host.as_deref() else {
            return false;
        };
        let dr_hosts = qualify(dr_host, dr_res.namespace());
        let same_host = wanted
            .iter()
            .any(|w| dr_hosts.iter().any(|d| hosts_overlap(w, d)));
        same_host && dr.subsets.iter().any(|s| s.name.as_deref() == Some(subset))
    })
}

/// The book's "tripping hazard": rules written for a gateway do not apply to calls made
/// from inside the mesh unless the VirtualService also binds to `mesh`.
fn check_mesh_binding(
    idx: &Index,
    r: &Resource,
    vs: &VirtualService,
    spec: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    if vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh") {
        return;
    }
    for (i, host) in vs.hosts.iter().enumerate() {
        if host == "*" {
            continue;
        }
        let in_mesh = idx
            .services_for_host(host, r.namespace())
            .iter()
            .any(|s| s.in_mesh);
        if in_mesh {
            out.push(finding(
                codes::VIRTUAL_SERVICE_NOT_BOUND_TO_MESH,
                r,
                spec.field("hosts").index(i),
                format!(
                    "host {host} is a service inside the mesh, but this VirtualService binds only to {}: calls from sidecars ignore its rules; add `mesh` to spec.gateways if they should apply inside the mesh too",
                    vs.gateways.join(", ")
                ),
            ));
        }
    }
}

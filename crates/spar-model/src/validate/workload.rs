//! Webhook rules for `WorkloadEntry` and `WorkloadGroup`, and for the endpoints of a
//! `ServiceEntry`, which are WorkloadEntries too.

use std::collections::{BTreeMap, BTreeSet};

use super::common::{check_labels, error, fqdn, warn, Diags, UNIX_PREFIX};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{WorkloadEntry, WorkloadGroup};
use crate::names;
use crate::FieldPath;

pub fn check_entry(spec: &WorkloadEntry, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    let address = spec.address.as_deref().unwrap_or("");
    if address.is_empty() {
        // Without a network the schema refuses it; with one, the address may be
        // filled in later (e.g. by auto-registration), which is worth a note.
        if let Some(network) = spec.network.as_deref().filter(|n| !n.is_empty()) {
            warn(&mut out, root.field("address"), format!("address is unset with network {network:?}: the entry is only reachable through that network's gateway"));
        }
    } else if !address.starts_with(UNIX_PREFIX) && !names::is_ip(address) && fqdn(address).is_err()
    {
        error(
            &mut out,
            root.field("address"),
            format!("address {address:?} is not a valid IP address, FQDN or unix:// path"),
        );
    }
    check_identity(
        &mut out,
        &root,
        &spec.labels,
        spec.service_account.as_deref(),
        spec.locality.as_deref(),
    );
    out
}

pub fn check_group(spec: &WorkloadGroup, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    if let Some(meta) = &spec.metadata {
        check_labels(
            &mut out,
            &root.field("metadata").field("labels"),
            &meta.labels,
        );
    }
    if let Some(probe) = &spec.probe {
        let p = root.field("probe");
        let methods = [
            ("httpGet", probe.http_get.is_some()),
            ("tcpSocket", probe.tcp_socket.is_some()),
            ("exec", probe.exec.is_some()),
            ("grpc", probe.grpc.is_some()),
        ];
        match methods.iter().filter(|(_, set)| *set).count() {
            0 => error(
                &mut out,
                p,
                "probe needs one of httpGet, tcpSocket, exec or grpc",
            ),
            1 => {}
            _ => error(
                &mut out,
                p,
                "set only one of httpGet, tcpSocket, exec or grpc",
            ),
        }
    }
    if let Some(t) = &spec.template {
        let p = root.field("template");
        if t.address.as_deref().is_some_and(|a| !a.is_empty()) {
            warn(
                &mut out,
                p.field("address"),
                "template address is ignored: each workload registers with its own address",
            );
        }
        check_identity(
            &mut out,
            &p,
            &t.labels,
            t.service_account.as_deref(),
            t.locality.as_deref(),
        );
    }
    out
}

/// Labels, service account and locality: what says who and where a workload is.
fn check_identity(
    out: &mut Diags,
    path: &FieldPath,
    labels: &BTreeMap<String, String>,
    sa: Option<&str>,
    locality: Option<&str>,
) {
    check_labels(out, &path.field("labels"), labels);
    if let Some(sa) = sa.filter(|s| !s.is_empty()) {
        // Not refused by Istio, but a Kubernetes service account can have no other name,
        // so the workload's identity would never match a policy that names it.
        if !names::is_dns1123_subdomain(sa) {
            warn(
                out,
                path.field("serviceAccount"),
                format!("serviceAccount {sa:?} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.')"),
            );
        }
    }
    if let Some(loc) = locality.filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = loc.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            warn(
                out,
                path.field("locality"),
                format!("locality {loc:?} should be region, region/zone or region/zone/subzone, e.g. us-east1/us-east1-b"),
            );
        }
    }
}

/// How a ServiceEntry resolves its endpoints' addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum EndpointAddresses {
    /// STATIC: IPs or unix sockets.
    Static,
    /// DNS, DNS_ROUND_ROBIN: IPs or host names.
    Dns,
}

/// A ServiceEntry endpoint: its address fits the resolution, its ports are ports the
/// ServiceEntry declares, and its labels are labels.
pub(super) fn check_endpoint(
    out: &mut Diags,
    path: &FieldPath,
    ep: &WorkloadEntry,
    service_ports: &BTreeSet<&str>,
    resolution: EndpointAddresses,
) {
    let address = ep.address.as_deref().unwrap_or("");
    let unix = address.starts_with(UNIX_PREFIX);
    match resolution {
        // The socket path itself is checked by the schema.
        EndpointAddresses::Static if unix => {
            if service_ports.len() != 1 {
                error(
                    out,
                    path.field("address"),
                    "a unix socket endpoint needs the ServiceEntry to declare exactly one port",
                );
            }
        }
        EndpointAddresses::Static => {
            if !address.is_empty() && !names::is_ip(address) {
                error(
                    out,
                    path.field("address"),
                    format!("endpoint address {address:?} is not a valid IP address: STATIC resolution needs IPs (or use resolution: DNS for host names)"),
                );
            }
        }
        EndpointAddresses::Dns => {
            if !names::is_ip(address) && fqdn(address).is_err() {
                error(
                    out,
                    path.field("address"),
                    format!("endpoint address {address:?} is not a valid FQDN or an IP address"),
                );
            }
        }
    }
    for (name, number) in &ep.ports {
        if !service_ports.contains(name.as_str()) {
            error(
                out,
                path.field("ports").key(name),
                format!("endpoint port {name:?} ({number}) is not defined by the service entry: use one of the names in spec.ports"),
            );
        }
    }
    check_labels(out, &path.field("labels"), &ep.labels);
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;

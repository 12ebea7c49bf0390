//! Webhook rules for `ServiceEntry`: hosts and addresses against the resolution mode,
//! ports, endpoints, and `exportTo`. The CRD schema already covers the `*` host, CIDRs
//! outside NONE/STATIC, endpoints with NONE, several DNS_ROUND_ROBIN endpoints,
//! duplicate port numbers, port ranges and unix socket paths.

use std::collections::BTreeSet;

use super::common::{
    check_export_to, check_port_name, check_protocol, check_selector, error, fqdn,
    is_partial_wildcard, warn, wildcard_domain, Diags, Protocol,
};
use super::workload::{check_endpoint, EndpointAddresses};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{Resolution, ServiceEntry};
use crate::names;
use crate::FieldPath;

pub fn check(spec: &ServiceEntry, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    let resolution = spec.resolution.unwrap_or(Resolution::None);

    if let Some(sel) = &spec.workload_selector {
        check_selector(
            &mut out,
            &root.field("workloadSelector").field("labels"),
            &sel.labels,
            "ServiceEntry",
        );
        if resolution == Resolution::None {
            warn(&mut out, root.field("workloadSelector"), "workloadSelector has no effect with resolution NONE: use STATIC to send traffic to the selected workloads");
        }
    }
    if spec.hosts.is_empty() {
        error(
            &mut out,
            root.field("hosts"),
            "a ServiceEntry needs at least one host",
        );
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        let p = root.field("hosts").index(i);
        if host == "*" {
            continue; // the schema's
        }
        if let Err(e) = wildcard_domain(host) {
            error(&mut out, p, e);
        } else if resolution != Resolution::DynamicDns && is_partial_wildcard(host) {
            warn(
                &mut out,
                p,
                format!(
                    "partial wildcard {host:?} is matched as a suffix: prefer *.{}",
                    host.trim_start_matches('*')
                ),
            );
        }
    }
    for (i, address) in spec.addresses.iter().enumerate() {
        if let Err(e) = names::check_ip_or_cidr(address) {
            error(&mut out, root.field("addresses").index(i), e);
        }
    }

    let mut port_names = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let p = root.field("ports").index(i);
        let name = port.name.as_deref().unwrap_or("");
        if !port_names.insert(name) {
            error(
                &mut out,
                p.field("name"),
                format!("service entry port name {name:?} is already defined"),
            );
        }
        check_port_name(&mut out, p.field("name"), name);
        check_protocol(&mut out, p.field("protocol"), port.protocol.as_deref());
    }

    let protocols: Vec<Option<Protocol>> = spec
        .ports
        .iter()
        .map(|p| p.protocol.as_deref().and_then(Protocol::parse))
        .collect();
    match resolution {
        Resolution::None => {}
        Resolution::Static => {
            for (i, ep) in spec.endpoints.iter().enumerate() {
                check_endpoint(
                    &mut out,
                    &root.field("endpoints").index(i),
                    ep,
                    &port_names,
                    EndpointAddresses::Static,
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if spec.endpoints.is_empty() {
                for (i, host) in spec.hosts.iter().enumerate().filter(|(_, h)| *h != "*") {
                    if let Err(e) = fqdn(host) {
                        error(
                            &mut out,
                            root.field("hosts").index(i),
                            format!("with resolution {} and no endpoints, every host is resolved by DNS and must be a plain FQDN: {e}", resolution.as_str()),
                        );
                    }
                }
            }
            for (i, ep) in spec.endpoints.iter().enumerate() {
                check_endpoint(
                    &mut out,
                    &root.field("endpoints").index(i),
                    ep,
                    &port_names,
                    EndpointAddresses::Dns,
                );
            }
            if !spec.addresses.is_empty()
                && spec.hosts.len() > 1
                && protocols.iter().any(|p| p.is_some_and(Protocol::is_tcp))
            {
                warn(
                    &mut out,
                    root.field("hosts"),
                    "with addresses and a TCP port, traffic to those addresses cannot tell the hosts apart: use one host per ServiceEntry",
                );
            }
        }
        Resolution::DynamicDns => check_dynamic_dns(&mut out, &root, spec, &protocols),
    }

    // Plain TCP carries no host name, so several hosts can only be told apart by HTTP
    // authority or TLS SNI (NONE ignores hosts altogether).
    if resolution != Resolution::None && spec.hosts.len() > 1 {
        if let Some(i) = protocols
            .iter()
            .position(|p| !p.is_some_and(|p| p.is_http() || p.is_tls()))
        {
            error(
                &mut out,
                root.field("ports").index(i),
                "multiple hosts need HTTP or TLS ports (plain TCP cannot tell the hosts apart): split the ServiceEntry or set the protocol",
            );
        }
    }
    for (i, san) in spec.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            error(
                &mut out,
                root.field("subjectAltNames").index(i),
                "subjectAltNames entries cannot be empty",
            );
        }
    }
    check_export_to(
        &mut out,
        &root.field("exportTo"),
        ctx.namespace,
        &spec.export_to,
        true,
    );
    out
}

/// DYNAMIC_DNS resolves each request's host on the fly, which only works for wildcard
/// hosts and protocols that carry the host name.
fn check_dynamic_dns(
    out: &mut Diags,
    root: &FieldPath,
    spec: &ServiceEntry,
    protocols: &[Option<Protocol>],
) {
    for (i, host) in spec.hosts.iter().enumerate() {
        if !host.starts_with('*') {
            error(out, root.field("hosts").index(i), format!("host {host:?} must be a wildcard (e.g. *.example.com) with resolution DYNAMIC_DNS"));
        }
    }
    if !spec.addresses.is_empty() {
        error(out, root.field("addresses"), "addresses cannot be set with resolution DYNAMIC_DNS: destinations come from the request's host");
    }
    if !spec.endpoints.is_empty() {
        error(out, root.field("endpoints"), "endpoints cannot be set with resolution DYNAMIC_DNS: destinations come from the request's host");
    }
    for (i, p) in protocols.iter().enumerate() {
        if !matches!(
            p,
            Some(Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Tls)
        ) {
            error(
                out,
                root.field("ports").index(i).field("protocol"),
                "resolution DYNAMIC_DNS supports only HTTP, HTTP2, GRPC and TLS ports",
            );
        }
    }
    if spec.location.is_none() {
        error(
            out,
            root.field("location"),
            "resolution DYNAMIC_DNS needs location MESH_EXTERNAL or MESH_INTERNAL",
        );
    }
}

#[cfg(test)]
#[path = "service_entry_tests.rs"]
mod tests;

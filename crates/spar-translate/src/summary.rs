//! A human-readable rendering of [`XdsResources`] for golden files, reviews and
//! `spar ctl`: one line per resource or rule, the fields people look at (names, types,
//! domains, matches, weights, timeouts), and per resource a hash of its encoded bytes so
//! that any change below the summary still shows up in a diff.

use std::fmt::Write;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use prost::Message;

use crate::XdsResources;

/// 64-bit FNV-1a of a message's encoding: stable across runs and platforms.
pub fn digest<M: Message>(m: &M) -> String {
    digest_bytes(&m.encode_to_vec())
}

/// 64-bit FNV-1a of encoded bytes.
pub fn digest_bytes(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The whole summary.
pub fn render(x: &XdsResources) -> String {
    let mut out = String::new();
    crate::summary_listeners::listeners(&mut out, x);
    crate::summary_listeners::routes(&mut out, x);
    clusters(&mut out, &x.clusters);
    endpoints(&mut out, &x.endpoints);
    // Names and digests only: secrets hold private keys.
    let _ = writeln!(out, "secrets:");
    for s in &x.secrets {
        let _ = writeln!(out, "  {}  #{}", s.name, digest(s));
    }
    out
}

fn dur(d: &Option<envoy_types::pb::google::protobuf::Duration>) -> String {
    match d {
        Some(d) if d.nanos == 0 => format!("{}s", d.seconds),
        Some(d) => format!("{}.{:03}s", d.seconds, d.nanos / 1_000_000),
        None => "-".to_string(),
    }
}

pub(crate) fn duration_text(d: &Option<envoy_types::pb::google::protobuf::Duration>) -> String {
    dur(d)
}

fn clusters(out: &mut String, clusters: &[Cluster]) {
    let _ = writeln!(out, "clusters:");
    for c in clusters {
        let kind = match &c.cluster_discovery_type {
            Some(cluster::ClusterDiscoveryType::Type(t)) => cluster::DiscoveryType::try_from(*t)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_default(),
            _ => "-".to_string(),
        };
        let lb = cluster::LbPolicy::try_from(c.lb_policy)
            .map(|l| l.as_str_name())
            .unwrap_or("?");
        let _ = write!(
            out,
            "  {}  type={kind} lb={lb} connect_timeout={}",
            c.name,
            dur(&c.connect_timeout)
        );
        if let Some(t) = c
            .circuit_breakers
            .as_ref()
            .and_then(|cb| cb.thresholds.first())
        {
            let v = |x: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
                x.as_ref()
                    .map(|v| {
                        if v.value == u32::MAX {
                            "max".to_string()
                        } else {
                            v.value.to_string()
                        }
                    })
                    .unwrap_or_else(|| "-".to_string())
            };
            let _ = write!(
                out,
                " limits(conn={} pending={} req={} retries={})",
                v(&t.max_connections),
                v(&t.max_pending_requests),
                v(&t.max_requests),
                v(&t.max_retries)
            );
        }
        if let Some(o) = &c.outlier_detection {
            let _ = write!(
                out,
                " outlier(5xx={} interval={} ejection={})",
                o.consecutive_5xx.as_ref().map_or(0, |v| v.value),
                dur(&o.interval),
                dur(&o.base_ejection_time)
            );
        }
        if !c.typed_extension_protocol_options.is_empty() {
            let _ = write!(out, " http_options");
        }
        if let Some(ts) = &c.transport_socket {
            let _ = write!(out, " tls({})", ts.name);
        }
        if !c.transport_socket_matches.is_empty() {
            let names: Vec<&str> = c
                .transport_socket_matches
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            let _ = write!(out, " socket_matches({})", names.join(","));
        }
        if let Some(la) = &c.load_assignment {
            let hosts: Vec<String> = la
                .endpoints
                .iter()
                .flat_map(|l| l.lb_endpoints.iter())
                .map(endpoint_text)
                .collect();
            let _ = write!(out, " hosts=[{}]", hosts.join(", "));
        }
        let _ = writeln!(out, "  #{}", digest(c));
    }
}

fn endpoint_text(e: &envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint) -> String {
    let addr = match &e.host_identifier {
        Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
            match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                Some(address::Address::SocketAddress(s)) => {
                    let port = match s.port_specifier {
                        Some(socket_address::PortSpecifier::PortValue(p)) => p,
                        _ => 0,
                    };
                    format!("{}:{port}", s.address)
                }
                _ => "?".to_string(),
            }
        }
        _ => "?".to_string(),
    };
    let w = e.load_balancing_weight.as_ref().map_or(1, |w| w.value);
    let mtls = if e.metadata.is_some() { " mtls" } else { "" };
    format!("{addr} w={w}{mtls}")
}

fn endpoints(out: &mut String, list: &[ClusterLoadAssignment]) {
    let _ = writeln!(out, "endpoints:");
    for la in list {
        let _ = writeln!(out, "  {}  #{}", la.cluster_name, digest(la));
        for l in &la.endpoints {
            let loc = l
                .locality
                .as_ref()
                .filter(|l| !(l.region.is_empty() && l.zone.is_empty() && l.sub_zone.is_empty()))
                .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
                .unwrap_or_else(|| "-".to_string());
            let hosts: Vec<String> = l.lb_endpoints.iter().map(endpoint_text).collect();
            let _ = writeln!(
                out,
                "    locality={loc} weight={} [{}]",
                l.load_balancing_weight.as_ref().map_or(0, |w| w.value),
                hosts.join(", ")
            );
        }
    }
}

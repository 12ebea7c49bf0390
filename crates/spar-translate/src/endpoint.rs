//! EDS: one `ClusterLoadAssignment` per EDS cluster, endpoints filtered by the subset's
//! labels and grouped by locality (sorted), each with its weight and, for endpoints
//! running a sidecar, the `tlsMode: istio` transport-socket-match metadata auto mTLS uses.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{Locality, Metadata};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::{value, Struct, Value};
use spar_registry::Service;

use crate::util::{socket, u32v};

/// The metadata key Envoy matches `transport_socket_matches` against.
pub const SOCKET_MATCH_KEY: &str = "envoy.transport_socket_match";
/// The field under [`SOCKET_MATCH_KEY`] that says whether the endpoint runs a proxy.
pub const TLS_MODE_KEY: &str = "tlsMode";

/// `{envoy.transport_socket_match: {tlsMode: istio}}` — one key at each level, so the
/// encoding (prost writes maps in iteration order) stays byte-identical.
fn tls_mode_istio() -> Metadata {
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        TLS_MODE_KEY.to_string(),
        Value {
            kind: Some(value::Kind::StringValue("istio".to_string())),
        },
    );
    let mut filter_metadata = std::collections::HashMap::new();
    filter_metadata.insert(SOCKET_MATCH_KEY.to_string(), Struct { fields });
    Metadata {
        filter_metadata,
        ..Default::default()
    }
}

/// Always present, even when empty: gRPC's xDS client NACKs an assignment whose
/// `locality` is absent ("endpoints[0].locality error:field not present"); Envoy reads
/// an empty one as "no locality".
fn locality(l: &str) -> Option<Locality> {
    if l.is_empty() {
        return Some(Locality::default());
    }
    let mut parts = l.split('/');
    Some(Locality {
        region: parts.next().unwrap_or_default().to_string(),
        zone: parts.next().unwrap_or_default().to_string(),
        sub_zone: parts.next().unwrap_or_default().to_string(),
    })
}

/// The assignment of `cluster`: `svc`'s endpoints on `port` with every `subset` label, and
/// each endpoint's labels (locality by locality, in the same order) for the locality rules
/// that rank endpoints by label.
type Labels = BTreeMap<String, String>;

pub fn with_labels<'a>(
    cluster: &str,
    svc: &'a Service,
    port: u32,
    subset: &'a BTreeMap<String, String>,
) -> (
    ClusterLoadAssignment,
    Vec<Vec<&'a BTreeMap<String, String>>>,
) {
    let mut by_locality: BTreeMap<&str, Vec<(LbEndpoint, &Labels)>> = BTreeMap::new();
    for (e, target) in svc.endpoints_for(port, subset) {
        by_locality.entry(e.locality.as_str()).or_default().push((
            LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(&e.address, target)),
                    ..Default::default()
                })),
                load_balancing_weight: Some(u32v(e.weight.max(1))),
                metadata: e.has_sidecar.then(tls_mode_istio),
                ..Default::default()
            },
            &e.labels,
        ));
    }
    let mut labels = Vec::new();
    let endpoints = by_locality
        .into_iter()
        .map(|(l, eps)| {
            let weight: u32 = eps
                .iter()
                .map(|(e, _)| e.load_balancing_weight.as_ref().map_or(1, |w| w.value))
                .sum();
            let (eps, group_labels): (Vec<LbEndpoint>, Vec<_>) = eps.into_iter().unzip();
            labels.push(group_labels);
            LocalityLbEndpoints {
                locality: locality(l),
                load_balancing_weight: Some(u32v(weight)),
                lb_endpoints: eps,
                ..Default::default()
            }
        })
        .collect();
    let la = ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints,
        ..Default::default()
    };
    (la, labels)
}

/// A one-endpoint inline assignment (inbound clusters).
pub fn static_assignment(cluster: &str, ip: &str, port: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(Locality::default()),
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(ip, port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

//! Who is connecting: Istio's node id plus the node metadata Istio's agent sends
//! (NAMESPACE, LABELS, SERVICE_ACCOUNT, WORKLOAD_NAME, CLUSTER_ID, MESH_ID).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::Struct;
use spar_translate::ProxyNode;

use crate::XdsError;

/// Builds the proxy's identity from the `node` of its first request.
pub fn proxy_node(node: Option<&Node>) -> Result<ProxyNode, XdsError> {
    let node = node.ok_or(XdsError::NoNode)?;
    let mut proxy = ProxyNode::parse_id(&node.id)?;
    if let Some(l) = &node.locality {
        proxy.locality = [l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()]
            .join("/")
            .trim_end_matches('/')
            .to_string();
    }
    let Some(meta) = node.metadata.as_ref() else {
        return Ok(proxy);
    };
    let s = |key: &str| string_field(meta, key);
    if let Some(v) = s("NAMESPACE") {
        proxy.namespace = v;
    }
    if let Some(v) = s("SERVICE_ACCOUNT") {
        proxy.service_account = v;
    }
    if let Some(v) = s("WORKLOAD_NAME") {
        proxy.workload_name = v;
    }
    if let Some(v) = s("CLUSTER_ID") {
        proxy.cluster_id = v;
    }
    if let Some(v) = s("MESH_ID") {
        proxy.mesh_id = v;
    }
    if let Some(Kind::StructValue(labels)) = meta.fields.get("LABELS").and_then(|v| v.kind.as_ref())
    {
        for (k, v) in &labels.fields {
            if let Some(Kind::StringValue(v)) = &v.kind {
                proxy.labels.insert(k.clone(), v.clone());
            }
        }
    }
    if proxy.locality.is_empty() {
        proxy.locality = proxy.locality_from_labels();
    }
    Ok(proxy)
}

fn string_field(meta: &Struct, key: &str) -> Option<String> {
    match meta.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Whether the client is a proxyless gRPC application: Istio's gRPC bootstrap sets node
/// metadata `GENERATOR: grpc`. Such a client names every resource, listeners included.
pub fn is_proxyless(node: Option<&Node>) -> bool {
    node.and_then(|n| n.metadata.as_ref())
        .and_then(|m| string_field(m, "GENERATOR"))
        .is_some_and(|g| g == "grpc")
}

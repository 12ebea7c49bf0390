//! Translation: `(ConfigSet, Registry, ProxyNode) -> XdsResources`.
//!
//! A pure, deterministic function: no I/O, no clocks, no randomness; the same inputs give
//! byte-identical output (resources sorted by name). Resource names follow Istio's
//! conventions (`outbound|9080|v1|reviews.default.svc.cluster.local`, `inbound|9080||`,
//! `virtualInbound`, `virtualOutbound`, `PassthroughCluster`, `BlackHoleCluster`).

mod node;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

pub use node::{NodeError, ProxyKind, ProxyNode};

/// Everything one proxy is sent, each list sorted by resource name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsResources {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub secrets: Vec<Secret>,
}

/// The xDS type URLs, in the order Envoy warms them.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// Builds the resources for `node` from `config` and `registry`.
pub fn translate(
    config: &spar_model::ConfigSet,
    registry: &spar_registry::Registry,
    node: &ProxyNode,
) -> XdsResources {
    let _ = (config, registry, node);
    XdsResources::default()
}

//! Translation: `(ConfigSet, Registry, ProxyNode) -> XdsResources`.
//!
//! A pure, deterministic function: no I/O, no clocks, no randomness; the same inputs give
//! byte-identical output (resources sorted by name). Resource names follow Istio's
//! conventions (`outbound|9080|v1|reviews.default.svc.cluster.local`, `inbound|9080||`,
//! `virtualInbound`, `virtualOutbound`, `PassthroughCluster`, `BlackHoleCluster`).
//!
//! | module | builds |
//! | --- | --- |
//! | `cluster_policy` | DestinationRule retryBudget, warmup (slow start), proxyProtocol on a built cluster |
//! | `cluster`, `endpoint` | CDS (outbound per port and subset, passthrough, blackhole, inbound) and EDS |
//! | `locality` | `localityLbSetting`: distribute weights and failover priorities per proxy locality |
//! | `dr` | which DestinationRule applies, and the merged traffic policy per (port, subset) |
//! | `listener`, `route` | sidecar LDS (15001, per-port outbound, 15006) and RDS (`<port>`) |
//! | `http_route`, `delegate` | one VirtualService HTTP rule → Envoy routes; delegate merging |
//! | `gateway` | gateway LDS and RDS (`http.<port>`, `https.<port>.<name>.<gw>.<ns>`, SNI passthrough, TCP) |
//! | `secret` | SDS secrets for gateway `credentialName`s, from Kubernetes Secrets |
//! | `grpc` | [`translate_grpc`]: API listeners and gRPC-safe clusters for proxyless gRPC |
//! | `class` | [`NodeClass`]: the node fields translation reads (the control plane's cache key) |
//! | `authz` | AuthorizationPolicy → RBAC / ext_authz, RequestAuthentication → jwt_authn, path normalization |
//! | `scope` | the `Sidecar` resource: egress host visibility, outboundTrafficPolicy |
//! | [`summary`] | a reviewable text rendering (golden files, `spar ctl`) |
//!
//! **Auto mTLS**: see [`cluster`]'s module docs; inbound ports with no PeerAuthentication
//! are PERMISSIVE when the mesh has workload identities ([`peer_auth`]).
//!
//! Determinism and maps: prost encodes protobuf maps in `HashMap` iteration order. Every
//! map Spar fills holds one entry, except `typed_per_filter_config` of a route that has
//! both `fault` and `corsPolicy`; [`canonical::route_configuration`] sorts those entries
//! in the encoded bytes, and everything that encodes route configurations uses it.
mod authz;
pub mod canonical;
mod class;
mod cluster;
mod cluster_policy;
mod delegate;
mod dr;
mod endpoint;
mod gateway;
mod grpc;
mod http_route;
mod listener;
mod locality;
mod node;
mod peer_auth;
mod route;
mod scope;
mod secret;
pub mod summary;
mod summary_listeners;
mod tcp_listener;
mod util;

use spar_registry::Service;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

pub use authz::{jwks_uris, AuthzError, REJECT_ALL_JWKS};
pub use class::NodeClass;
pub use grpc::translate_grpc;
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

/// What every builder reads: the inputs and the services the proxy can see.
pub(crate) struct Ctx<'a> {
    pub config: &'a spar_model::ConfigSet,
    pub registry: &'a spar_registry::Registry,
    pub node: &'a ProxyNode,
    /// Services visible from the proxy's namespace (`exportTo`), sorted by hostname.
    pub services: Vec<&'a Service>,
    /// DestinationRules that apply to this proxy, by host.
    pub rules: dr::Index<'a>,
    /// The `Sidecar` resource in force (sidecars only).
    pub sidecar: Option<&'a spar_model::istio::types::Sidecar>,
}

/// Builds the resources for `node` from `config` and `registry`.
pub fn translate(
    config: &spar_model::ConfigSet,
    registry: &spar_registry::Registry,
    node: &ProxyNode,
) -> XdsResources {
    let ctx = context(config, registry, node);
    let mut out = XdsResources::default();
    let (clusters, endpoints) = cluster::outbound(&ctx);
    out.clusters = clusters;
    out.endpoints = endpoints;
    out.clusters
        .extend(cluster::passthrough_and_blackhole(&ctx));
    if node.kind == ProxyKind::Sidecar {
        let ports = cluster::inbound_ports(&ctx);
        out.clusters.extend(cluster::inbound(&ctx, &ports));
        let (listeners, routes) = listener::sidecar(&ctx, &ports);
        out.listeners = listeners;
        out.routes = routes;
    } else {
        let (listeners, routes, credentials) = gateway::listeners(&ctx);
        out.listeners = listeners;
        out.routes = routes;
        out.secrets = secret::secrets(&ctx, &credentials);
    }
    out.sort();
    out
}

/// The EDS assignments [`translate`] gives `node` for the services in `hosts` (hostname,
/// namespace) and no others: what an endpoint-only change to those services can change.
pub fn endpoints_of(
    config: &spar_model::ConfigSet,
    registry: &spar_registry::Registry,
    node: &ProxyNode,
    hosts: &std::collections::BTreeSet<(String, String)>,
) -> Vec<ClusterLoadAssignment> {
    let mut ctx = context(config, registry, node);
    ctx.services
        .retain(|s| hosts.contains(&(s.hostname.clone(), s.namespace.clone())));
    cluster::outbound(&ctx).1
}

/// The inputs with what every builder derives from them once per proxy.
pub(crate) fn context<'a>(
    config: &'a spar_model::ConfigSet,
    registry: &'a spar_registry::Registry,
    node: &'a ProxyNode,
) -> Ctx<'a> {
    let sidecar = match node.kind {
        ProxyKind::Sidecar => scope::select(config, node),
        ProxyKind::Router => None,
    };
    let mut ctx = Ctx {
        config,
        registry,
        node,
        services: registry
            .services_visible_to(&node.namespace)
            .filter(|s| sidecar.is_none_or(|sc| scope::allows(sc, s, &node.namespace)))
            .collect(),
        rules: dr::Index::default(),
        sidecar,
    };
    ctx.rules = dr::Index::build(&ctx);
    ctx
}

impl<'a> Ctx<'a> {
    /// The same proxy seeing only the services `keep` admits (a Sidecar egress listener's).
    pub(crate) fn restricted(&self, keep: impl Fn(&Service) -> bool) -> Ctx<'a> {
        let mut ctx = Ctx {
            config: self.config,
            registry: self.registry,
            node: self.node,
            services: self.services.iter().copied().filter(|s| keep(s)).collect(),
            rules: dr::Index::default(),
            sidecar: self.sidecar,
        };
        ctx.rules = dr::Index::build(&ctx);
        ctx
    }
}

impl XdsResources {
    /// Sorts every list by resource name and drops repeated names (the first wins).
    pub(crate) fn sort(&mut self) {
        self.listeners.sort_by(|a, b| a.name.cmp(&b.name));
        self.listeners.dedup_by(|a, b| a.name == b.name);
        self.routes.sort_by(|a, b| a.name.cmp(&b.name));
        self.routes.dedup_by(|a, b| a.name == b.name);
        self.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        self.clusters.dedup_by(|a, b| a.name == b.name);
        self.endpoints
            .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
        self.endpoints
            .dedup_by(|a, b| a.cluster_name == b.cluster_name);
        self.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

//! Proxyless gRPC clients (`xds:///reviews.default.svc.cluster.local:9080`): the
//! resources gRPC's xDS client understands. Each listener it asks for by name
//! (`<host>:<port>`, any form of the host) is an API listener whose connection manager
//! names the route configuration of the same name; that route configuration has one
//! virtual host with the service's VirtualService routes (or the default route).
//! Clusters are the EDS and LOGICAL_DNS ones (gRPC has no STRICT_DNS or ORIGINAL_DST), with
//! load balancing gRPC implements (ROUND_ROBIN, RING_HASH); HTTP filters are fault and
//! router only, since gRPC refuses filters it does not know.
//!
//! gRPC reads a route's deadline from `max_stream_duration`, not from `timeout` (gRFC A31),
//! so a VirtualService `timeout` is written to both, as istiod does for proxyless clients.
//! Per-route filter configs are kept for the fault filter only: gRPC rejects the whole
//! route configuration over one for a filter it does not run (CORS, say).

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action, Route, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::http_route::{FAULT_FILTER, ROUTER_FILTER};
use crate::route::{self, VsIndex};
use crate::util::{self, any, outbound};
use crate::{cluster, context, ProxyNode, XdsResources};

/// A route as gRPC takes it: per-filter configs for the fault filter only, and a non-zero
/// `timeout` also as `max_stream_duration`, the deadline gRPC applies to each call on the
/// route (a zero timeout stays "no deadline": the field is left unset).
fn grpc_route(r: &mut Route) {
    r.typed_per_filter_config.retain(|k, _| k == FAULT_FILTER);
    let Some(Action::Route(a)) = r.action.as_mut() else {
        return;
    };
    if let Some(route_action::ClusterSpecifier::WeightedClusters(w)) = a.cluster_specifier.as_mut()
    {
        for c in &mut w.clusters {
            c.typed_per_filter_config.retain(|k, _| k == FAULT_FILTER);
        }
    }
    let Some(t) = a.timeout.as_ref().filter(|t| t.seconds > 0 || t.nanos > 0) else {
        return;
    };
    a.max_stream_duration = Some(route_action::MaxStreamDuration {
        max_stream_duration: Some(*t),
        ..Default::default()
    });
}

fn filter<M: prost::Message + prost::Name>(name: &str, m: &M) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(m))),
        ..Default::default()
    }
}

/// Resources for a proxyless gRPC client that asked for `listener_names`.
pub fn translate_grpc(
    config: &spar_model::ConfigSet,
    registry: &spar_registry::Registry,
    node: &ProxyNode,
    listener_names: &[String],
) -> XdsResources {
    let ctx = context(config, registry, node);
    let mut out = XdsResources::default();
    let (clusters, endpoints) = cluster::outbound(&ctx);
    out.endpoints = endpoints;
    out.clusters = clusters
        .into_iter()
        .filter(|c| {
            matches!(
                c.cluster_discovery_type,
                Some(ClusterDiscoveryType::Type(t))
                    if t == DiscoveryType::Eds as i32 || t == DiscoveryType::LogicalDns as i32
            )
        })
        .map(|mut c| {
            if c.lb_policy != LbPolicy::RingHash as i32 {
                c.lb_policy = LbPolicy::RoundRobin as i32;
                c.lb_config = None;
            }
            c
        })
        .collect();
    let mesh_vs = VsIndex::new(&ctx, route::bound(&ctx, "mesh"));
    for name in listener_names {
        let Some((host, port)) = name.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u32>() else {
            continue;
        };
        let Some(svc) = registry.lookup(host, &node.namespace) else {
            continue;
        };
        if svc.port(port).is_none() {
            continue;
        }
        let hcm = HttpConnectionManager {
            stat_prefix: name.clone(),
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: Some(util::ads()),
                route_config_name: name.clone(),
            })),
            http_filters: vec![
                filter(FAULT_FILTER, &HttpFault::default()),
                filter(ROUTER_FILTER, &Router::default()),
            ],
            ..Default::default()
        };
        out.listeners.push(Listener {
            name: name.clone(),
            api_listener: Some(ApiListener {
                api_listener: Some(any(&hcm)),
            }),
            ..Default::default()
        });
        let mut routes = mesh_vs
            .for_service(&svc.hostname)
            .map(|vs| route::vs_routes(&ctx, vs, port, "mesh"))
            .unwrap_or_default();
        if routes.is_empty() {
            routes.push(route::default_route(outbound(port, "", &svc.hostname)));
        }
        routes.iter_mut().for_each(grpc_route);
        out.routes.push(RouteConfiguration {
            name: name.clone(),
            virtual_hosts: vec![VirtualHost {
                name: format!("{}:{port}", svc.hostname),
                domains: vec![name.clone(), host.to_string()],
                routes,
                ..Default::default()
            }],
            validate_clusters: Some(BoolValue { value: false }),
            ..Default::default()
        });
    }
    out.sort();
    out
}

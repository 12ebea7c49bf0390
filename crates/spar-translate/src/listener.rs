//! LDS for sidecars: `virtualOutbound` (15001, original destination, passthrough or
//! blackhole per `outboundTrafficPolicy`), per-port outbound listeners (`0.0.0.0_<port>`
//! with RDS `<port>` for HTTP; TCP and TLS ports in [`crate::tcp_listener`]), and
//! `virtualInbound` (15006) with a filter chain per workload port.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::BoolValue;
use spar_model::istio::types::{CaptureMode, IstioEgressListener, RouteDestination};
use spar_registry::{Protocol, Service};

use crate::authz::Authz;
use crate::cluster::InboundPort;
use crate::http_route::{destination_cluster, Scope, CORS_FILTER, FAULT_FILTER, ROUTER_FILTER};
use crate::route;
use crate::util::{self, any, socket, u32v};
use crate::Ctx;

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";

pub fn network_filter<M: prost::Message + prost::Name>(name: &str, m: &M) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(m))),
    }
}

fn http_filter<M: prost::Message + prost::Name>(name: &str, m: &M) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(m))),
        ..Default::default()
    }
}

/// Authorization first (`authz`: jwt_authn, ext_authz, RBAC; empty outbound), then CORS
/// and fault, which run only where a route configures them; the router ends the chain.
pub fn http_filters(authz: &[HttpFilter]) -> Vec<HttpFilter> {
    let mut out = authz.to_vec();
    out.extend([
        http_filter(CORS_FILTER, &Cors::default()),
        http_filter(FAULT_FILTER, &HttpFault::default()),
        http_filter(ROUTER_FILTER, &Router::default()),
    ]);
    out
}

/// WebSocket upgrades allowed on every connection manager, as istiod configures them.
fn websocket() -> Vec<http_connection_manager::UpgradeConfig> {
    vec![http_connection_manager::UpgradeConfig {
        upgrade_type: "websocket".to_string(),
        ..Default::default()
    }]
}

pub fn hcm_rds(stat_prefix: &str, route_name: &str) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(util::ads()),
            route_config_name: route_name.to_string(),
        })),
        http_filters: http_filters(&[]),
        upgrade_configs: websocket(),
        ..Default::default()
    };
    network_filter(HCM, &hcm)
}

/// A gateway's HCM: [`hcm_rds`] with the proxy's authorization filters and MeshConfig
/// path normalization.
pub fn gateway_hcm(ctx: &Ctx<'_>, authz: &Authz, stat_prefix: &str, route_name: &str) -> Filter {
    let mut hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(util::ads()),
            route_config_name: route_name.to_string(),
        })),
        http_filters: http_filters(&authz.http),
        upgrade_configs: websocket(),
        // Gateways are the edge: the peer's address is the client's, as istiod sets it.
        use_remote_address: Some(BoolValue { value: true }),
        // istiod's gateway default (gatewayTopology.forwardClientCertDetails): a client
        // certificate replaces whatever XFCC the client sent.
        forward_client_cert_details: http_connection_manager::ForwardClientCertDetails::SanitizeSet
            as i32,
        set_current_client_cert_details: Some(
            http_connection_manager::SetCurrentClientCertDetails {
                subject: Some(BoolValue { value: true }),
                cert: true,
                uri: true,
                dns: true,
                ..Default::default()
            },
        ),
        ..Default::default()
    };
    crate::authz::normalize_paths(ctx, &mut hcm);
    network_filter(HCM, &hcm)
}

pub fn tcp_proxy(stat_prefix: &str, spec: tcp_proxy::ClusterSpecifier) -> Filter {
    let tp = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(spec),
        ..Default::default()
    };
    network_filter(TCP_PROXY, &tp)
}

/// TCP destinations → one cluster, or weighted clusters.
pub fn tcp_destinations(
    ctx: &Ctx<'_>,
    routes: &[RouteDestination],
    scope: &Scope<'_>,
) -> Option<tcp_proxy::ClusterSpecifier> {
    let dests: Vec<_> = routes
        .iter()
        .filter_map(|r| r.destination.as_ref().map(|d| (r, d)))
        .collect();
    match dests.as_slice() {
        [] => None,
        [(_, d)] => Some(tcp_proxy::ClusterSpecifier::Cluster(destination_cluster(
            ctx, d, scope,
        ))),
        many => Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
            tcp_proxy::WeightedCluster {
                clusters: many
                    .iter()
                    .map(|(r, d)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: destination_cluster(ctx, d, scope),
                        weight: u32::try_from(r.weight.unwrap_or(0)).unwrap_or(0),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|mut c| {
                        // No weights at all: share equally (Envoy refuses a zero sum).
                        if many.iter().all(|(r, _)| r.weight.unwrap_or(0) <= 0) {
                            c.weight = 1;
                        }
                        c
                    })
                    .filter(|c| c.weight > 0)
                    .collect(),
            },
        )),
    }
}

fn original_dst() -> ListenerFilter {
    ListenerFilter {
        name: ORIGINAL_DST.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &OriginalDst::default(),
        ))),
        ..Default::default()
    }
}

/// Every sidecar listener and the route configurations they name.
///
/// A `Sidecar` resource's egress listeners shape the outbound side: one with a `port` gets
/// its own listener for just that port and the hosts it lists (bound to `bind`, or to
/// 127.0.0.1 under `captureMode: NONE`, where the listener really listens instead of being
/// reached through 15001); the one without a port (the catch-all) covers every other port
/// with its hosts. With no Sidecar, every visible service is on the catch-all.
pub fn sidecar(ctx: &Ctx<'_>, inbound: &[InboundPort]) -> (Vec<Listener>, Vec<RouteConfiguration>) {
    let authz = crate::authz::build(ctx);
    let mut listeners = vec![virtual_outbound(ctx), virtual_inbound(ctx, &authz, inbound)];
    let mut routes = Vec::new();
    let egress: &[IstioEgressListener] = ctx.sidecar.map_or(&[], |s| s.egress.as_slice());
    let node_ns = ctx.node.namespace.as_str();
    let admits = |e: &IstioEgressListener, s: &Service| {
        e.hosts
            .iter()
            .any(|h| crate::scope::entry_allows(h, s, node_ns))
    };
    // Ports a captured, wildcard port-specific listener owns: the catch-all leaves them be.
    let mut claimed = BTreeSet::new();
    for e in egress {
        let Some(port) = e.port.as_ref().and_then(|p| p.number) else {
            continue;
        };
        let listen = Listen::of(e);
        if listen.bind.is_none() {
            claimed.insert(port);
        }
        let sub = ctx.restricted(|s| s.port(port).is_some() && admits(e, s));
        let (l, r) = outbound(&sub, &listen, |p| p == port);
        listeners.extend(l);
        routes.extend(r);
    }
    let catch_all = egress.iter().find(|e| e.port.is_none());
    if egress.is_empty() || catch_all.is_some() {
        let sub = match catch_all {
            Some(e) => ctx.restricted(|s| admits(e, s)),
            None => ctx.restricted(|_| true),
        };
        let (l, r) = outbound(&sub, &Listen::default(), |p| !claimed.contains(&p));
        listeners.extend(l);
        routes.extend(r);
    }
    (listeners, routes)
}

/// Where an outbound listener listens: captured on `0.0.0.0` (reached through 15001), or
/// on a `bind` address, really bound when the capture mode is NONE.
#[derive(Default)]
struct Listen {
    bind: Option<String>,
    bind_to_port: bool,
}

impl Listen {
    fn of(e: &IstioEgressListener) -> Listen {
        let none = e.capture_mode == Some(CaptureMode::None);
        let bind = e
            .bind
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| none.then(|| "127.0.0.1".to_string()));
        Listen {
            bind,
            bind_to_port: none,
        }
    }

    fn address(&self) -> &str {
        self.bind.as_deref().unwrap_or("0.0.0.0")
    }

    /// Istio names a bound listener's route configuration `<bind>:<port>`, so that it does
    /// not collide with the catch-all's `<port>`.
    fn route_name(&self, port: u32) -> String {
        match &self.bind {
            Some(b) => format!("{b}:{port}"),
            None => port.to_string(),
        }
    }
}

/// Outbound listeners (and their route configurations) for the ports `want` keeps.
fn outbound(
    ctx: &Ctx<'_>,
    listen: &Listen,
    want: impl Fn(u32) -> bool,
) -> (Vec<Listener>, Vec<RouteConfiguration>) {
    let mesh_vs = route::VsIndex::new(ctx, route::bound(ctx, "mesh"));
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let ports_of = |f: fn(Protocol) -> bool| -> BTreeSet<u32> {
        ctx.services
            .iter()
            .flat_map(|s| s.ports.iter())
            .filter(|p| f(p.protocol))
            .map(|p| p.port)
            .filter(|p| want(*p))
            .collect()
    };
    let http_ports = ports_of(Protocol::is_http);
    // Ports nothing names a protocol for: sniffed, as Istio does (HTTP to the route
    // table, anything else passed through to where it was going).
    let sniffed: BTreeSet<u32> = ports_of(|p| p == Protocol::Unsupported)
        .difference(&http_ports)
        .copied()
        .collect();
    for port in http_ports.iter().chain(sniffed.iter()) {
        let name = format!("{}_{port}", listen.address());
        let route_name = listen.route_name(*port);
        let http_chain = FilterChain {
            name: name.clone(),
            filters: vec![hcm_rds(&format!("outbound_{name}"), &route_name)],
            ..Default::default()
        };
        let (chains, listener_filters) = if sniffed.contains(port) {
            (sniffing_chains(ctx, http_chain), vec![http_inspector()])
        } else {
            (vec![http_chain], Vec::new())
        };
        listeners.push(Listener {
            name: name.clone(),
            address: Some(socket(listen.address(), *port)),
            bind_to_port: Some(BoolValue {
                value: listen.bind_to_port,
            }),
            traffic_direction: TrafficDirection::Outbound as i32,
            filter_chains: chains,
            listener_filters,
            ..Default::default()
        });
        let mut rc = route::sidecar_route_config(ctx, *port, &mesh_vs);
        rc.name = route_name;
        routes.push(rc);
    }
    let routed: BTreeSet<u32> = http_ports.union(&sniffed).copied().collect();
    let tcp = crate::tcp_listener::listeners(ctx, &mesh_vs, &routed)
        .into_iter()
        .filter(|l| want(listener_port(l)));
    match &listen.bind {
        None => listeners.extend(tcp),
        Some(bind) => listeners.extend(merge_on_bind(tcp, bind, listen.bind_to_port)),
    }
    (listeners, routes)
}

fn listener_port(l: &Listener) -> u32 {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => p,
            _ => 0,
        },
        _ => 0,
    }
}

/// On a bind address there is one listener per port: the per-VIP TCP listeners' chains
/// move onto it (the first chain for a given match wins, as Envoy refuses duplicates).
fn merge_on_bind(
    tcp: impl Iterator<Item = Listener>,
    bind: &str,
    bind_to_port: bool,
) -> Vec<Listener> {
    let mut by_port: std::collections::BTreeMap<u32, Listener> = Default::default();
    for l in tcp {
        let port = listener_port(&l);
        let merged = by_port.entry(port).or_insert_with(|| Listener {
            name: format!("{bind}_{port}"),
            address: Some(socket(bind, port)),
            bind_to_port: Some(BoolValue {
                value: bind_to_port,
            }),
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        });
        for f in l.listener_filters {
            if !merged.listener_filters.iter().any(|x| x.name == f.name) {
                merged.listener_filters.push(f);
            }
        }
        for c in l.filter_chains {
            if !merged
                .filter_chains
                .iter()
                .any(|x| x.filter_chain_match == c.filter_chain_match)
            {
                merged.filter_chains.push(c);
            }
        }
    }
    by_port.into_values().collect()
}

/// HTTP (as the HTTP inspector reports it) to the route table, the rest to its
/// original destination (or nowhere, under REGISTRY_ONLY).
fn sniffing_chains(ctx: &Ctx<'_>, mut http: FilterChain) -> Vec<FilterChain> {
    http.filter_chain_match = Some(FilterChainMatch {
        application_protocols: vec!["http/1.1".to_string(), "h2c".to_string()],
        ..Default::default()
    });
    let target = if route::allow_any(ctx) {
        util::PASSTHROUGH
    } else {
        util::BLACKHOLE
    };
    let tcp = FilterChain {
        name: format!("{}-tcp", http.name),
        filters: vec![tcp_proxy(
            target,
            tcp_proxy::ClusterSpecifier::Cluster(target.to_string()),
        )],
        ..Default::default()
    };
    vec![http, tcp]
}

pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";

fn http_inspector() -> ListenerFilter {
    ListenerFilter {
        name: HTTP_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &HttpInspector::default(),
        ))),
        ..Default::default()
    }
}

fn virtual_outbound(ctx: &Ctx<'_>) -> Listener {
    let target = if route::allow_any(ctx) {
        util::PASSTHROUGH
    } else {
        util::BLACKHOLE
    };
    Listener {
        name: util::VIRTUAL_OUTBOUND.to_string(),
        address: Some(socket("0.0.0.0", 15001)),
        use_original_dst: Some(BoolValue { value: true }),
        traffic_direction: TrafficDirection::Outbound as i32,
        filter_chains: vec![FilterChain {
            name: "PassthroughFilterChain".to_string(),
            filters: vec![tcp_proxy(
                target,
                tcp_proxy::ClusterSpecifier::Cluster(target.to_string()),
            )],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn virtual_inbound(ctx: &Ctx<'_>, authz: &Authz, ports: &[InboundPort]) -> Listener {
    use crate::peer_auth::Mode;
    let mut any_tls = false;
    let mut chains: Vec<FilterChain> = ports
        .iter()
        .flat_map(|p| {
            let cluster = util::cluster_name("inbound", p.target_port, "", "");
            let filters = if p.protocol.is_http() {
                vec![inbound_hcm(ctx, authz, &cluster)]
            } else {
                let mut f = authz.tcp.clone();
                f.push(tcp_proxy(
                    &cluster,
                    tcp_proxy::ClusterSpecifier::Cluster(cluster.clone()),
                ));
                f
            };
            let chain = |transport: &str, tls: bool| FilterChain {
                name: format!("0.0.0.0_{}", p.target_port),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(u32v(p.target_port)),
                    transport_protocol: transport.to_string(),
                    ..Default::default()
                }),
                filters: filters.clone(),
                transport_socket: tls.then(crate::peer_auth::inbound_tls),
                ..Default::default()
            };
            // PeerAuthentication (see peer_auth): TLS and/or plaintext chains per port.
            match crate::peer_auth::mode(ctx, p.target_port) {
                None | Some(Mode::Disable) => vec![chain("", false)],
                Some(Mode::Strict) => {
                    any_tls = true;
                    vec![chain("tls", true)]
                }
                Some(Mode::Permissive) => {
                    any_tls = true;
                    vec![chain("tls", true), chain("raw_buffer", false)]
                }
            }
        })
        .collect();
    chains.push(FilterChain {
        name: "InboundPassthroughFilterChain".to_string(),
        filters: vec![tcp_proxy(
            util::INBOUND_PASSTHROUGH,
            tcp_proxy::ClusterSpecifier::Cluster(util::INBOUND_PASSTHROUGH.to_string()),
        )],
        ..Default::default()
    });
    Listener {
        name: util::VIRTUAL_INBOUND.to_string(),
        address: Some(socket("0.0.0.0", 15006)),
        // No `use_original_dst`: the original_dst listener filter restores the destination
        // and the chains match on its port. Handing the connection to the listener of its
        // destination (as virtualOutbound does) would pick the outbound listener of a
        // service on the same port.
        traffic_direction: TrafficDirection::Inbound as i32,
        listener_filters: if any_tls {
            vec![original_dst(), crate::gateway::tls_inspector()]
        } else {
            vec![original_dst()]
        },
        filter_chains: chains,
        ..Default::default()
    }
}

/// Inbound HTTP: an inline route table sending everything to the local app.
fn inbound_hcm(ctx: &Ctx<'_>, authz: &Authz, cluster: &str) -> Filter {
    let rc = RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "inbound|http".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route::default_route(cluster.to_string())],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    };
    let mut hcm = HttpConnectionManager {
        stat_prefix: cluster.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(rc)),
        http_filters: http_filters(&authz.http),
        upgrade_configs: websocket(),
        // As istiod's inbound: the application learns its mTLS caller's identity.
        forward_client_cert_details:
            http_connection_manager::ForwardClientCertDetails::AppendForward as i32,
        set_current_client_cert_details: Some(
            http_connection_manager::SetCurrentClientCertDetails {
                subject: Some(BoolValue { value: true }),
                uri: true,
                dns: true,
                ..Default::default()
            },
        ),
        ..Default::default()
    };
    crate::authz::normalize_paths(ctx, &mut hcm);
    network_filter(HCM, &hcm)
}

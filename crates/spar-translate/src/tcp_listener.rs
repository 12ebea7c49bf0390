//! Sidecar outbound listeners for non-HTTP ports: `<vip>_<port>`, or `0.0.0.0_<port>`
//! for services without a VIP. TLS and HTTPS ports get a filter chain per VirtualService
//! `tls` rule (matched on SNI, and on `destinationSubnets`) plus one for the service's own
//! host, behind a TLS inspector; services sharing `0.0.0.0_<port>` share the listener.
//! Plain TCP ports take the first `tcp` rule (weighted destinations allowed); on a shared
//! listener the first service in hostname order wins, as only one chain can match all.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use envoy_types::pb::google::protobuf::BoolValue;
use spar_registry::{Protocol, Service, ServicePort};

use crate::http_route::{gateway_is, Scope};
use crate::listener::{tcp_destinations, tcp_proxy};
use crate::route::{Vs, VsIndex};
use crate::util::{any, outbound, socket, u32v};
use crate::Ctx;

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

#[derive(Default)]
struct Pending {
    bind: String,
    port: u32,
    chains: Vec<FilterChain>,
    tls: bool,
}

impl Pending {
    /// Adds a chain unless one with the same match is there (Envoy refuses duplicates).
    fn add(&mut self, chain: FilterChain) {
        if !self
            .chains
            .iter()
            .any(|c| c.filter_chain_match == chain.filter_chain_match)
        {
            self.chains.push(chain);
        }
    }
}

pub fn listeners(
    ctx: &Ctx<'_>,
    mesh_vs: &VsIndex<'_>,
    http_ports: &BTreeSet<u32>,
) -> Vec<Listener> {
    let mut by_name: BTreeMap<String, Pending> = BTreeMap::new();
    for svc in &ctx.services {
        for p in svc.ports.iter().filter(|p| p.protocol.is_tcp()) {
            let vip = svc.addresses.iter().find(|a| !a.contains('/'));
            if vip.is_none() && http_ports.contains(&p.port) {
                // The wildcard port already routes HTTP; an address-less TCP service
                // on it is reached through the passthrough chain instead.
                continue;
            }
            let bind = vip.map_or("0.0.0.0", String::as_str);
            let entry = by_name
                .entry(format!("{bind}_{}", p.port))
                .or_insert_with(|| Pending {
                    bind: bind.to_string(),
                    port: p.port,
                    ..Default::default()
                });
            let vs = mesh_vs.for_service(&svc.hostname);
            if matches!(p.protocol, Protocol::Tls | Protocol::Https) {
                entry.tls = true;
                for chain in tls_chains(ctx, svc, p, vs) {
                    entry.add(chain);
                }
            } else {
                entry.add(tcp_chain(ctx, svc, p, vs));
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, p)| Listener {
            name,
            address: Some(socket(&p.bind, p.port)),
            bind_to_port: Some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Outbound as i32,
            filter_chains: p.chains,
            listener_filters: if p.tls {
                vec![ListenerFilter {
                    name: TLS_INSPECTOR.to_string(),
                    config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                        &TlsInspector::default(),
                    ))),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .collect()
}

fn scope<'a>(vs: &'a Vs<'_>, port: u32) -> Scope<'a> {
    Scope {
        port,
        gateway: "mesh",
        vs_namespace: vs.namespace(),
    }
}

fn tcp_chain(ctx: &Ctx<'_>, svc: &Service, p: &ServicePort, vs: Option<&Vs<'_>>) -> FilterChain {
    let spec = vs
        .and_then(|vs| {
            let rule = vs.spec.tcp.iter().find(|t| {
                t.r#match.is_empty()
                    || t.r#match.iter().any(|m| {
                        m.port.is_none_or(|mp| mp == p.port)
                            && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"))
                    })
            })?;
            tcp_destinations(ctx, &rule.route, &scope(vs, p.port))
        })
        .unwrap_or_else(|| {
            tcp_proxy::ClusterSpecifier::Cluster(outbound(p.port, "", &svc.hostname))
        });
    FilterChain {
        name: format!("outbound|{}||{}", p.port, svc.hostname),
        filters: vec![tcp_proxy(
            &format!("outbound|{}||{}", p.port, svc.hostname),
            spec,
        )],
        ..Default::default()
    }
}

fn cidr(s: &str) -> Option<CidrRange> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (s, if s.contains(':') { 128 } else { 32 }),
    };
    Some(CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(u32v(len)),
    })
}

fn tls_chains(
    ctx: &Ctx<'_>,
    svc: &Service,
    p: &ServicePort,
    vs: Option<&Vs<'_>>,
) -> Vec<FilterChain> {
    let mut out = Vec::new();
    if let Some(vs) = vs {
        let sc = scope(vs, p.port);
        for rule in &vs.spec.tls {
            for m in &rule.r#match {
                let applies = m.port.is_none_or(|mp| mp == p.port)
                    && (m.gateways.is_empty() || m.gateways.iter().any(|g| gateway_is(g, &sc)))
                    && m.source_labels
                        .iter()
                        .all(|(k, v)| ctx.node.labels.get(k) == Some(v))
                    && m.source_namespace
                        .as_deref()
                        .is_none_or(|ns| ns == ctx.node.namespace);
                if !applies {
                    continue;
                }
                let Some(spec) = tcp_destinations(ctx, &rule.route, &sc) else {
                    continue;
                };
                let mut snis = m.sni_hosts.clone();
                if snis.is_empty() {
                    snis.push(svc.hostname.clone());
                }
                out.push(FilterChain {
                    name: format!("{}|{}", p.port, snis.join(",")),
                    filter_chain_match: Some(FilterChainMatch {
                        server_names: snis,
                        prefix_ranges: m
                            .destination_subnets
                            .iter()
                            .filter_map(|s| cidr(s))
                            .collect(),
                        ..Default::default()
                    }),
                    filters: vec![tcp_proxy(
                        &format!("outbound|{}||{}", p.port, svc.hostname),
                        spec,
                    )],
                    ..Default::default()
                });
            }
        }
    }
    let name = outbound(p.port, "", &svc.hostname);
    out.push(FilterChain {
        name: name.clone(),
        filter_chain_match: Some(FilterChainMatch {
            server_names: vec![svc.hostname.clone()],
            ..Default::default()
        }),
        filters: vec![tcp_proxy(
            &name,
            tcp_proxy::ClusterSpecifier::Cluster(name.clone()),
        )],
        ..Default::default()
    });
    out
}

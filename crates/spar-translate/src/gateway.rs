//! LDS and RDS for gateways (`router~` proxies): a listener `0.0.0.0_<port>` per server
//! port of every Gateway whose selector matches the proxy's labels. Plaintext HTTP
//! servers share the route configuration `http.<port>`; HTTPS servers terminate TLS in
//! their own SNI filter chain with route configuration `https.<port>.<port name>.<gateway>.<ns>`;
//! TLS PASSTHROUGH servers get an SNI filter chain per VirtualService `tls` rule; TCP
//! servers a TCP proxy from the first `tcp` rule; AUTO_PASSTHROUGH servers a chain per
//! cluster, matched on Istio's SNI `outbound_.<port>_.<subset>_.<host>`.
//!
//! Binding (Istio's rules): a VirtualService binds when its `gateways` names the
//! Gateway (`name` in the VirtualService's namespace, or `ns/name`), and a server host
//! (`host`, `ns/host`, `./host`, `*/host`) intersects one of its hosts.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::config::route::v3::{
    virtual_host::TlsRequirementType, Route, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
    TlsCertificate,
};
use envoy_types::pb::google::protobuf::BoolValue;
use spar_model::istio::types::{Server, ServerTLSMode, ServerTLSSettings};
use spar_model::{Kind, Resource};

use crate::cluster::{sds, TLS_SOCKET};
use crate::http_route::Scope;
use crate::listener::{gateway_hcm, tcp_destinations, tcp_proxy};
use crate::route::{self, Vs};
use crate::util::{any, socket};
use crate::Ctx;

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// One server of a selected Gateway.
struct Bound<'a> {
    /// `ns/name` of the Gateway.
    gateway: String,
    resource: &'a Resource,
    server: &'a Server,
}

impl Bound<'_> {
    fn protocol(&self) -> String {
        self.server
            .port
            .as_ref()
            .and_then(|p| p.protocol.clone())
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    fn tls_mode(&self) -> Option<ServerTLSMode> {
        self.server.tls.as_ref().and_then(|t| t.mode)
    }

    fn is_passthrough(&self) -> bool {
        matches!(
            self.tls_mode(),
            Some(ServerTLSMode::Passthrough | ServerTLSMode::AutoPassthrough)
        )
    }

    /// Server hosts visible to a VirtualService of `vs_ns`, without their namespace part.
    fn hosts_for(&self, vs_ns: &str) -> Vec<&str> {
        self.server
            .hosts
            .iter()
            .filter_map(|h| match h.split_once('/') {
                Some(("*", host)) => Some(host),
                Some((".", host)) => (self.resource.meta.namespace == vs_ns).then_some(host),
                Some((ns, host)) => (ns == vs_ns).then_some(host),
                None => Some(h.as_str()),
            })
            .collect()
    }
}

/// The more specific of two hosts when they overlap (`*` and `*.x` are wildcards).
pub fn intersect(a: &str, b: &str) -> Option<String> {
    let covers = |w: &str, h: &str| match w.strip_prefix('*') {
        Some(suffix) => h.ends_with(suffix),
        None => w == h,
    };
    if covers(a, b) {
        Some(b.to_string())
    } else if covers(b, a) {
        Some(a.to_string())
    } else {
        None
    }
}

fn selected<'a>(ctx: &Ctx<'a>) -> Vec<Bound<'a>> {
    let mut out = Vec::new();
    for r in ctx.config.of_kind(Kind::Gateway) {
        let Some(gw) = r.body.gateway() else { continue };
        if !gw
            .selector
            .iter()
            .all(|(k, v)| ctx.node.labels.get(k) == Some(v))
        {
            continue;
        }
        for server in &gw.servers {
            out.push(Bound {
                gateway: format!("{}/{}", r.meta.namespace, r.meta.name),
                resource: r,
                server,
            });
        }
    }
    out
}

/// Listeners, route configurations, and the `credentialName`s the listeners use over SDS.
pub fn listeners(ctx: &Ctx<'_>) -> (Vec<Listener>, Vec<RouteConfiguration>, Vec<String>) {
    let mut by_port: BTreeMap<u32, Vec<Bound<'_>>> = BTreeMap::new();
    for b in selected(ctx) {
        if let Some(n) = b.server.port.as_ref().and_then(|p| p.number) {
            by_port.entry(n).or_default().push(b);
        }
    }
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let authz = crate::authz::build(ctx);
    let mut credentials: Vec<String> = by_port
        .values()
        .flatten()
        .filter_map(|b| b.server.tls.as_ref())
        .flat_map(credential_names)
        .collect();
    credentials.sort();
    credentials.dedup();
    for (port, servers) in &by_port {
        let mut chains = Vec::new();
        let mut needs_tls_inspector = false;
        let plain_http: Vec<&Bound<'_>> = servers
            .iter()
            .filter(|b| matches!(b.protocol().as_str(), "HTTP" | "HTTP2" | "GRPC"))
            .collect();
        if !plain_http.is_empty() {
            let name = format!("http.{port}");
            chains.push(FilterChain {
                name: name.clone(),
                filters: vec![gateway_hcm(
                    ctx,
                    &authz,
                    &format!("outbound_0.0.0.0_{port}"),
                    &name,
                )],
                ..Default::default()
            });
            routes.push(route_config(ctx, &name, *port, &plain_http));
        }
        for b in servers
            .iter()
            .filter(|b| b.protocol() == "HTTPS" && !b.is_passthrough())
        {
            needs_tls_inspector = true;
            let port_name = b
                .server
                .port
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default();
            let name = format!(
                "https.{port}.{port_name}.{}.{}",
                b.resource.meta.name, b.resource.meta.namespace
            );
            chains.push(FilterChain {
                name: name.clone(),
                filter_chain_match: Some(sni_match(&b.hosts_for(&b.resource.meta.namespace))),
                filters: vec![gateway_hcm(
                    ctx,
                    &authz,
                    &format!("outbound_0.0.0.0_{port}"),
                    &name,
                )],
                transport_socket: downstream_tls(b),
                ..Default::default()
            });
            routes.push(route_config(ctx, &name, *port, &[b]));
        }
        for b in servers.iter().filter(|b| b.is_passthrough()) {
            needs_tls_inspector = true;
            if b.tls_mode() == Some(ServerTLSMode::AutoPassthrough) {
                chains.extend(auto_passthrough_chains(ctx, b));
            } else {
                chains.extend(passthrough_chains(ctx, b, *port, &authz.tcp));
            }
        }
        for b in servers.iter().filter(|b| {
            !b.is_passthrough()
                && matches!(
                    b.protocol().as_str(),
                    "TCP" | "TLS" | "MONGO" | "MYSQL" | "REDIS"
                )
        }) {
            if let Some(chain) = tcp_chain(ctx, b, *port, &authz.tcp) {
                chains.push(chain);
            }
        }
        // Envoy refuses two chains with the same match: the first server wins.
        let mut seen = Vec::new();
        chains.retain(|c: &FilterChain| {
            let fresh = !seen.contains(&c.filter_chain_match);
            seen.push(c.filter_chain_match.clone());
            fresh
        });
        if chains.is_empty() {
            // Envoy refuses a listener without filter chains; Istio leaves it out too.
            continue;
        }
        listeners.push(Listener {
            name: format!("0.0.0.0_{port}"),
            address: Some(socket("0.0.0.0", *port)),
            filter_chains: chains,
            listener_filters: if needs_tls_inspector {
                vec![tls_inspector()]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
    }
    (listeners, routes, credentials)
}

/// A TLS chain's match: SNI names (none for `*`) and the `tls` transport the TLS
/// inspector reports, so that it never collides with a plaintext chain on the port.
fn sni_match(hosts: &[&str]) -> FilterChainMatch {
    FilterChainMatch {
        server_names: hosts
            .iter()
            .filter(|h| **h != "*")
            .map(|h| h.to_string())
            .collect(),
        transport_protocol: "tls".to_string(),
        ..Default::default()
    }
}

fn file(path: &Option<String>) -> Option<DataSource> {
    path.as_ref().map(|p| DataSource {
        specifier: Some(data_source::Specifier::Filename(p.clone())),
        ..Default::default()
    })
}

/// Every secret a server names: `credentialName`, then `credentialNames` (several
/// certificates, e.g. RSA and ECDSA, served by SNI and key type).
fn credential_names(tls: &ServerTLSSettings) -> Vec<String> {
    tls.credential_name
        .iter()
        .chain(tls.credential_names.iter())
        .cloned()
        .collect()
}

/// TLS termination: certificate files (`serverCertificate`/`privateKey`, or each of
/// `tlsCertificates`), or the `credentialName(s)` secrets over SDS.
fn downstream_tls(b: &Bound<'_>) -> Option<TransportSocket> {
    let tls = b.server.tls.as_ref()?;
    let mutual = tls.mode == Some(ServerTLSMode::Mutual);
    let mut common = CommonTlsContext::default();
    let creds = credential_names(tls);
    if let Some(first) = creds.first() {
        common.tls_certificate_sds_secret_configs = creds.iter().map(|c| sds(c)).collect();
        if mutual {
            common.validation_context_type = Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
                    &format!("{first}-cacert"),
                )),
            );
        }
    } else {
        let mut files: Vec<(&Option<String>, &Option<String>, &Option<String>)> = vec![];
        if tls.server_certificate.is_some() {
            files.push((
                &tls.server_certificate,
                &tls.private_key,
                &tls.ca_certificates,
            ));
        }
        for c in &tls.tls_certificates {
            files.push((&c.server_certificate, &c.private_key, &c.ca_certificates));
        }
        common.tls_certificates = files
            .iter()
            .map(|(cert, key, _)| TlsCertificate {
                certificate_chain: file(cert),
                private_key: file(key),
                ..Default::default()
            })
            .collect();
        let ca = files.iter().find_map(|(_, _, ca)| ca.as_ref());
        if mutual || ca.is_some() {
            common.validation_context_type = Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: file(&ca.cloned()),
                        ..Default::default()
                    },
                ),
            );
        }
    }
    common.alpn_protocols = vec!["h2".to_string(), "http/1.1".to_string()];
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: mutual }),
        ..Default::default()
    };
    Some(TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    })
}

/// VirtualServices bound to the server's gateway, with the hosts they share with it.
fn bound_hosts<'a>(ctx: &Ctx<'a>, b: &Bound<'_>) -> Vec<(Vs<'a>, Vec<String>)> {
    route::bound(ctx, &b.gateway)
        .into_iter()
        .filter_map(|vs| {
            let server_hosts = b.hosts_for(vs.namespace());
            let mut hosts: Vec<String> = vs
                .spec
                .hosts
                .iter()
                .flat_map(|h| server_hosts.iter().filter_map(|s| intersect(s, h)))
                .collect();
            hosts.dedup();
            (!hosts.is_empty()).then_some((vs, hosts))
        })
        .collect()
}

fn route_config(
    ctx: &Ctx<'_>,
    name: &str,
    port: u32,
    servers: &[&Bound<'_>],
) -> RouteConfiguration {
    let mut vhosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    for b in servers {
        let redirect = b
            .server
            .tls
            .as_ref()
            .and_then(|t| t.https_redirect)
            .unwrap_or(false);
        for (vs, hosts) in bound_hosts(ctx, b) {
            let routes = route::vs_routes(ctx, &vs, port, &b.gateway);
            if routes.is_empty() {
                // A VirtualService with only `tcp`/`tls` rules says nothing about HTTP.
                continue;
            }
            for host in hosts {
                let vh_name = format!("{host}:{port}");
                if let Some(existing) = vhosts.get_mut(&vh_name) {
                    // Gateways merge every VirtualService for a host, as Istio does: the
                    // specific routes in config order, then the catch-all ones.
                    existing.routes = merge_routes(&existing.routes, &routes);
                    continue;
                }
                let domains = if host == "*" {
                    vec!["*".to_string()]
                } else {
                    vec![host.clone(), format!("{host}:{port}")]
                };
                vhosts.insert(
                    vh_name.clone(),
                    VirtualHost {
                        name: vh_name,
                        domains,
                        routes: routes.clone(),
                        require_tls: if redirect {
                            TlsRequirementType::All as i32
                        } else {
                            TlsRequirementType::None as i32
                        },
                        ..Default::default()
                    },
                );
            }
        }
    }
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vhosts.into_values().collect(),
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Istio's order when several VirtualServices share a gateway host: every route that can
/// miss comes before the catch-all ones (`/` prefix with no other condition), so that a
/// later VirtualService's specific routes are not shadowed by an earlier catch-all.
fn merge_routes(first: &[Route], second: &[Route]) -> Vec<Route> {
    let (mut specific, catch_all): (Vec<Route>, Vec<Route>) = first
        .iter()
        .chain(second)
        .cloned()
        .partition(|r| !is_catch_all(r));
    specific.extend(catch_all);
    specific
}

fn is_catch_all(r: &Route) -> bool {
    use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
    let Some(m) = &r.r#match else {
        return true;
    };
    let any_path = match &m.path_specifier {
        None => true,
        Some(PathSpecifier::Prefix(p)) => p == "/" || p.is_empty(),
        Some(PathSpecifier::SafeRegex(re)) => re.regex == "*" || re.regex == ".*",
        Some(_) => false,
    };
    any_path
        && m.headers.is_empty()
        && m.query_parameters.is_empty()
        && m.runtime_fraction.is_none()
}

/// `authz`: the gateway's network authorization filters, put before `tcp_proxy` (as on
/// every TCP chain of a gateway, like istiod).
fn passthrough_chains(
    ctx: &Ctx<'_>,
    b: &Bound<'_>,
    port: u32,
    authz: &[Filter],
) -> Vec<FilterChain> {
    let mut out = Vec::new();
    for (vs, _) in bound_hosts(ctx, b) {
        let scope = Scope {
            port,
            gateway: &b.gateway,
            vs_namespace: vs.namespace(),
        };
        for rule in &vs.spec.tls {
            for m in &rule.r#match {
                if m.port.is_some_and(|p| p != port)
                    || (!m.gateways.is_empty()
                        && !m
                            .gateways
                            .iter()
                            .any(|g| crate::http_route::gateway_is(g, &scope)))
                {
                    continue;
                }
                let Some(spec) = tcp_destinations(ctx, &rule.route, &scope) else {
                    continue;
                };
                let snis: Vec<&str> = m.sni_hosts.iter().map(String::as_str).collect();
                out.push(FilterChain {
                    name: format!("{port}|{}", snis.join(",")),
                    filter_chain_match: Some(sni_match(&snis)),
                    filters: with_authz(authz, tcp_proxy(&format!("{}_{port}", b.gateway), spec)),
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// The network authorization filters, then `terminal`.
fn with_authz(authz: &[Filter], terminal: Filter) -> Vec<Filter> {
    let mut f = authz.to_vec();
    f.push(terminal);
    f
}

fn tcp_chain(ctx: &Ctx<'_>, b: &Bound<'_>, port: u32, authz: &[Filter]) -> Option<FilterChain> {
    for (vs, _) in bound_hosts(ctx, b) {
        let scope = Scope {
            port,
            gateway: &b.gateway,
            vs_namespace: vs.namespace(),
        };
        let rule = vs.spec.tcp.iter().find(|t| {
            t.r#match.is_empty() || t.r#match.iter().any(|m| m.port.is_none_or(|p| p == port))
        });
        if let Some(spec) = rule.and_then(|r| tcp_destinations(ctx, &r.route, &scope)) {
            return Some(FilterChain {
                name: format!("tcp.{port}"),
                filters: with_authz(authz, tcp_proxy(&format!("{}_{port}", b.gateway), spec)),
                transport_socket: if b.tls_mode().is_some() {
                    downstream_tls(b)
                } else {
                    None
                },
                ..Default::default()
            });
        }
    }
    None
}

/// AUTO_PASSTHROUGH (east-west gateways): the client names the cluster it wants in its
/// SNI, `outbound_.<port>_.<subset>_.<host>`, and the gateway forwards to that cluster
/// without terminating TLS. One chain per cluster of every service the server's hosts
/// cover.
fn auto_passthrough_chains(ctx: &Ctx<'_>, b: &Bound<'_>) -> Vec<FilterChain> {
    let mut out = Vec::new();
    for svc in &ctx.services {
        if !b
            .hosts_for(&svc.namespace)
            .iter()
            .any(|h| intersect(h, &svc.hostname).is_some())
        {
            continue;
        }
        let rule = crate::dr::for_host(ctx, &svc.hostname, &svc.namespace);
        let mut subsets = vec![String::new()];
        if let Some(r) = rule {
            subsets.extend(r.spec.subsets.iter().filter_map(|s| s.name.clone()));
        }
        for p in &svc.ports {
            for subset in &subsets {
                let cluster = crate::util::outbound(p.port, subset, &svc.hostname);
                let sni = format!("outbound_.{}_.{subset}_.{}", p.port, svc.hostname);
                out.push(FilterChain {
                    name: sni.clone(),
                    filter_chain_match: Some(FilterChainMatch {
                        server_names: vec![sni],
                        transport_protocol: "tls".to_string(),
                        ..Default::default()
                    }),
                    filters: vec![tcp_proxy(
                        &cluster,
                        ClusterSpecifier::Cluster(cluster.clone()),
                    )],
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Envoy's TLS inspector (SNI, ALPN and whether the connection is TLS at all).
pub fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

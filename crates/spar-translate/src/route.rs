//! RDS: route configurations. Sidecars get one per outbound HTTP port, named `<port>`,
//! with a virtual host per service (domains: every alias, with and without `:port`, and
//! the service's VIPs) and a catch-all (`allow_any` → PassthroughCluster, or `block_all`
//! → 502 under REGISTRY_ONLY). Gateways get one per server port, see [`crate::gateway`].

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::google::protobuf::BoolValue;
use spar_model::istio::types::VirtualService;
use spar_model::mesh::OutboundMode;
use spar_model::{Kind, Resource};
use spar_registry::Service;

use crate::dr::{host_matches, resolve_host};
use crate::http_route::{self, prefix_match, Scope};
use crate::util::{self, outbound, seconds};
use crate::Ctx;

/// A VirtualService and the resource it came from.
#[derive(Clone, Copy)]
pub struct Vs<'a> {
    pub resource: &'a Resource,
    pub spec: &'a VirtualService,
}

impl Vs<'_> {
    pub fn namespace(&self) -> &str {
        &self.resource.meta.namespace
    }

    /// Hosts as FQDNs where the registry knows them.
    pub fn hosts(&self, ctx: &Ctx<'_>) -> Vec<String> {
        self.spec
            .hosts
            .iter()
            .map(|h| resolve_host(ctx, h, self.namespace()))
            .collect()
    }
}

fn exported_to(r: &Resource, spec: &VirtualService, ns: &str, ctx: &Ctx<'_>) -> bool {
    let list = if spec.export_to.is_empty() {
        &ctx.config.mesh().default_virtual_service_export_to
    } else {
        &spec.export_to
    };
    list.is_empty()
        || list
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && r.meta.namespace == ns))
}

/// VirtualServices bound to `gateway` (`mesh`, or `ns/name`) that the proxy may see: the
/// proxy's namespace first, then the rest in config order, as Istio prefers local rules.
pub fn bound<'a>(ctx: &Ctx<'a>, gateway: &str) -> Vec<Vs<'a>> {
    let mut out: Vec<(bool, Vs<'a>)> = ctx
        .config
        .of_kind(Kind::VirtualService)
        .filter_map(|r| Some((r, r.body.virtual_service()?)))
        .filter(|(r, spec)| exported_to(r, spec, &ctx.node.namespace, ctx))
        .filter(|(r, spec)| {
            let scope = Scope {
                port: 0,
                gateway,
                vs_namespace: &r.meta.namespace,
            };
            if spec.gateways.is_empty() {
                gateway == "mesh"
            } else {
                spec.gateways
                    .iter()
                    .any(|g| http_route::gateway_is(g, &scope))
            }
        })
        .map(|(r, spec)| {
            (
                r.meta.namespace != ctx.node.namespace,
                Vs { resource: r, spec },
            )
        })
        .collect();
    out.sort_by_key(|(other, _)| *other);
    out.into_iter().map(|(_, v)| v).collect()
}

/// VirtualServices by host, so that finding a service's rules does not resolve every
/// VirtualService's hosts again for every service. The first VirtualService (in
/// [`bound`]'s order) that names a host wins.
pub struct VsIndex<'a> {
    list: Vec<Vs<'a>>,
    exact: BTreeMap<String, usize>,
    wildcard: Vec<(String, usize)>,
}

impl<'a> VsIndex<'a> {
    pub fn new(ctx: &Ctx<'_>, list: Vec<Vs<'a>>) -> VsIndex<'a> {
        let mut exact = BTreeMap::new();
        let mut wildcard = Vec::new();
        for (i, vs) in list.iter().enumerate() {
            for h in vs.hosts(ctx) {
                if h.starts_with('*') {
                    wildcard.push((h, i));
                } else {
                    exact.entry(h).or_insert(i);
                }
            }
        }
        VsIndex {
            list,
            exact,
            wildcard,
        }
    }

    pub fn for_service(&self, hostname: &str) -> Option<&Vs<'a>> {
        let exact = self.exact.get(hostname).copied();
        let wild = self
            .wildcard
            .iter()
            .filter(|(h, _)| host_matches(h, hostname))
            .map(|(_, i)| *i)
            .min();
        [exact, wild]
            .into_iter()
            .flatten()
            .min()
            .map(|i| &self.list[i])
    }
}

/// The default route to a service port when no VirtualService says otherwise.
pub fn default_route(cluster: String) -> Route {
    Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
            timeout: Some(seconds(0)),
            retry_policy: http_route::retry_policy(None),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Routes of every HTTP rule of `vs` for this scope, in order.
pub fn vs_routes(ctx: &Ctx<'_>, vs: &Vs<'_>, port: u32, gateway: &str) -> Vec<Route> {
    let scope = Scope {
        port,
        gateway,
        vs_namespace: vs.namespace(),
    };
    vs.spec
        .http
        .iter()
        .flat_map(|rule| match rule.delegate {
            Some(_) => crate::delegate::routes(ctx, rule, &scope),
            None => util::with_source(http_route::routes(ctx, rule, &scope), vs.resource),
        })
        .collect()
}

fn domains(svc: &Service, port: u32, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = svc.aliases_from(ns).into_iter().map(String::from).collect();
    names.extend(svc.addresses.iter().filter(|a| !a.contains('/')).cloned());
    let mut out = Vec::new();
    for n in names {
        out.push(format!("{n}:{port}"));
        out.push(n);
    }
    out
}

/// The sidecar route configuration `<port>`.
pub fn sidecar_route_config(ctx: &Ctx<'_>, port: u32, mesh_vs: &VsIndex<'_>) -> RouteConfiguration {
    let mut vhosts = Vec::new();
    for svc in &ctx.services {
        let Some(sp) = svc.port(port) else {
            continue;
        };
        if !sp.protocol.is_http() && sp.protocol != spar_registry::Protocol::Unsupported {
            continue;
        }
        let vs = mesh_vs.for_service(&svc.hostname);
        let mut routes = vs
            .map(|vs| vs_routes(ctx, vs, port, "mesh"))
            .unwrap_or_default();
        if routes.is_empty() {
            let cluster = outbound(port, "", &svc.hostname);
            let hash = http_route::hash_policy(ctx, &cluster);
            let mut r = default_route(cluster);
            if let Some(route::Action::Route(a)) = &mut r.action {
                a.hash_policy = hash;
                if let Some(d) = http_route::mesh_default_retries(ctx) {
                    a.retry_policy = http_route::retry_policy(Some(&d));
                }
            }
            routes.push(r);
        }
        vhosts.push(VirtualHost {
            name: format!("{}:{port}", svc.hostname),
            domains: domains(svc, port, &ctx.node.namespace),
            routes,
            ..Default::default()
        });
    }
    vhosts.push(catch_all(ctx));
    RouteConfiguration {
        name: port.to_string(),
        virtual_hosts: vhosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// ALLOW_ANY or REGISTRY_ONLY: the Sidecar resource's choice, else MeshConfig's.
pub fn allow_any(ctx: &Ctx<'_>) -> bool {
    if let Some(v) = ctx.sidecar.and_then(crate::scope::allow_any) {
        return v;
    }
    !matches!(
        ctx.config
            .mesh()
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode),
        Some(OutboundMode::RegistryOnly)
    )
}

/// Unknown hosts: forwarded as-is under ALLOW_ANY, refused under REGISTRY_ONLY.
fn catch_all(ctx: &Ctx<'_>) -> VirtualHost {
    if allow_any(ctx) {
        VirtualHost {
            name: "allow_any".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                name: "allow_any".to_string(),
                ..default_route(util::PASSTHROUGH.to_string())
            }],
            ..Default::default()
        }
    } else {
        VirtualHost {
            name: "block_all".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                name: "block_all".to_string(),
                r#match: Some(prefix_match("/")),
                action: Some(route::Action::DirectResponse(DirectResponseAction {
                    status: 502,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

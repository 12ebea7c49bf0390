//! Webhook rules for `VirtualService`: hosts, gateways, TLS and TCP routes, and the
//! unreachable-rule analysis. HTTP routes are in `virtual_service_http.rs`.

use std::collections::BTreeMap;

pub(super) use super::common::check_destination;
use super::common::{
    check_export_to, check_labels, check_port, check_re2, error, host_subset_of, hosts_overlap,
    warn, wildcard_domain, Diags,
};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{
    Destination, HTTPMatchRequest, L4MatchAttributes, StringMatch, TLSMatchAttributes,
    VirtualService,
};
use crate::names;
use crate::FieldPath;

#[path = "virtual_service_http.rs"]
mod http;

pub(super) const MESH: &str = "mesh";

pub fn check(spec: &VirtualService, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    let delegate = spec.hosts.is_empty();

    if delegate {
        if !spec.gateways.is_empty() {
            error(
                &mut out,
                root.field("gateways"),
                "a delegate VirtualService (one without hosts) must not list gateways: the root VirtualService that delegates to it decides where it applies",
            );
        }
        if !spec.tls.is_empty() {
            error(&mut out, root.field("tls"), "a delegate VirtualService (one without hosts) cannot have tls routes: only http routes can be delegated");
        }
        if !spec.tcp.is_empty() {
            error(&mut out, root.field("tcp"), "a delegate VirtualService (one without hosts) cannot have tcp routes: only http routes can be delegated");
        }
    }

    let scope = Scope::new(spec, ctx.namespace);
    check_gateway_names(&mut out, &root.field("gateways"), &spec.gateways);
    if scope.mesh {
        check_no_jwt_routing(&mut out, spec, &root);
    }
    check_hosts(&mut out, spec, &root, &scope);

    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        error(
            &mut out,
            root.clone(),
            "a VirtualService needs at least one http, tcp or tls route",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        http::check_route(
            &mut out,
            &root.field("http").index(i),
            route,
            delegate,
            &scope,
        );
    }
    for (i, route) in spec.tls.iter().enumerate() {
        let p = root.field("tls").index(i);
        if route.r#match.is_empty() {
            error(
                &mut out,
                p.field("match"),
                "a tls route needs at least one match with sniHosts",
            );
        }
        for (j, m) in route.r#match.iter().enumerate() {
            check_tls_match(&mut out, &p.field("match").index(j), m, spec, &scope);
        }
        check_l4_route(
            &mut out,
            &p,
            route
                .route
                .iter()
                .map(|r| (r.destination.as_ref(), r.weight)),
            "tls",
        );
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let p = root.field("tcp").index(i);
        for (j, m) in route.r#match.iter().enumerate() {
            check_tcp_match(&mut out, &p.field("match").index(j), m, &scope);
        }
        check_l4_route(
            &mut out,
            &p,
            route
                .route
                .iter()
                .map(|r| (r.destination.as_ref(), r.weight)),
            "tcp",
        );
    }
    check_export_to(
        &mut out,
        &root.field("exportTo"),
        ctx.namespace,
        &spec.export_to,
        false,
    );
    analyze_unreachable(&mut out, spec, &root);
    out
}

/// Where the VirtualService applies: the mesh (sidecars) and/or named gateways.
pub(super) struct Scope {
    /// Bound to sidecars: no gateways listed, or `mesh` among them.
    pub mesh: bool,
    /// The gateways it is bound to, as `namespace/name` (plus `mesh`); `None` for a
    /// delegate, whose gateways are those of the VirtualService delegating to it.
    gateways: Option<Vec<String>>,
    namespace: String,
}

impl Scope {
    fn new(spec: &VirtualService, namespace: &str) -> Self {
        let mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == MESH);
        let mut gateways: Vec<String> = spec
            .gateways
            .iter()
            .map(|g| qualify_gateway(g, namespace))
            .collect();
        if spec.gateways.is_empty() {
            gateways.push(MESH.to_string());
        }
        Scope {
            mesh,
            gateways: (!spec.hosts.is_empty()).then_some(gateways),
            namespace: namespace.to_string(),
        }
    }

    /// A match's gateways override the top-level ones, but only among the gateways
    /// the VirtualService is bound to: any other name can never be selected.
    pub fn check_match_gateways(&self, out: &mut Diags, path: &FieldPath, gateways: &[String]) {
        check_gateway_names(out, path, gateways);
        let Some(bound) = &self.gateways else { return };
        for (i, g) in gateways.iter().enumerate() {
            let q = qualify_gateway(g, &self.namespace);
            if !bound.contains(&q) {
                warn(
                    out,
                    path.index(i),
                    format!("gateway {g:?} is not among the VirtualService's gateways, so this match never applies: add it to spec.gateways"),
                );
            }
        }
    }
}

/// `name` means a gateway in the VirtualService's namespace; the legacy
/// `name.namespace.svc...` form names one elsewhere.
fn qualify_gateway(name: &str, namespace: &str) -> String {
    if name == MESH || name.contains('/') {
        return name.to_string();
    }
    match name.split_once('.') {
        Some((gw, rest)) => {
            let ns = rest.split('.').next().unwrap_or(rest);
            format!("{ns}/{gw}")
        }
        None => format!("{namespace}/{name}"),
    }
}

/// Gateway references: `mesh`, `name`, or `namespace/name`.
fn check_gateway_names(out: &mut Diags, path: &FieldPath, gateways: &[String]) {
    for (i, g) in gateways.iter().enumerate() {
        let p = path.index(i);
        match g.split_once('/') {
            None => {
                if let Some((name, rest)) = g.split_once('.') {
                    let ns = rest.split('.').next().unwrap_or(rest);
                    warn(
                        out,
                        p.clone(),
                        format!(
                            "gateway {g:?} uses the legacy name.namespace form: write {ns}/{name}"
                        ),
                    );
                }
                if let Err(e) = super::common::fqdn(g) {
                    error(
                        out,
                        p,
                        format!("invalid gateway reference: {e}; write name or namespace/name"),
                    );
                }
            }
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    error(out, p, format!("gateway {g:?}: namespace and name cannot be empty; write namespace/name"));
                    continue;
                }
                if !names::is_dns1123_label(ns) {
                    error(
                        out,
                        p.clone(),
                        format!("gateway {g:?}: invalid namespace {ns:?}"),
                    );
                }
                if !names::is_dns1123_label(name) {
                    error(
                        out,
                        p,
                        format!("gateway {g:?}: invalid gateway name {name:?}"),
                    );
                }
            }
        }
    }
}

/// Headers named `@request.auth.claims.<claim>` route on JWT claims, which only
/// gateways (where the JWT is verified before routing) can do.
pub(super) fn is_jwt_claim_header(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    if name.len() < PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = &name[PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

fn check_no_jwt_routing(out: &mut Diags, spec: &VirtualService, root: &FieldPath) {
    for (i, route) in spec.http.iter().enumerate() {
        for (j, m) in route.r#match.iter().enumerate() {
            let p = root.field("http").index(i).field("match").index(j);
            for (field, map) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ] {
                for key in map.keys().filter(|k| is_jwt_claim_header(k)) {
                    error(
                        out,
                        p.field(field).key(key),
                        format!("JWT claim based routing ({key}) is only supported on gateways, but this VirtualService applies to the mesh"),
                    );
                }
            }
        }
    }
}

/// AUTO_PASSTHROUGH gateways route on SNI names Istio generates
/// (`outbound_.8080_._.reviews.default.svc.cluster.local`), which are not DNS names.
fn gateway_bound_host(host: &str, sni: bool) -> Result<(), String> {
    if sni && host.starts_with("outbound_") {
        let parts: Vec<&str> = host.split('_').collect();
        let format = "outbound_.<port>_.<subset>_.<hostname>";
        if parts.len() < 4 {
            return Err(format!(
                "domain name {host:?} invalid: generated SNI names follow {format}"
            ));
        }
        let port = parts[1].trim_matches('.');
        let hostname = parts[3].trim_matches('.');
        if !port.bytes().any(|b| b.is_ascii_digit()) {
            return Err(format!(
                "domain name {host:?} invalid (port part {port:?}): follow {format}"
            ));
        }
        if !hostname.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "domain name {host:?} invalid (host part {hostname:?}): follow {format}"
            ));
        }
        return Ok(());
    }
    wildcard_domain(host)
}

fn has_sni_hosts(spec: &VirtualService) -> bool {
    spec.tls
        .iter()
        .flat_map(|t| &t.r#match)
        .any(|m| !m.sni_hosts.is_empty())
}

fn check_hosts(out: &mut Diags, spec: &VirtualService, root: &FieldPath, scope: &Scope) {
    let sni = has_sni_hosts(spec);
    let mut all_valid = true;
    for (i, host) in spec.hosts.iter().enumerate() {
        let p = root.field("hosts").index(i);
        let checked = if scope.mesh {
            wildcard_domain(host)
        } else {
            gateway_bound_host(host, sni)
        };
        match checked {
            Err(e) => {
                if !names::is_ip(host) {
                    error(out, p, e);
                    all_valid = false;
                }
            }
            Ok(()) if scope.mesh && host == "*" => {
                error(
                    out,
                    p,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway: list the hostnames, or bind it to a gateway only",
                );
                all_valid = false;
            }
            Ok(()) => {}
        }
    }
    if !all_valid {
        return;
    }
    for (i, a) in spec.hosts.iter().enumerate() {
        for (j, b) in spec.hosts.iter().enumerate().skip(i + 1) {
            if hosts_overlap(a, b) {
                error(
                    out,
                    root.field("hosts").index(j),
                    format!("duplicate hosts in virtual service: {a:?} and {b:?} overlap; keep one of them"),
                );
            }
        }
    }
}

fn check_tls_match(
    out: &mut Diags,
    path: &FieldPath,
    m: &TLSMatchAttributes,
    spec: &VirtualService,
    scope: &Scope,
) {
    if m.sni_hosts.is_empty() {
        error(
            out,
            path.field("sniHosts"),
            "a tls match needs at least one SNI host",
        );
    }
    for (i, sni) in m.sni_hosts.iter().enumerate() {
        let p = path.field("sniHosts").index(i);
        let checked = if scope.mesh {
            wildcard_domain(sni)
        } else {
            gateway_bound_host(sni, true)
        };
        if let Err(e) = checked {
            if names::is_ip(sni) {
                warn(out, p, format!("SNI host {sni:?} is an IP address, which goes against the SNI spec: most clients never send it"));
            } else {
                error(out, p, e);
            }
            continue;
        }
        if !spec.hosts.iter().any(|h| host_subset_of(sni, h)) {
            error(
                out,
                p,
                format!(
                    "the SNI host {sni:?} is not a match for any of the virtual service hosts [{}]: add a covering host or fix the SNI name",
                    spec.hosts.join(", ")
                ),
            );
        }
    }
    check_subnets(
        out,
        &path.field("destinationSubnets"),
        &m.destination_subnets,
    );
    check_match_common(
        out,
        path,
        m.port,
        &m.source_labels,
        m.source_namespace.as_deref(),
        &m.gateways,
        scope,
    );
}

fn check_tcp_match(out: &mut Diags, path: &FieldPath, m: &L4MatchAttributes, scope: &Scope) {
    check_subnets(
        out,
        &path.field("destinationSubnets"),
        &m.destination_subnets,
    );
    if let Some(s) = &m.source_subnet {
        if let Err(e) = ip_subnet(s) {
            error(out, path.field("sourceSubnet"), e);
        }
    }
    check_match_common(
        out,
        path,
        m.port,
        &m.source_labels,
        m.source_namespace.as_deref(),
        &m.gateways,
        scope,
    );
}

/// Port, source labels and namespace, and gateways: shared by HTTP, TLS and TCP matches.
pub(super) fn check_match_common(
    out: &mut Diags,
    path: &FieldPath,
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    source_namespace: Option<&str>,
    gateways: &[String],
    scope: &Scope,
) {
    if let Some(port) = port.filter(|p| *p != 0) {
        check_port(out, path.field("port"), port);
    }
    check_labels(out, &path.field("sourceLabels"), source_labels);
    if let Some(ns) = source_namespace.filter(|ns| !ns.is_empty()) {
        if !names::is_dns1123_label(ns) {
            error(
                out,
                path.field("sourceNamespace"),
                format!("sourceNamespace {ns:?} is not a valid namespace name"),
            );
        }
    }
    scope.check_match_gateways(out, &path.field("gateways"), gateways);
}

/// `a.b.c.d/len` or a bare address, IPv4 or IPv6.
fn ip_subnet(value: &str) -> Result<(), String> {
    names::check_ip_or_cidr(value)
}

fn check_subnets(out: &mut Diags, path: &FieldPath, subnets: &[String]) {
    for (i, s) in subnets.iter().enumerate() {
        if let Err(e) = ip_subnet(s) {
            error(out, path.index(i), e);
        }
    }
}

fn check_l4_route<'a>(
    out: &mut Diags,
    path: &FieldPath,
    routes: impl ExactSizeIterator<Item = (Option<&'a Destination>, Option<i32>)>,
    kind: &str,
) {
    if routes.len() == 0 {
        error(
            out,
            path.field("route"),
            format!("a {kind} route needs at least one destination in route"),
        );
        return;
    }
    check_weighted_destinations(out, &path.field("route"), routes);
}

/// Destinations and weights of a route: weights are not negative, and when there are
/// several destinations they do not all weigh 0 (no traffic could flow).
pub(super) fn check_weighted_destinations<'a>(
    out: &mut Diags,
    path: &FieldPath,
    routes: impl Iterator<Item = (Option<&'a Destination>, Option<i32>)>,
) {
    let mut total: i64 = 0;
    let mut count = 0usize;
    for (i, (destination, weight)) in routes.enumerate() {
        count += 1;
        let p = path.index(i);
        match destination {
            Some(d) => check_destination(out, &p.field("destination"), d),
            None => error(out, p.field("destination"), "destination is required"),
        }
        let weight = weight.unwrap_or(0);
        if weight < 0 {
            error(
                out,
                p.field("weight"),
                format!("must not be negative (got {weight})"),
            );
        }
        total += i64::from(weight);
    }
    if count > 1 && total == 0 {
        error(
            out,
            path.clone(),
            "total weight of the destinations must be greater than 0: give at least one destination a positive weight",
        );
    }
}

/// String matches: a regex must compile as RE2; an empty prefix or regex is refused
/// where Envoy refuses it (everywhere except `uri`, which allows an empty prefix).
pub(super) fn check_string_match(
    out: &mut Diags,
    path: &FieldPath,
    sm: &StringMatch,
    allow_empty_prefix: bool,
) {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        error(out, path.clone(), "set only one of exact, prefix or regex");
        return;
    }
    if !allow_empty_prefix && sm.prefix.as_deref() == Some("") {
        error(
            out,
            path.field("prefix"),
            "prefix match cannot be empty: omit the match to match everything",
        );
    }
    if let Some(re) = &sm.regex {
        if re.is_empty() {
            error(out, path.field("regex"), "regex match cannot be empty");
        } else if let Err(e) = check_re2(re) {
            error(out, path.field("regex"), e);
        }
    }
}

/// Istio warns about rules that can never match: a rule after one without matches,
/// and matches repeated from earlier rules.
fn analyze_unreachable(out: &mut Diags, spec: &VirtualService, root: &FieldPath) {
    // The rule name is not part of what a request is matched on.
    let http: Vec<Vec<String>> = spec
        .http
        .iter()
        .map(|r| {
            let unnamed: Vec<_> = r
                .r#match
                .iter()
                .map(|m| HTTPMatchRequest {
                    name: None,
                    ..m.clone()
                })
                .collect();
            match_keys(&unnamed)
        })
        .collect();
    let names: Vec<Option<&str>> = spec.http.iter().map(|r| r.name.as_deref()).collect();
    report_unreachable(out, &root.field("http"), &http, &names);
    let tls: Vec<Vec<String>> = spec.tls.iter().map(|r| match_keys(&r.r#match)).collect();
    report_unreachable(out, &root.field("tls"), &tls, &[]);
    let tcp: Vec<Vec<String>> = spec.tcp.iter().map(|r| match_keys(&r.r#match)).collect();
    report_unreachable(out, &root.field("tcp"), &tcp, &[]);
}

fn match_keys<T: serde::Serialize>(matches: &[T]) -> Vec<String> {
    matches
        .iter()
        .map(|m| serde_json::to_string(m).unwrap_or_default())
        .collect()
}

fn report_unreachable(
    out: &mut Diags,
    path: &FieldPath,
    rules: &[Vec<String>],
    names: &[Option<&str>],
) {
    let label = |i: usize| match names.get(i).copied().flatten() {
        Some(n) => format!("{n:?}"),
        None => format!("#{i}"),
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut catch_all: Option<usize> = None;
    for (i, matches) in rules.iter().enumerate() {
        let p = path.index(i);
        if let Some(first) = catch_all {
            let reason = if matches.is_empty() {
                "only the last rule can have no matches"
            } else {
                "a rule without matches comes before it"
            };
            warn(
                out,
                p,
                format!(
                    "rule {} is never used ({reason}: rule {} matches everything)",
                    label(i),
                    label(first)
                ),
            );
            continue;
        }
        if matches.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut duplicates = 0;
        for (j, key) in matches.iter().enumerate() {
            if let Some(&earlier) = seen.get(key.as_str()) {
                duplicates += 1;
                warn(
                    out,
                    p.field("match").index(j),
                    format!(
                        "match #{j} of rule {} is never used: rule {} has the same match",
                        label(i),
                        label(earlier)
                    ),
                );
            } else {
                seen.insert(key, i);
            }
        }
        if duplicates == matches.len() {
            warn(
                out,
                p,
                format!(
                    "rule {} is never used: all its matches are used by earlier rules",
                    label(i)
                ),
            );
        }
    }
}

#[cfg(test)]
#[path = "virtual_service_tests.rs"]
mod tests;

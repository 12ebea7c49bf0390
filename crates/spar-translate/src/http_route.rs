//! One VirtualService HTTP rule → Envoy routes (one per `match`, in order): matches,
//! destinations and weights, redirect, direct response, rewrites, timeout, retries,
//! fault injection, mirrors, CORS and header operations.
//!
//! `typed_per_filter_config` is a map, and prost writes maps in iteration order: a route
//! with both `fault` and `corsPolicy` holds two entries, whose encoded order may differ
//! between runs (the resources still compare equal). Every other map Spar fills holds at
//! most one entry.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, DataSource, HeaderValue,
    HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, route, route_action, route_match,
    weighted_cluster, DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    RetryPolicy, Route, RouteAction, RouteMatch, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort, FaultAbort, HttpFault,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::BoolValue;
use spar_model::istio::types::{
    Destination, HTTPMatchRequest, HTTPRetry, HTTPRoute, HeaderOperations, Headers, Percent,
    StringMatch,
};

use crate::util::{any, outbound, parse_duration, seconds, u32v};
use crate::Ctx;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// Istio's retry conditions when a rule says nothing (and for `retries` without `retryOn`).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Where a rule is being applied: which listener port, which gateway (`mesh` for
/// sidecars), and the VirtualService's namespace for resolving short hosts.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub port: u32,
    pub gateway: &'a str,
    pub vs_namespace: &'a str,
}

/// Whether a `match` block applies to this proxy and listener at all (port, gateways,
/// source labels and namespace are decided here, not by Envoy).
pub fn match_applies(ctx: &Ctx<'_>, m: &HTTPMatchRequest, scope: &Scope<'_>) -> bool {
    if m.port.is_some_and(|p| p != scope.port) {
        return false;
    }
    if !m.gateways.is_empty() && !m.gateways.iter().any(|g| gateway_is(g, scope)) {
        return false;
    }
    if !m
        .source_labels
        .iter()
        .all(|(k, v)| ctx.node.labels.get(k) == Some(v))
    {
        return false;
    }
    m.source_namespace
        .as_deref()
        .is_none_or(|ns| ns == ctx.node.namespace)
}

/// A gateway reference as written in a VirtualService (`mesh`, `name`, `ns/name`) against
/// the gateway being built (`mesh` or `ns/name`).
pub fn gateway_is(reference: &str, scope: &Scope<'_>) -> bool {
    if reference == "mesh" || scope.gateway == "mesh" {
        return reference == scope.gateway;
    }
    if reference.contains('/') {
        reference == scope.gateway
    } else {
        format!("{}/{reference}", scope.vs_namespace) == scope.gateway
    }
}

/// The Envoy routes for one HTTP rule; empty when none of its matches applies here.
pub fn routes(ctx: &Ctx<'_>, rule: &HTTPRoute, scope: &Scope<'_>) -> Vec<Route> {
    let matches: Vec<RouteMatch> = if rule.r#match.is_empty() {
        vec![prefix_match("/")]
    } else {
        rule.r#match
            .iter()
            .filter(|m| match_applies(ctx, m, scope))
            .map(route_match)
            .collect()
    };
    let template = route_template(ctx, rule, scope);
    matches
        .into_iter()
        .map(|m| Route {
            r#match: Some(m),
            ..template.clone()
        })
        .collect()
}

pub fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_string())),
        ..Default::default()
    }
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

/// An Istio StringMatch; `None` when it sets nothing (then "present" is meant).
pub fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &m.exact {
        string_matcher::MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        string_matcher::MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        string_matcher::MatchPattern::SafeRegex(regex(r))
    } else {
        return None;
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn header(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        header_match_specifier: Some(match string_matcher(m) {
            Some(sm) => header_matcher::HeaderMatchSpecifier::StringMatch(sm),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
        ..Default::default()
    }
}

/// Istio match → Envoy match: uri → path/prefix/safe_regex; method, authority and scheme
/// are the pseudo-headers `:method`, `:authority`, `:scheme`; withoutHeaders inverts.
pub fn route_match(m: &HTTPMatchRequest) -> RouteMatch {
    let mut out = match &m.uri {
        Some(u) => RouteMatch {
            path_specifier: Some(if let Some(e) = &u.exact {
                route_match::PathSpecifier::Path(e.clone())
            } else if let Some(p) = &u.prefix {
                route_match::PathSpecifier::Prefix(p.clone())
            } else if let Some(r) = &u.regex {
                route_match::PathSpecifier::SafeRegex(regex(r))
            } else {
                route_match::PathSpecifier::Prefix("/".to_string())
            }),
            ..Default::default()
        },
        None => prefix_match("/"),
    };
    if m.ignore_uri_case == Some(true) {
        out.case_sensitive = Some(BoolValue { value: false });
    }
    for (name, sm) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            out.headers.push(header(name, sm, false));
        }
    }
    out.headers
        .extend(m.headers.iter().map(|(k, v)| header(k, v, false)));
    out.headers
        .extend(m.without_headers.iter().map(|(k, v)| header(k, v, true)));
    out.query_parameters = m
        .query_params
        .iter()
        .map(|(k, v)| QueryParameterMatcher {
            name: k.clone(),
            query_parameter_match_specifier: Some(match string_matcher(v) {
                Some(sm) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    out
}

/// The cluster a destination names: `outbound|<port>|<subset>|<fqdn>`. The port is the
/// destination's, else the service's only port, else the listener's.
pub fn destination_cluster(ctx: &Ctx<'_>, d: &Destination, scope: &Scope<'_>) -> String {
    let host = d.host.as_deref().unwrap_or_default();
    let svc = ctx.registry.lookup(host, scope.vs_namespace);
    let fqdn = crate::dr::resolve_host(ctx, host, scope.vs_namespace);
    let port = d
        .port
        .as_ref()
        .and_then(|p| p.number)
        .or_else(|| svc.filter(|s| s.ports.len() == 1).map(|s| s.ports[0].port))
        .unwrap_or(scope.port);
    outbound(port, d.subset.as_deref().unwrap_or_default(), &fqdn)
}

fn header_options(
    set: &BTreeMap<String, String>,
    add: &BTreeMap<String, String>,
) -> Vec<HeaderValueOption> {
    let opt = |k: &String, v: &String, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    set.iter()
        .map(|(k, v)| opt(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            add.iter()
                .map(|(k, v)| opt(k, v, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

/// Request and response header operations: (to add, to remove) for each direction.
type HeaderOps = (
    Vec<HeaderValueOption>,
    Vec<String>,
    Vec<HeaderValueOption>,
    Vec<String>,
);

fn header_ops(h: Option<&Headers>) -> HeaderOps {
    let split = |o: Option<&HeaderOperations>| match o {
        Some(o) => (header_options(&o.set, &o.add), o.remove.clone()),
        None => (Vec::new(), Vec::new()),
    };
    let (req_add, req_rm) = split(h.and_then(|h| h.request.as_ref()));
    let (resp_add, resp_rm) = split(h.and_then(|h| h.response.as_ref()));
    (req_add, req_rm, resp_add, resp_rm)
}

/// Istio's percentages (0–100, fractional) as Envoy fractions of a million.
pub fn fraction(p: Option<&Percent>, default: f64) -> FractionalPercent {
    let v = p.and_then(|p| p.value).unwrap_or(default).clamp(0.0, 100.0);
    FractionalPercent {
        numerator: (v * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

fn route_template(ctx: &Ctx<'_>, rule: &HTTPRoute, scope: &Scope<'_>) -> Route {
    let mut r = Route {
        name: rule.name.clone().unwrap_or_default(),
        ..Default::default()
    };
    let (req_add, req_rm, resp_add, resp_rm) = header_ops(rule.headers.as_ref());
    r.request_headers_to_add = req_add;
    r.request_headers_to_remove = req_rm;
    r.response_headers_to_add = resp_add;
    r.response_headers_to_remove = resp_rm;
    if let Some(redirect) = &rule.redirect {
        r.action = Some(route::Action::Redirect(redirect_action(redirect)));
    } else if let Some(dr) = &rule.direct_response {
        let body = dr.body.as_ref().and_then(|b| {
            let spec = if let Some(s) = &b.string {
                data_source::Specifier::InlineString(s.clone())
            } else {
                data_source::Specifier::InlineBytes(b.bytes.clone()?.into_bytes())
            };
            Some(DataSource {
                specifier: Some(spec),
                ..Default::default()
            })
        });
        r.action = Some(route::Action::DirectResponse(DirectResponseAction {
            status: dr.status.unwrap_or(200),
            body,
            ..Default::default()
        }));
    } else {
        r.action = Some(route::Action::Route(route_action(ctx, rule, scope)));
    }
    if let Some(f) = &rule.fault {
        r.typed_per_filter_config
            .insert(FAULT_FILTER.to_string(), any(&fault(f)));
    }
    if let Some(c) = &rule.cors_policy {
        r.typed_per_filter_config
            .insert(CORS_FILTER.to_string(), any(&cors(c)));
    }
    r
}

fn redirect_action(rd: &spar_model::istio::types::HTTPRedirect) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    let code = match rd.redirect_code.unwrap_or(301) {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    RedirectAction {
        host_redirect: rd.authority.clone().unwrap_or_default(),
        port_redirect: rd.port.unwrap_or(0),
        response_code: code as i32,
        scheme_rewrite_specifier: rd
            .scheme
            .clone()
            .map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: rd
            .uri
            .clone()
            .map(PathRewriteSpecifier::PathRedirect)
            .or_else(|| {
                rd.prefix_rewrite
                    .clone()
                    .map(PathRewriteSpecifier::PrefixRewrite)
            }),
        ..Default::default()
    }
}

fn route_action(ctx: &Ctx<'_>, rule: &HTTPRoute, scope: &Scope<'_>) -> RouteAction {
    let mut a = RouteAction {
        // Istio turns Envoy's 15s default off: a rule without `timeout` waits as long as
        // the application does.
        timeout: Some(parse_duration(rule.timeout.as_deref()).unwrap_or(seconds(0))),
        retry_policy: retry_policy(rule.retries.as_ref().or(mesh_default_retries(ctx).as_ref())),
        ..Default::default()
    };
    let dests: Vec<_> = rule
        .route
        .iter()
        .filter_map(|d| d.destination.as_ref().map(|dest| (d, dest)))
        .collect();
    if dests.len() == 1 {
        let cluster = destination_cluster(ctx, dests[0].1, scope);
        a.hash_policy = hash_policy(ctx, &cluster);
        a.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(cluster));
    } else if !dests.is_empty() {
        let clusters = dests
            .iter()
            .map(|(d, dest)| {
                let (req_add, req_rm, resp_add, resp_rm) = header_ops(d.headers.as_ref());
                weighted_cluster::ClusterWeight {
                    name: destination_cluster(ctx, dest, scope),
                    weight: Some(u32v(u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0))),
                    request_headers_to_add: req_add,
                    request_headers_to_remove: req_rm,
                    response_headers_to_add: resp_add,
                    response_headers_to_remove: resp_rm,
                    ..Default::default()
                }
            })
            .collect::<Vec<_>>();
        let clusters = positive_weights(clusters);
        a.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        ));
    }
    if let Some(rw) = &rule.rewrite {
        if let Some(u) = &rw.uri {
            a.prefix_rewrite = u.clone();
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            a.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(rr.r#match.as_deref().unwrap_or_default())),
                substitution: rr.rewrite.clone().unwrap_or_default(),
            });
        }
        if let Some(auth) = &rw.authority {
            a.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(auth.clone()),
            );
        }
    }
    a.request_mirror_policies = mirrors(ctx, rule, scope);
    a
}

fn mirrors(
    ctx: &Ctx<'_>,
    rule: &HTTPRoute,
    scope: &Scope<'_>,
) -> Vec<route_action::RequestMirrorPolicy> {
    let mirror = |d: &Destination, pct: FractionalPercent| route_action::RequestMirrorPolicy {
        cluster: destination_cluster(ctx, d, scope),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(pct),
            runtime_key: String::new(),
        }),
        ..Default::default()
    };
    let mut out = Vec::new();
    if let Some(m) = &rule.mirror {
        let legacy = rule
            .mirror_percent
            .or(rule.mirror_percent_snake)
            .map(|v| Percent {
                value: Some(f64::from(v)),
            });
        let pct = rule.mirror_percentage.as_ref().or(legacy.as_ref());
        out.push(mirror(m, fraction(pct, 100.0)));
    }
    for m in &rule.mirrors {
        if let Some(d) = &m.destination {
            out.push(mirror(d, fraction(m.percentage.as_ref(), 100.0)));
        }
    }
    out
}

/// Drops zero-weight destinations; when no weight is set at all, shares traffic equally
/// (Envoy refuses weighted clusters whose weights sum to zero).
fn positive_weights(
    mut clusters: Vec<weighted_cluster::ClusterWeight>,
) -> Vec<weighted_cluster::ClusterWeight> {
    let weight = |c: &weighted_cluster::ClusterWeight| c.weight.as_ref().map_or(0, |w| w.value);
    if clusters.iter().all(|c| weight(c) == 0) {
        for c in &mut clusters {
            c.weight = Some(u32v(1));
        }
        return clusters;
    }
    clusters.retain(|c| weight(c) > 0);
    clusters
}

/// The mesh-wide default retry policy (`defaultHttpRetryPolicy`) as a VirtualService
/// `retries` block, for rules that set none.
pub fn mesh_default_retries(ctx: &Ctx<'_>) -> Option<HTTPRetry> {
    let d = ctx.config.mesh().default_http_retry_policy.as_ref()?;
    Some(HTTPRetry {
        attempts: d.attempts,
        per_try_timeout: d.per_try_timeout.clone(),
        retry_on: d.retry_on.clone(),
        ..Default::default()
    })
}

/// Istio's `retries`: `attempts: 0` turns retries off; codes in `retryOn` become
/// retriable status codes.
pub fn retry_policy(r: Option<&HTTPRetry>) -> Option<RetryPolicy> {
    let Some(r) = r else {
        return Some(RetryPolicy {
            retry_on: DEFAULT_RETRY_ON.to_string(),
            num_retries: Some(u32v(2)),
            retriable_status_codes: vec![503],
            ..Default::default()
        });
    };
    let attempts = r.attempts.unwrap_or(2);
    if attempts <= 0 {
        return None;
    }
    let written = r.retry_on.as_deref().unwrap_or(DEFAULT_RETRY_ON);
    let mut on = Vec::new();
    let mut codes = Vec::new();
    for part in written.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) => on.push(part.to_string()),
        }
    }
    if !codes.is_empty() && !on.iter().any(|o| o == "retriable-status-codes") {
        on.push("retriable-status-codes".to_string());
    }
    if written == DEFAULT_RETRY_ON {
        codes.push(503);
    }
    Some(RetryPolicy {
        retry_on: on.join(","),
        num_retries: Some(u32v(u32::try_from(attempts).unwrap_or(2))),
        per_try_timeout: parse_duration(r.per_try_timeout.as_deref()),
        retriable_status_codes: codes,
        ..Default::default()
    })
}

fn fault(f: &spar_model::istio::types::HTTPFaultInjection) -> HttpFault {
    HttpFault {
        delay: f.delay.as_ref().map(|d| {
            let legacy = d.percent.map(|p| Percent {
                value: Some(f64::from(p)),
            });
            FaultDelay {
                percentage: Some(fraction(d.percentage.as_ref().or(legacy.as_ref()), 100.0)),
                fault_delay_secifier: parse_duration(d.fixed_delay.as_deref())
                    .map(fault_delay::FaultDelaySecifier::FixedDelay),
            }
        }),
        abort: f.abort.as_ref().map(|a| FaultAbort {
            percentage: Some(fraction(a.percentage.as_ref(), 100.0)),
            error_type: if let Some(code) = a.http_status {
                Some(fault_abort::ErrorType::HttpStatus(
                    u32::try_from(code).unwrap_or(500),
                ))
            } else {
                a.grpc_status
                    .as_deref()
                    .and_then(grpc_code)
                    .map(fault_abort::ErrorType::GrpcStatus)
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// gRPC status names (`UNAVAILABLE`) or numbers as their codes.
fn grpc_code(s: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    s.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| u32::try_from(i).ok())
    })
}

fn cors(c: &spar_model::istio::types::CorsPolicy) -> CorsPolicy {
    let mut origins: Vec<StringMatcher> =
        c.allow_origins.iter().filter_map(string_matcher).collect();
    origins.extend(c.allow_origin.iter().map(|o| StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(o.clone())),
        ignore_case: false,
    }));
    CorsPolicy {
        allow_origin_string_match: origins,
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: parse_duration(c.max_age.as_deref())
            .map(|d| d.seconds.to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|v| BoolValue { value: v }),
        ..CorsPolicy::default()
    }
}

/// A DestinationRule's `consistentHash` key for the destination's (port, subset), as
/// the route's hash policy (Envoy hashes per route, Istio configures per destination).
pub fn hash_policy(ctx: &Ctx<'_>, cluster: &str) -> Vec<route_action::HashPolicy> {
    use route_action::hash_policy::{
        ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter,
    };
    let mut parts = cluster.splitn(4, '|');
    let (Some(_), Some(port), Some(subset), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Vec::new();
    };
    let Ok(port) = port.parse::<u32>() else {
        return Vec::new();
    };
    let ns = ctx
        .registry
        .lookup(host, &ctx.node.namespace)
        .map(|s| s.namespace.as_str())
        .unwrap_or_default();
    let Some(rule) = crate::dr::for_host(ctx, host, ns) else {
        return Vec::new();
    };
    let Some(ch) = rule
        .policy(port, subset)
        .load_balancer
        .and_then(|lb| lb.consistent_hash.as_ref())
    else {
        return Vec::new();
    };
    let spec = if let Some(h) = &ch.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: c.name.clone().unwrap_or_default(),
            ttl: parse_duration(c.ttl.as_deref()),
            path: c.path.clone().unwrap_or_default(),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: q.clone() })
    } else {
        return Vec::new();
    };
    vec![route_action::HashPolicy {
        policy_specifier: Some(spec),
        terminal: false,
    }]
}

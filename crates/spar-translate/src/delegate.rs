//! Delegate VirtualServices: a root rule with `delegate: {name, namespace}` hands its
//! traffic to the HTTP rules of another VirtualService (which has no `hosts`). Each
//! delegate match is merged with each root match: the delegate's conditions, with every
//! condition it leaves unset taken from the root (headers and query parameters are
//! united, the delegate's value winning on the same name). Destinations resolve in the
//! delegate's namespace. Delegates do not chain.

use envoy_types::pb::envoy::config::route::v3::Route;
use spar_model::istio::types::{HTTPMatchRequest, HTTPRoute};
use spar_model::Kind;

use crate::http_route::{self, Scope};
use crate::Ctx;

/// The routes a root rule's delegate produces (none when the delegate is missing).
pub fn routes(ctx: &Ctx<'_>, root: &HTTPRoute, scope: &Scope<'_>) -> Vec<Route> {
    let Some(d) = &root.delegate else {
        return Vec::new();
    };
    let Some(name) = d.name.as_deref() else {
        return Vec::new();
    };
    let ns = d.namespace.as_deref().unwrap_or(scope.vs_namespace);
    let Some((source, delegate)) = ctx
        .config
        .of_kind(Kind::VirtualService)
        .filter(|r| r.meta.name == name && r.meta.namespace == ns)
        .find_map(|r| Some((r, r.body.virtual_service()?)))
    else {
        return Vec::new();
    };
    if !delegate.hosts.is_empty() {
        // A VirtualService with hosts is a root itself, never a delegate (Istio ignores it).
        return Vec::new();
    }
    let inner = Scope {
        vs_namespace: ns,
        ..*scope
    };
    let root_matches: Vec<&HTTPMatchRequest> = root
        .r#match
        .iter()
        .filter(|m| http_route::match_applies(ctx, m, scope))
        .collect();
    if !root.r#match.is_empty() && root_matches.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for rule in delegate.http.iter().filter(|r| r.delegate.is_none()) {
        let mut merged = rule.clone();
        merged.r#match = merge(&root_matches, &rule.r#match);
        out.extend(crate::util::with_source(
            http_route::routes(ctx, &merged, &inner),
            source,
        ));
    }
    out
}

fn merge(root: &[&HTTPMatchRequest], delegate: &[HTTPMatchRequest]) -> Vec<HTTPMatchRequest> {
    if root.is_empty() {
        return delegate.to_vec();
    }
    if delegate.is_empty() {
        return root.iter().map(|m| (*m).clone()).collect();
    }
    let mut out = Vec::new();
    for r in root {
        for d in delegate {
            let mut m = d.clone();
            m.uri = m.uri.or_else(|| r.uri.clone());
            m.method = m.method.or_else(|| r.method.clone());
            m.authority = m.authority.or_else(|| r.authority.clone());
            m.scheme = m.scheme.or_else(|| r.scheme.clone());
            m.port = m.port.or(r.port);
            m.ignore_uri_case = m.ignore_uri_case.or(r.ignore_uri_case);
            m.source_namespace = m.source_namespace.or_else(|| r.source_namespace.clone());
            m.gateways = r.gateways.clone();
            for (k, v) in &r.headers {
                m.headers.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &r.without_headers {
                m.without_headers
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            for (k, v) in &r.query_params {
                m.query_params.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &r.source_labels {
                m.source_labels
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            out.push(m);
        }
    }
    out
}

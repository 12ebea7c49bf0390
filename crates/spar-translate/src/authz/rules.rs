//! One `AuthorizationPolicy` rule → one Envoy RBAC `Policy`: `from` sources become
//! principals, `to` operations permissions, `when` conditions whichever of the two their
//! key belongs to. Lists inside a field are ORed, fields ANDed, `not*` fields negated;
//! several `from` (or `to`) entries are ORed, as Istio documents.
//!
//! On a TCP chain (`http == false`) the HTTP-only fields cannot be evaluated: callers drop
//! an ALLOW rule that uses them ([`uses_http`]); for DENY and AUDIT the builders leave
//! those fields out, so the rule matches more connections (Istio's "stricter" handling).

use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, Permission, Policy, Principal,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{path_matcher, PathMatcher, StringMatcher};
use spar_model::istio::types::{Condition, Operation, Rule, Source};

use super::matchers::{self as m, header, istio_value};
use super::AuthzError;

/// How a rule is built: for which action (DENY-like rules match repeated headers
/// strictly) and whether the chain speaks HTTP.
#[derive(Clone, Copy)]
pub struct Mode {
    pub http: bool,
    pub deny_like: bool,
}

/// Whether a rule uses a field only HTTP requests carry.
pub fn uses_http(rule: &Rule) -> bool {
    let op = rule
        .to
        .iter()
        .filter_map(|t| t.operation.as_ref())
        .any(|o| {
            !(o.hosts.is_empty()
                && o.not_hosts.is_empty()
                && o.methods.is_empty()
                && o.not_methods.is_empty()
                && o.paths.is_empty()
                && o.not_paths.is_empty())
        });
    let src = rule
        .from
        .iter()
        .filter_map(|f| f.source.as_ref())
        .any(|s| !s.request_principals.is_empty() || !s.not_request_principals.is_empty());
    let when = rule
        .when
        .iter()
        .any(|c| c.key.as_deref().is_some_and(is_http_key));
    op || src || when
}

fn is_http_key(k: &str) -> bool {
    k.starts_with("request.")
}

pub fn policy(rule: &Rule, mode: Mode) -> Result<Policy, AuthzError> {
    let mut perms = Vec::new();
    let mut ids = Vec::new();
    let tos: Vec<Permission> = rule
        .to
        .iter()
        .filter_map(|t| t.operation.as_ref())
        .map(|o| operation(o, mode))
        .collect::<Result<_, _>>()?;
    if !tos.is_empty() {
        perms.push(or_perm(tos));
    }
    let froms: Vec<Principal> = rule
        .from
        .iter()
        .filter_map(|f| f.source.as_ref())
        .map(|s| source(s, mode))
        .collect::<Result<_, _>>()?;
    if !froms.is_empty() {
        ids.push(or_ids(froms));
    }
    for c in &rule.when {
        match condition(c, mode)? {
            Some(Cond::Permission(p)) => perms.push(p),
            Some(Cond::Principal(p)) => ids.push(p),
            None => {}
        }
    }
    Ok(Policy {
        permissions: vec![and_perm(perms)],
        principals: vec![and_ids(ids)],
        ..Default::default()
    })
}

// === permissions ===

fn operation(o: &Operation, mode: Mode) -> Result<Permission, AuthzError> {
    let mut all = Vec::new();
    let mut field = |vals: &[String],
                     not: bool,
                     f: &dyn Fn(&str) -> Result<Permission, AuthzError>|
     -> Result<(), AuthzError> {
        if vals.is_empty() {
            return Ok(());
        }
        let p = or_perm(vals.iter().map(|v| f(v)).collect::<Result<_, _>>()?);
        all.push(if not { not_perm(p) } else { p });
        Ok(())
    };
    if mode.http {
        field(&o.hosts, false, &|v| Ok(host(v)))?;
        field(&o.not_hosts, true, &|v| Ok(host(v)))?;
        field(&o.methods, false, &|v| Ok(method(v)))?;
        field(&o.not_methods, true, &|v| Ok(method(v)))?;
        field(&o.paths, false, &path)?;
        field(&o.not_paths, true, &path)?;
    }
    field(&o.ports, false, &|v| {
        Ok(perm(permission::Rule::DestinationPort(m::port(v)?)))
    })?;
    field(&o.not_ports, true, &|v| {
        Ok(perm(permission::Rule::DestinationPort(m::port(v)?)))
    })?;
    Ok(and_perm(all))
}

/// `:authority`, case-insensitive, with or without a port (`example.com` also matches
/// `Example.COM:8080`); `*.example.com` and `example.*` wildcards.
fn host(v: &str) -> Permission {
    let body = if v == "*" {
        ".+".to_string()
    } else if let Some(s) = v.strip_prefix('*') {
        format!(".*{}", m::escape(s))
    } else if let Some(p) = v.strip_suffix('*') {
        format!("{}.*", m::escape(p))
    } else {
        m::escape(v)
    };
    perm(permission::Rule::Header(header(
        ":authority",
        m::regex(&format!("(?i){body}(:[0-9]+)?")),
    )))
}

fn method(v: &str) -> Permission {
    perm(permission::Rule::Header(header(":method", istio_value(v))))
}

/// Paths: exact, `prefix*`, `*suffix` or `*`, matched against the path without query
/// and fragment. `{*}` / `{**}` templates are checked ([`template`]) but not translated:
/// both Envoy's URI-template matcher and the equivalent RE2 made Envoy 1.40 abort when
/// loading the RBAC filter in our tests, so a rule with one fails closed (an ALLOW rule
/// is dropped, a DENY rule denies everything). See docs/differences.md.
fn path(v: &str) -> Result<Permission, AuthzError> {
    if v.contains('{') {
        template(v)?;
        return Err(AuthzError::UnsupportedPathTemplate(v.to_string()));
    }
    Ok(perm(permission::Rule::UrlPath(url_path(istio_value(v)))))
}

/// `/api/{*}/view` → `/api/[^/]+/view`; `/files/{**}` → `/files/.+`.
pub fn template(v: &str) -> Result<String, AuthzError> {
    let bad = || AuthzError::BadPathTemplate(v.to_string());
    if !v.starts_with('/') {
        return Err(bad());
    }
    let mut out = String::new();
    let mut seen_double = false;
    for (i, seg) in v.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match seg {
            "{*}" if !seen_double => out.push_str("[^/]+"),
            "{**}" if !seen_double => {
                seen_double = true;
                out.push_str(".+");
            }
            s if s.contains(['{', '}']) || (seen_double && !s.is_empty()) => return Err(bad()),
            s => out.push_str(&m::escape(s)),
        }
    }
    Ok(out)
}

fn url_path(s: StringMatcher) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(s)),
    }
}

// === principals ===

fn source(s: &Source, mode: Mode) -> Result<Principal, AuthzError> {
    let mut all = Vec::new();
    let mut field = |vals: &[String],
                     not: bool,
                     f: &dyn Fn(&str) -> Result<Principal, AuthzError>|
     -> Result<(), AuthzError> {
        if vals.is_empty() {
            return Ok(());
        }
        let p = or_ids(vals.iter().map(|v| f(v)).collect::<Result<_, _>>()?);
        all.push(if not { not_id(p) } else { p });
        Ok(())
    };
    field(&s.principals, false, &|v| Ok(spiffe(v)))?;
    field(&s.not_principals, true, &|v| Ok(spiffe(v)))?;
    field(&s.namespaces, false, &|v| Ok(namespace(v)))?;
    field(&s.not_namespaces, true, &|v| Ok(namespace(v)))?;
    field(&s.service_accounts, false, &service_account)?;
    field(&s.not_service_accounts, true, &service_account)?;
    field(&s.trust_domains, false, &|v| Ok(trust_domain(v)))?;
    field(&s.not_trust_domains, true, &|v| Ok(trust_domain(v)))?;
    field(&s.ip_blocks, false, &|v| {
        Ok(id(principal::Identifier::DirectRemoteIp(m::cidr(v)?)))
    })?;
    field(&s.not_ip_blocks, true, &|v| {
        Ok(id(principal::Identifier::DirectRemoteIp(m::cidr(v)?)))
    })?;
    field(&s.remote_ip_blocks, false, &|v| {
        Ok(id(principal::Identifier::RemoteIp(m::cidr(v)?)))
    })?;
    field(&s.not_remote_ip_blocks, true, &|v| {
        Ok(id(principal::Identifier::RemoteIp(m::cidr(v)?)))
    })?;
    if mode.http {
        field(&s.request_principals, false, &|v| Ok(request_principal(v)))?;
        field(&s.not_request_principals, true, &|v| {
            Ok(request_principal(v))
        })?;
    }
    // "Anyone but X" in an ALLOW rule still needs someone: a plaintext caller (PERMISSIVE)
    // has no peer identity and a request without a token no request principal, so neither
    // may pass as "not X" (Istio's published bypass class). A DENY rule keeps the bare
    // negation, which already catches them.
    if !mode.deny_like {
        let peer_negated = !(s.not_principals.is_empty()
            && s.not_namespaces.is_empty()
            && s.not_service_accounts.is_empty()
            && s.not_trust_domains.is_empty());
        if peer_negated {
            all.push(spiffe("*"));
        }
        if mode.http && !s.not_request_principals.is_empty() {
            all.push(request_principal("*"));
        }
    }
    Ok(and_ids(all))
}

fn authenticated(m: StringMatcher) -> Principal {
    id(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

/// A peer identity `<trust-domain>/ns/<ns>/sa/<sa>`, matched on the client certificate's
/// SPIFFE URI.
fn spiffe(v: &str) -> Principal {
    let m = if v == "*" {
        m::regex(".+")
    } else if let Some(p) = v.strip_suffix('*') {
        m::prefix(&format!("spiffe://{p}"))
    } else if let Some(s) = v.strip_prefix('*') {
        m::suffix(s)
    } else {
        m::exact(&format!("spiffe://{v}"))
    };
    authenticated(m)
}

fn namespace(v: &str) -> Principal {
    authenticated(m::regex(&format!(".*/ns/{}/.*", m::glob(v))))
}

/// `serviceAccounts` entries are `<namespace>/<name>`.
fn service_account(v: &str) -> Result<Principal, AuthzError> {
    let (ns, sa) = v
        .split_once('/')
        .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| AuthzError::BadServiceAccount(v.to_string()))?;
    Ok(authenticated(m::regex(&format!(
        "spiffe://[^/]+/ns/{}/sa/{}",
        m::escape(ns),
        m::escape(sa)
    ))))
}

fn trust_domain(v: &str) -> Principal {
    authenticated(m::regex(&format!("spiffe://{}/.*", m::glob(v))))
}

/// A request principal `<iss>/<sub>` of a verified JWT. The payload holds `iss` and `sub`
/// apart, so the value is split: at the last `/` for exact values and prefixes that reach
/// into the subject; `*` means any verified token.
pub fn request_principal(v: &str) -> Principal {
    let md = |path: &str, s: StringMatcher| jwt_principal(m::jwt_claim(&[path], s));
    if v == "*" {
        return md("iss", m::regex(".+"));
    }
    if let Some(p) = v.strip_suffix('*') {
        return match p.rsplit_once('/') {
            Some((iss, sub)) if !iss.is_empty() && !iss.ends_with('/') => {
                and_ids(vec![md("iss", m::exact(iss)), md("sub", m::prefix(sub))])
            }
            _ => md("iss", m::prefix(p)),
        };
    }
    if let Some(s) = v.strip_prefix('*') {
        return match s.rsplit_once('/') {
            Some((iss_tail, sub)) => and_ids(vec![
                md("iss", m::suffix(iss_tail)),
                md("sub", m::exact(sub)),
            ]),
            None => md("sub", m::suffix(s)),
        };
    }
    match v.rsplit_once('/') {
        Some((iss, sub)) => and_ids(vec![md("iss", m::exact(iss)), md("sub", m::exact(sub))]),
        // No `/`: no token can have this principal.
        None => not_id(id(principal::Identifier::Any(true))),
    }
}

// === conditions ===

enum Cond {
    Permission(Permission),
    Principal(Principal),
}

fn condition(c: &Condition, mode: Mode) -> Result<Option<Cond>, AuthzError> {
    let key = c.key.as_deref().unwrap_or_default();
    if !mode.http && is_http_key(key) {
        return Ok(None);
    }
    type P = fn(&str, &str, Mode) -> Result<Principal, AuthzError>;
    type Q = fn(&str) -> Result<Permission, AuthzError>;
    let principal_fn: Option<P> = match key {
        k if k.starts_with("request.headers[") => Some(|k, v, mode| {
            let name = bracket(k).ok_or_else(|| AuthzError::BadCondition(k.to_string()))?;
            let s = if mode.deny_like {
                m::header_value_for_deny(v)
            } else {
                istio_value(v)
            };
            Ok(id(principal::Identifier::Header(header(
                &name.to_ascii_lowercase(),
                s,
            ))))
        }),
        "source.ip" => Some(|_, v, _| Ok(id(principal::Identifier::DirectRemoteIp(m::cidr(v)?)))),
        "remote.ip" => Some(|_, v, _| Ok(id(principal::Identifier::RemoteIp(m::cidr(v)?)))),
        "source.namespace" => Some(|_, v, _| Ok(namespace(v))),
        "source.principal" => Some(|_, v, _| Ok(spiffe(v))),
        "request.auth.principal" => Some(|_, v, _| Ok(request_principal(v))),
        "request.auth.audiences" => Some(|_, v, _| Ok(claim(&["aud"], v))),
        "request.auth.presenter" => Some(|_, v, _| Ok(claim(&["azp"], v))),
        k if k.starts_with("request.auth.claims[") => Some(|k, v, _| {
            let path = claim_path(k).ok_or_else(|| AuthzError::BadCondition(k.to_string()))?;
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            Ok(claim(&refs, v))
        }),
        _ => None,
    };
    if let Some(f) = principal_fn {
        let build = |vals: &[String]| -> Result<Principal, AuthzError> {
            Ok(or_ids(
                vals.iter()
                    .map(|v| f(key, v, mode))
                    .collect::<Result<_, _>>()?,
            ))
        };
        let mut parts = Vec::new();
        if !c.values.is_empty() {
            parts.push(build(&c.values)?);
        }
        if !c.not_values.is_empty() {
            parts.push(not_id(build(&c.not_values)?));
        }
        return Ok(Some(Cond::Principal(and_ids(parts))));
    }
    let permission_fn: Q = match key {
        "destination.ip" => |v| Ok(perm(permission::Rule::DestinationIp(m::cidr(v)?))),
        "destination.port" => |v| Ok(perm(permission::Rule::DestinationPort(m::port(v)?))),
        "connection.sni" => |v| Ok(perm(permission::Rule::RequestedServerName(istio_value(v)))),
        _ => return Err(AuthzError::BadCondition(key.to_string())),
    };
    let build = |vals: &[String]| -> Result<Permission, AuthzError> {
        Ok(or_perm(
            vals.iter()
                .map(|v| permission_fn(v))
                .collect::<Result<_, _>>()?,
        ))
    };
    let mut parts = Vec::new();
    if !c.values.is_empty() {
        parts.push(build(&c.values)?);
    }
    if !c.not_values.is_empty() {
        parts.push(not_perm(build(&c.not_values)?));
    }
    Ok(Some(Cond::Permission(and_perm(parts))))
}

fn claim(path: &[&str], v: &str) -> Principal {
    jwt_principal(m::jwt_claim(path, istio_value(v)))
}

/// A principal on dynamic metadata. Envoy deprecated `metadata` for `sourced_metadata`
/// (1.33+); the older field is used because every Envoy Spar supports reads it and it
/// means the same (dynamic metadata).
#[allow(deprecated)]
fn jwt_principal(md: envoy_types::pb::envoy::r#type::matcher::v3::MetadataMatcher) -> Principal {
    id(principal::Identifier::Metadata(md))
}

/// `request.headers[x-user]` → `x-user`.
fn bracket(k: &str) -> Option<&str> {
    let inner = k.split_once('[')?.1.strip_suffix(']')?;
    (!inner.is_empty() && !inner.contains(['[', ']'])).then_some(inner)
}

/// `request.auth.claims[a][b]` → `["a", "b"]`.
fn claim_path(k: &str) -> Option<Vec<String>> {
    let rest = k.strip_prefix("request.auth.claims")?;
    let mut out = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        let inner = s.strip_prefix('[')?;
        let (name, tail) = inner.split_once(']')?;
        if name.is_empty() {
            return None;
        }
        out.push(name.to_string());
        s = tail;
    }
    (!out.is_empty()).then_some(out)
}

// === combinators ===

pub fn perm(r: permission::Rule) -> Permission {
    Permission { rule: Some(r) }
}

pub fn id(i: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(i),
    }
}

fn and_perm(mut v: Vec<Permission>) -> Permission {
    match v.len() {
        0 => perm(permission::Rule::Any(true)),
        1 => v.remove(0),
        _ => perm(permission::Rule::AndRules(permission::Set { rules: v })),
    }
}

fn or_perm(mut v: Vec<Permission>) -> Permission {
    match v.len() {
        1 => v.remove(0),
        _ => perm(permission::Rule::OrRules(permission::Set { rules: v })),
    }
}

fn not_perm(p: Permission) -> Permission {
    perm(permission::Rule::NotRule(Box::new(p)))
}

fn and_ids(mut v: Vec<Principal>) -> Principal {
    match v.len() {
        0 => id(principal::Identifier::Any(true)),
        1 => v.remove(0),
        _ => id(principal::Identifier::AndIds(principal::Set { ids: v })),
    }
}

fn or_ids(mut v: Vec<Principal>) -> Principal {
    match v.len() {
        1 => v.remove(0),
        _ => id(principal::Identifier::OrIds(principal::Set { ids: v })),
    }
}

fn not_id(p: Principal) -> Principal {
    id(principal::Identifier::NotId(Box::new(p)))
}

/// A policy matching every request (fail-closed stand-ins).
pub fn match_all() -> Policy {
    Policy {
        permissions: vec![and_perm(Vec::new())],
        principals: vec![and_ids(Vec::new())],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_keys_parse() {
        assert_eq!(bracket("request.headers[x-user]"), Some("x-user"));
        assert_eq!(bracket("request.headers[]"), None);
        assert_eq!(
            claim_path("request.auth.claims[a][b]"),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(claim_path("request.auth.claims"), None);
        assert_eq!(claim_path("request.auth.claims[a]x"), None);
        assert_eq!(template("/api/{*}/view").unwrap(), "/api/[^/]+/view");
        assert_eq!(template("/files/{**}").unwrap(), "/files/.+");
        assert!(template("/a/{**}/b").is_err() && template("/a{*}").is_err());
    }
}

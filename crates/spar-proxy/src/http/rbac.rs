//! Evaluating `envoy.filters.http.rbac` for one request, as Envoy does: ALLOW rules allow
//! only what some policy matches, DENY rules deny what some policy matches, LOG rules allow
//! everything. A policy matches when any of its permissions and any of its principals do.
//! Shadow rules are evaluated and logged, never enforced (Istio's `istio.io/dry-run`).

use std::net::{IpAddr, SocketAddr};

use crate::config::rbac::{Permission, Principal, RbacAction, RbacFilter, RbacRules};
use crate::config::route::{HeaderMatch, HeaderMatcher};
use crate::route::RequestHead;

/// What RBAC sees of a request and its connection.
pub struct RbacInput<'a> {
    /// The request; `None` for the network filter, where header and path rules never match.
    pub head: Option<&'a RequestHead<'a>>,
    /// Where the connection was going (the original destination).
    pub dst: SocketAddr,
    /// The connection's peer.
    pub direct_remote: IpAddr,
    /// The client as the connection manager determined it.
    pub remote: IpAddr,
    /// `Some` when the client presented a certificate: its URI SAN, else its first DNS
    /// SAN, else empty (Envoy's principal name).
    pub peer_principal: Option<&'a str>,
    /// The SNI of the client's TLS ClientHello; empty without TLS or without SNI.
    pub sni: &'a str,
    /// `envoy.filters.http.jwt_authn`'s dynamic metadata: verified JWT payloads by
    /// `payload_in_metadata` key; `None` when no token was verified.
    pub jwt: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The outcome of the enforced rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied; the policy that matched, for DENY rules.
    Deny(Option<String>),
}

/// Runs `filter` on `input`: the enforced decision. Shadow rules are logged only.
pub fn check(filter: &RbacFilter, input: &RbacInput<'_>) -> Decision {
    check_with_shadow(filter, input).0
}

/// What the shadow rules decided: Envoy records it in the request's dynamic metadata
/// (`envoy.filters.http.rbac`), where later filters (ext_authz for Istio's CUSTOM action)
/// read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadow<'r> {
    pub allowed: bool,
    /// The first policy that matched.
    pub policy: Option<&'r str>,
}

impl Shadow<'_> {
    /// Writes Envoy's keys into the `envoy.filters.http.rbac` namespace:
    /// `<prefix>shadow_effective_policy_id` (when a policy matched) and
    /// `<prefix>shadow_engine_result` (`allowed` / `denied`).
    pub fn record(&self, prefix: &str, md: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(p) = self.policy {
            md.insert(
                format!("{prefix}shadow_effective_policy_id"),
                serde_json::Value::String(p.to_string()),
            );
        }
        let result = if self.allowed { "allowed" } else { "denied" };
        md.insert(
            format!("{prefix}shadow_engine_result"),
            serde_json::Value::String(result.into()),
        );
    }
}

/// [`check`], and what the shadow rules (if any) decided.
pub fn check_with_shadow<'r>(
    filter: &'r RbacFilter,
    input: &RbacInput<'_>,
) -> (Decision, Option<Shadow<'r>>) {
    let shadow = filter.shadow.as_ref().map(|shadow| {
        let (allowed, policy) = decide(shadow, input);
        tracing::debug!(
            target: "spar_proxy::rbac",
            prefix = %filter.shadow_stat_prefix,
            allowed,
            policy = policy.unwrap_or("none"),
            path = input.head.map_or("", |h| h.path),
            "shadow RBAC decision (not enforced)"
        );
        Shadow { allowed, policy }
    });
    let Some(rules) = &filter.rules else {
        return (Decision::Allow, shadow);
    };
    let decision = match decide(rules, input) {
        (true, _) => Decision::Allow,
        (false, policy) => Decision::Deny(policy.map(str::to_string)),
    };
    (decision, shadow)
}

/// (allowed, the first policy that matched).
fn decide<'r>(rules: &'r RbacRules, input: &RbacInput<'_>) -> (bool, Option<&'r str>) {
    let matches = |i: u32| {
        let p = &rules.policies[i as usize].1;
        p.permissions.iter().any(|x| permission(x, input))
            && p.principals.iter().any(|x| principal(x, input))
    };
    // The first matching policy in order: among those that need no path, the first that
    // matches; among those the path admits (the index), any earlier one that matches.
    let mut first: Option<u32> = rules.index.ungated().iter().copied().find(|&i| matches(i));
    if let Some(head) = input.head {
        // The path as url_path matchers see it.
        let end = head.path.find(['?', '#']).unwrap_or(head.path.len());
        rules.index.for_each_admitted(&head.path[..end], |i| {
            if first.is_none_or(|f| i < f) && matches(i) {
                first = Some(i);
            }
        });
    }
    let matched = first.map(|i| rules.policies[i as usize].0.as_str());
    let allowed = match rules.action {
        RbacAction::Allow => matched.is_some(),
        RbacAction::Deny => matched.is_none(),
        RbacAction::Log => true,
    };
    (allowed, matched)
}

pub(crate) fn permission(p: &Permission, input: &RbacInput<'_>) -> bool {
    match p {
        Permission::Any => true,
        Permission::And(all) => all.iter().all(|x| permission(x, input)),
        Permission::Or(any) => any.iter().any(|x| permission(x, input)),
        Permission::Not(x) => !permission(x, input),
        Permission::Header(h) => header(h, input),
        Permission::UrlPath(m) => input.head.is_some_and(|h| {
            let end = h.path.find(['?', '#']).unwrap_or(h.path.len());
            m.matches(&h.path[..end])
        }),
        Permission::DestinationIp(net) => net.contains(&input.dst.ip().to_canonical()),
        Permission::DestinationPort(port) => input.dst.port() == *port,
        Permission::RequestedServerName(m) => m.matches(input.sni),
    }
}

pub(crate) fn principal(p: &Principal, input: &RbacInput<'_>) -> bool {
    match p {
        Principal::Any => true,
        Principal::And(all) => all.iter().all(|x| principal(x, input)),
        Principal::Or(any) => any.iter().any(|x| principal(x, input)),
        Principal::Not(x) => !principal(x, input),
        Principal::Authenticated(name) => match (input.peer_principal, name) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(p), Some(m)) => m.matches(p),
        },
        Principal::DirectRemoteIp(net) => net.contains(&input.direct_remote.to_canonical()),
        Principal::RemoteIp(net) => net.contains(&input.remote.to_canonical()),
        Principal::Header(h) => header(h, input),
        Principal::Metadata(m) => m.matches(input.jwt),
    }
}

/// Envoy's RBAC header matching: pseudo-headers from the request line; a repeated header
/// as its values joined by `,` (what `HeaderUtility::getAllOfHeaderAsString` gives).
fn header(h: &HeaderMatcher, input: &RbacInput<'_>) -> bool {
    let value: Option<std::borrow::Cow<'_, str>> = match (input.head, h.name.as_str()) {
        // A connection has no headers: every header is missing.
        (None, _) => None,
        (Some(head), name) => request_header(head, name),
    };
    let value = match value {
        Some(v) => v,
        None if h.treat_missing_as_empty => "".into(),
        None => {
            return match h.matcher {
                HeaderMatch::Present(p) => p == h.invert,
                _ => false,
            }
        }
    };
    let hit = match &h.matcher {
        HeaderMatch::Present(p) => *p,
        HeaderMatch::String(s) => s.matches(&value),
        HeaderMatch::Range(start, end) => {
            value.parse::<i64>().is_ok_and(|v| v >= *start && v < *end)
        }
    };
    hit != h.invert
}

pub(crate) fn request_header<'a>(
    head: &'a RequestHead<'a>,
    name: &str,
) -> Option<std::borrow::Cow<'a, str>> {
    match name {
        ":method" => Some(head.method.into()),
        ":authority" | "host" => Some(head.authority.into()),
        ":scheme" => Some(head.scheme.into()),
        ":path" => Some(head.path.into()),
        name => {
            let mut values = head.headers.get_all(name).iter();
            let first = values.next()?;
            let Some(second) = values.next() else {
                // The usual case, one value: no copy.
                return Some(String::from_utf8_lossy(first.as_bytes()));
            };
            let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for v in std::iter::once(second).chain(values) {
                joined.push(',');
                joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            Some(joined.into())
        }
    }
}

/// The client address the connection manager determined: the peer with
/// `use_remote_address`, else the x-forwarded-for entry `trusted_hops` from the right
/// (Envoy's rule), else the peer.
pub fn remote_address(
    peer: IpAddr,
    headers: &http::HeaderMap,
    use_remote_address: bool,
    trusted_hops: u32,
) -> IpAddr {
    if use_remote_address {
        return peer;
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let idx = xff.len().checked_sub(1 + trusted_hops as usize);
    idx.and_then(|i| xff[i].parse().ok()).unwrap_or(peer)
}

pub mod explain;
#[cfg(test)]
mod tests;

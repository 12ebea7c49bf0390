//! Route selection, pure: which virtual host and route of a route configuration a request
//! head selects, exactly as Envoy decides it. Used by the proxy on every request and by
//! `spar ctl explain` to say why a request goes where it goes.
//!
//! Virtual hosts: the `:authority` (lower-cased; the port stripped only when the route
//! configuration says `ignore_port_in_host_matching`) is matched against exact domains
//! first, then `*.suffix` wildcards (longest suffix first), then `prefix*` wildcards
//! (longest first), then `*`. Routes: first match wins, in order.

use http::HeaderMap;

use crate::config::matcher::StringMatch;
use crate::config::route::{
    HeaderMatch, HeaderMatcher, PathMatch, QueryMatcher, Route, RouteConfig, RouteMatch,
    VirtualHost,
};

/// What route selection reads from a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Path with its query string, as in `:path`.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The request's random value for `runtime_fraction` (Envoy draws one per request).
    pub random: u64,
}

/// The outcome of route selection.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    pub virtual_host: &'a VirtualHost,
    pub index: usize,
    pub route: &'a Route,
}

impl Selected<'_> {
    pub fn route_name(&self) -> &str {
        &self.route.name
    }
}

/// The virtual host for `authority`, as Envoy picks it.
pub fn virtual_host<'a>(rc: &'a RouteConfig, authority: &str) -> Option<&'a VirtualHost> {
    let mut host = authority.to_ascii_lowercase();
    if rc.ignore_port_in_host_matching {
        if let Some(i) = host.rfind(':') {
            let port = &host[i + 1..];
            // Only a trailing `:digits` is a port (`[::1]` has none).
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                host.truncate(i);
            }
        }
    }
    let mut best_suffix: Option<(usize, &VirtualHost)> = None;
    let mut best_prefix: Option<(usize, &VirtualHost)> = None;
    let mut default = None;
    for vh in &rc.virtual_hosts {
        for d in &vh.domains {
            if d == "*" {
                default.get_or_insert(vh);
            } else if let Some(suffix) = d.strip_prefix('*') {
                // The wildcard must stand for at least one character.
                if host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && best_suffix.is_none_or(|(l, _)| suffix.len() > l)
                {
                    best_suffix = Some((suffix.len(), vh));
                }
            } else if let Some(prefix) = d.strip_suffix('*') {
                if host.len() > prefix.len()
                    && host.starts_with(prefix)
                    && best_prefix.is_none_or(|(l, _)| prefix.len() > l)
                {
                    best_prefix = Some((prefix.len(), vh));
                }
            } else if *d == host {
                return Some(vh);
            }
        }
    }
    best_suffix.or(best_prefix).map(|(_, vh)| vh).or(default)
}

/// Route selection: the virtual host, then its first matching route.
pub fn select<'a>(rc: &'a RouteConfig, req: &RequestHead<'_>) -> Option<Selected<'a>> {
    let vh = virtual_host(rc, req.authority)?;
    vh.routes
        .iter()
        .enumerate()
        .find(|(_, r)| route_matches(&r.matcher, req))
        .map(|(index, route)| Selected {
            virtual_host: vh,
            index,
            route,
        })
}

fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

pub fn route_matches(m: &RouteMatch, req: &RequestHead<'_>) -> bool {
    let lowered;
    let (full, bare) = if m.case_sensitive || matches!(m.path, PathMatch::Regex(_)) {
        (req.path, path_only(req.path))
    } else {
        lowered = req.path.to_ascii_lowercase();
        (lowered.as_str(), path_only(&lowered))
    };
    let path_ok = match &m.path {
        // Envoy compares prefixes against the whole `:path`, query string included.
        PathMatch::Prefix(p) => full.starts_with(p.as_str()),
        PathMatch::Exact(p) => bare == p,
        PathMatch::Regex(re) => re.is_match(bare),
        PathMatch::SeparatedPrefix(p) => {
            bare.starts_with(p.as_str())
                && (bare.len() == p.len() || bare.as_bytes().get(p.len()) == Some(&b'/'))
        }
    };
    path_ok
        && m.headers.iter().all(|h| header_matches(h, req))
        && query_matches(&m.query, req.path)
        && m.runtime_fraction.is_none_or(|f| f.contains(req.random))
}

/// The header's values as Envoy sees them: pseudo-headers from the request line, a
/// repeated header as its separate values.
fn header_values<'a>(name: &str, req: &RequestHead<'a>) -> Vec<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    match name {
        ":method" => return vec![Cow::Borrowed(req.method)],
        ":authority" | "host" => return vec![Cow::Borrowed(req.authority)],
        ":scheme" => return vec![Cow::Borrowed(req.scheme)],
        ":path" => return vec![Cow::Borrowed(req.path)],
        _ => {}
    }
    req.headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect()
}

/// Envoy's header matching, including its treatment of absent headers (an absent header
/// matches only `present_match: false`, or an inverted `present_match: true`) and of a
/// repeated header: it matches when one of its values does (measured against Envoy 1.3x,
/// `crates/spar-cli/tests/proxy_envoy_diff.rs`; one value `2,3` is not `2`).
pub fn header_matches(h: &HeaderMatcher, req: &RequestHead<'_>) -> bool {
    let mut values = header_values(&h.name, req);
    if values.is_empty() {
        if !h.treat_missing_as_empty {
            return match h.matcher {
                HeaderMatch::Present(p) => p == h.invert,
                _ => false,
            };
        }
        values.push(std::borrow::Cow::Borrowed(""));
    }
    let hit = values.iter().any(|value| match &h.matcher {
        HeaderMatch::Present(p) => *p,
        HeaderMatch::String(s) => s.matches(value),
        HeaderMatch::Range(start, end) => {
            value.parse::<i64>().is_ok_and(|v| v >= *start && v < *end)
        }
    });
    hit != h.invert
}

/// Envoy's route matcher parses the query without percent-decoding it: `debug=%31` does
/// not match a `debug: {exact: "1"}` parameter, and neither does a percent-encoded name.
fn query_matches(matchers: &[QueryMatcher], path: &str) -> bool {
    if matchers.is_empty() {
        return true;
    }
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    matchers.iter().all(|m| {
        let first = query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == m.name).then_some(v)
        });
        match (&m.matcher, first) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(s), Some(v)) => string_match(s, v),
        }
    })
}

fn string_match(s: &StringMatch, v: &str) -> bool {
    s.matches(v)
}

#[cfg(test)]
mod tests;

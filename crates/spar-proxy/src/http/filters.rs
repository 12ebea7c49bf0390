//! Per-request pieces of the HTTP path that are pure or nearly so: header edits, path
//! and host rewrites, redirects, fault decisions, CORS, request ids, hash keys.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::route::{Cors, HashPolicy, HeaderAdd, PathMatch, Redirect};
use crate::lb::xxhash::xxhash64;

/// Headers that describe one hop and are never forwarded, in the order [`hop_by_hop`]
/// numbers them.
static HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Which of [`HOP_BY_HOP`] `name` is (names in a `HeaderMap` are lowercase). A match on
/// the string, which compiles to a length switch and one compare, instead of comparing
/// every header name with all eight.
fn hop_by_hop(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        _ => return None,
    })
}

/// Drops hop-by-hop headers and any header the `connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass to see which are there (usually none, or `connection` alone): a removal by
    // name hashes the name, so only those present are removed.
    let mut present = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for k in h.keys() {
        if let Some(i) = hop_by_hop(k.as_str()) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    if present[0] {
        // Headers `connection` names are hop-by-hop too. Its usual tokens (`keep-alive`,
        // `close`, `upgrade`) name no header or one removed below anyway; any other is
        // looked for among the names present, so nothing is parsed or allocated for them.
        let mut listed: Vec<HeaderName> = Vec::new();
        for token in h
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || HOP_BY_HOP
                    .iter()
                    .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(token))
            {
                continue;
            }
            if let Some(k) = h
                .keys()
                .find(|k| k.as_str().as_bytes().eq_ignore_ascii_case(token))
            {
                listed.push(k.clone());
            }
        }
        for n in listed {
            h.remove(n);
        }
    }
    for (n, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        h.remove(n);
    }
}

/// Applies removals, then additions (Envoy's order within one level).
pub fn apply_ops(h: &mut HeaderMap, add: &[HeaderAdd], remove: &[String]) {
    for r in remove {
        h.remove(r.as_str());
    }
    for a in add {
        if a.if_absent {
            if !h.contains_key(&a.name) {
                h.insert(a.name.clone(), a.value.clone());
            }
        } else if a.append {
            h.append(a.name.clone(), a.value.clone());
        } else {
            h.insert(a.name.clone(), a.value.clone());
        }
    }
}

/// The new `:path` after a prefix rewrite of the part `matched` matched.
pub fn prefix_rewrite(path: &str, matched: &PathMatch, rewrite: &str) -> String {
    let (bare, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let cut = match matched {
        PathMatch::Prefix(p) | PathMatch::Exact(p) | PathMatch::SeparatedPrefix(p) => {
            p.len().min(bare.len())
        }
        PathMatch::Regex(_) => bare.len(),
    };
    format!("{rewrite}{}{query}", &bare[cut..])
}

/// Regex rewrite of the path (query string kept).
pub fn regex_rewrite(path: &str, re: &regex::Regex, sub: &str) -> String {
    let (bare, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    format!("{}{query}", re.replace_all(bare, sub))
}

/// The `location` of a redirect.
pub fn redirect_location(
    rd: &Redirect,
    scheme: &str,
    authority: &str,
    path: &str,
    matched: &PathMatch,
) -> String {
    let scheme = if rd.https {
        "https"
    } else {
        rd.scheme.as_deref().unwrap_or(scheme)
    };
    let (host, port) = split_host_port(authority);
    let host = rd.host.as_deref().unwrap_or(host);
    let port = match rd.port {
        Some(p) => Some(p.to_string()),
        // Envoy drops the port when the host or scheme changes and no port was asked for
        // (checked against Envoy in crates/spar-cli/tests/proxy_envoy_diff.rs).
        None if rd.https || rd.scheme.is_some() || rd.host.is_some() => None,
        None => port.map(str::to_string),
    };
    let default_port = matches!(
        (scheme, port.as_deref()),
        ("http", Some("80")) | ("https", Some("443"))
    );
    let authority = match port {
        Some(p) if !default_port => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    let mut path = match (&rd.path, &rd.prefix_rewrite) {
        (Some(p), _) => {
            // A path redirect keeps the query unless the new path has one.
            match (p.contains('?'), path.find('?')) {
                (false, Some(i)) => format!("{p}{}", &path[i..]),
                _ => p.clone(),
            }
        }
        (None, Some(pr)) => prefix_rewrite(path, matched, pr),
        (None, None) => path.to_string(),
    };
    if rd.strip_query {
        if let Some(i) = path.find('?') {
            path.truncate(i);
        }
    }
    format!("{scheme}://{authority}{path}")
}

pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rfind(':') {
        Some(i)
            if !authority[i + 1..].is_empty()
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

/// A random version 4 UUID, Envoy's `x-request-id` format (no allocation but the value).
pub fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    let mut pos = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            pos += 1;
        }
        out[pos] = HEX[usize::from(byte >> 4)];
        out[pos + 1] = HEX[usize::from(byte & 0x0f)];
        pos += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

/// The request's hash for ring hash and Maglev: each policy's key hashed with xxHash64,
/// combined as Envoy does (`rotl(h, 1) ^ next`); a terminal policy that produced a
/// value ends the walk.
pub fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    path: &str,
    peer: SocketAddr,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let (value, terminal) = match p {
            HashPolicy::Header { name, terminal } => (
                headers
                    .get(name.as_str())
                    .map(|v| xxhash64(v.as_bytes(), 0)),
                *terminal,
            ),
            HashPolicy::Cookie { name, terminal } => (
                cookie(headers, name).map(|v| xxhash64(v.as_bytes(), 0)),
                *terminal,
            ),
            HashPolicy::SourceIp { terminal } => (
                Some(xxhash64(peer.ip().to_string().as_bytes(), 0)),
                *terminal,
            ),
            HashPolicy::Query { name, terminal } => (
                query_param(path, name).map(|v| xxhash64(v.as_bytes(), 0)),
                *terminal,
            ),
        };
        if let Some(v) = value {
            hash = Some(match hash {
                Some(h) => h.rotate_left(1) ^ v,
                None => v,
            });
            if terminal {
                break;
            }
        }
    }
    hash
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_string())
        })
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let q = path.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

/// CORS: the allowed origin, when the request's `origin` is allowed.
pub fn cors_origin<'a>(c: &Cors, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(http::header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    c.origins.iter().any(|m| m.matches(o)).then_some(origin)
}

/// The preflight answer's headers (Envoy's CORS filter puts the exposed headers here too).
pub fn cors_preflight(c: &Cors, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = vec![(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())];
    let mut push = |n: HeaderName, v: &str| {
        if !v.is_empty() {
            if let Ok(v) = HeaderValue::from_str(v) {
                out.push((n, v));
            }
        }
    };
    push(http::header::ACCESS_CONTROL_ALLOW_METHODS, &c.methods);
    push(http::header::ACCESS_CONTROL_ALLOW_HEADERS, &c.headers);
    push(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, &c.expose);
    push(http::header::ACCESS_CONTROL_MAX_AGE, &c.max_age);
    if c.credentials {
        push(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    out
}

/// The headers added to an actual (non-preflight) CORS response.
pub fn cors_response(c: &Cors, origin: &HeaderValue, h: &mut HeaderMap) {
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if c.credentials {
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !c.expose.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&c.expose) {
            h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop(n.as_str()), Some(i), "{n}");
        }
        assert_eq!(hop_by_hop("x-connection"), None);
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "close, X-Hop,, Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eA=="),
            ("x-hop", "1"),
            ("x-keep", "1"),
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep"]);

        let mut plain = HeaderMap::new();
        plain.insert("x-keep", HeaderValue::from_static("1"));
        plain.insert(http::header::HOST, HeaderValue::from_static("a"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);
    }

    #[test]
    fn rewrites() {
        let p = PathMatch::Prefix("/api".into());
        assert_eq!(prefix_rewrite("/api/x?q=1", &p, "/v2"), "/v2/x?q=1");
        assert_eq!(prefix_rewrite("/api", &p, "/"), "/");
        let re = regex::Regex::new("^/old/(.*)$").unwrap();
        assert_eq!(regex_rewrite("/old/a?x", &re, "/new/${1}"), "/new/a?x");
    }

    #[test]
    fn redirects() {
        let rd = Redirect {
            scheme: None,
            host: Some("b.example".into()),
            port: None,
            path: Some("/new".into()),
            prefix_rewrite: None,
            strip_query: false,
            https: true,
            status: 301,
        };
        let p = PathMatch::Prefix("/".into());
        assert_eq!(
            redirect_location(&rd, "http", "a.example:8080", "/x?y=1", &p),
            "https://b.example/new?y=1"
        );
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert_ne!(request_id(), id);
    }

    #[test]
    fn hash_combines_like_envoy() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("jason"));
        let peer: SocketAddr = "10.0.0.9:1234".parse().unwrap();
        let one = request_hash(
            &[HashPolicy::Header {
                name: "x-user".into(),
                terminal: false,
            }],
            &h,
            "/",
            peer,
        );
        assert_eq!(one, Some(xxhash64(b"jason", 0)));
        let two = request_hash(
            &[
                HashPolicy::Header {
                    name: "x-user".into(),
                    terminal: false,
                },
                HashPolicy::SourceIp { terminal: false },
            ],
            &h,
            "/",
            peer,
        );
        assert_eq!(
            two,
            Some(xxhash64(b"jason", 0).rotate_left(1) ^ xxhash64(b"10.0.0.9", 0))
        );
        assert_eq!(
            request_hash(
                &[HashPolicy::Cookie {
                    name: "s".into(),
                    terminal: false
                }],
                &h,
                "/",
                peer
            ),
            None
        );
    }
}

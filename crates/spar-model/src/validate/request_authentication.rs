//! Webhook rules for `RequestAuthentication`.
//!
//! The schema already checks non-empty audiences, cookies, params and claims, the
//! `jwksUri` scheme, the strict header pattern of `outputClaimToHeaders`, timeouts and
//! `jwks`/`jwksUri` exclusivity. What is left is what Istio parses: the issuer/URI pair,
//! the URI itself and the inline key set. A header name that can never occur in a
//! request only warns (Istio takes it); one Spar would have to write is an error.

use std::net::Ipv6Addr;

use serde_json::{Map, Value};

use super::peer_authentication::{check_selector, check_target_refs};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{JWTRule, RequestAuthentication};
use crate::names::is_header_name;
use crate::FieldPath;

pub fn check(spec: &RequestAuthentication, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    check_selector(spec.selector.as_ref(), &root, &mut out);
    check_target_refs(spec.target_ref.as_ref(), &spec.target_refs, &root, &mut out);
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        check_rule(rule, &root.field("jwtRules").index(i), &mut out);
    }
    out
}

fn check_rule(rule: &JWTRule, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    // Istio reads both spellings into one field; the schema forbids giving both.
    let (uri_field, uri) = match (&rule.jwks_uri, &rule.jwks_uri_snake) {
        (Some(u), _) => ("jwksUri", u.as_str()),
        (None, Some(u)) => ("jwks_uri", u.as_str()),
        (None, None) => ("jwksUri", ""),
    };
    if rule.issuer.as_deref().unwrap_or("").is_empty() && uri.is_empty() {
        out.push(Diagnostic::error(
            path.field("issuer"),
            "a JWT rule needs `issuer` (the iss claim of accepted tokens) or at least `jwksUri`",
        ));
    }
    if !uri.is_empty() {
        if let Err(why) = check_jwks_uri(uri) {
            out.push(Diagnostic::error(
                path.field(uri_field),
                format!("invalid {uri_field} {uri:?}: {why}; write http[s]://host[:port]/path"),
            ));
        }
    }
    if let Some(jwks) = rule.jwks.as_deref() {
        check_jwks(jwks, &path.field("jwks"), out);
    }
    for (k, header) in rule.from_headers.iter().enumerate() {
        let Some(name) = header.name.as_deref() else {
            continue;
        };
        let bare = name.strip_prefix(':').unwrap_or(name);
        if !name.is_empty() && !is_header_name(bare) {
            out.push(Diagnostic::warning(
                path.field("fromHeaders").index(k).field("name"),
                format!(
                    "{name:?} is not a valid HTTP header name, so no token is ever read from it"
                ),
            ));
        }
    }
    if let Some(name) = rule.output_payload_to_header.as_deref() {
        if !is_header_name(name) {
            out.push(Diagnostic::error(
                path.field("outputPayloadToHeader"),
                format!(
                    "{name:?} is not a valid HTTP header name; use letters, digits and '-' (e.g. \
                     x-jwt-payload)"
                ),
            ));
        }
    }
}

/// What Istio's URI parsing refuses, plus what makes fetching the keys impossible (no
/// host, a port out of range). The scheme itself is the schema's.
fn check_jwks_uri(uri: &str) -> Result<(), String> {
    if let Some(c) = uri.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(match c {
            ' ' => "it contains a space; percent-encode it as %20".to_string(),
            _ => format!(
                "it contains the character {c:?}, which a URL cannot hold; percent-encode it"
            ),
        });
    }
    let Some((_, rest)) = uri.split_once("://") else {
        return Err("it has no host".into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_host_port(host_port)?;
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        match port.parse::<u32>() {
            Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) && (1..=65535).contains(&p) => {}
            _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        }
    }
    let before_query = tail.split('?').next().unwrap_or("");
    let fragment = tail.split_once('#').map_or("", |(_, f)| f);
    for part in [host, before_query, fragment] {
        if let Some(bad) = bad_escape(part) {
            return Err(format!("{bad:?} is not a valid percent-escape"));
        }
    }
    Ok(())
}

fn split_host_port(hp: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(v6) = hp.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("the IPv6 address has no closing \"]\"")?;
        let addr_only = addr.split('%').next().unwrap_or(addr);
        if addr_only.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} is not an IPv6 address"));
        }
        return match after {
            "" => Ok((addr, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((addr, Some(port))),
                None => Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        };
    }
    let (host, port) = match hp.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hp, None),
    };
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~%".contains(*c)))
    {
        return Err(format!(
            "host {host:?} contains {c:?}; write a DNS name or an IP address"
        ));
    }
    Ok((host, port))
}

/// The first `%` not followed by two hex digits, with what follows it.
fn bad_escape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    b.iter().enumerate().find_map(|(i, &c)| {
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        let valid = c != b'%' || (hex(i + 1) && hex(i + 2));
        (!valid).then(|| s[i..].chars().take(3).collect())
    })
}

/// Istio parses `jwks` as a JSON Web Key Set, or a single key, and refuses what does not
/// parse. Envoy, however, reads only `{"keys": [...]}` and silently drops keys it cannot
/// use, so those and private key material are warnings.
fn check_jwks(jwks: &str, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    let doc: Value = match serde_json::from_str(jwks) {
        Ok(v) => v,
        Err(e) => {
            out.push(Diagnostic::error(
                path.clone(),
                format!("jwks is not valid JSON ({e}); paste the key set, {{\"keys\": [...]}}, as a string"),
            ));
            return;
        }
    };
    let Some(obj) = doc.as_object() else {
        out.push(Diagnostic::error(
            path.clone(),
            "jwks must be a JSON object: {\"keys\": [...]}",
        ));
        return;
    };
    let keys: Vec<&Value> = match obj.get("keys") {
        Some(Value::Array(keys)) if !keys.is_empty() => keys.iter().collect(),
        Some(Value::Array(_)) | None => {
            // Istio then reads the whole object as one key.
            if let Err(e) = check_key(&doc, "jwks", path, out) {
                out.push(Diagnostic::error(path.clone(), e));
            } else {
                out.push(Diagnostic::warning(
                    path.clone(),
                    "jwks is a single key, but Envoy only reads a key set; wrap it: {\"keys\": [<key>]}",
                ));
            }
            return;
        }
        Some(_) => {
            out.push(Diagnostic::error(
                path.clone(),
                "jwks `keys` must be an array of keys",
            ));
            return;
        }
    };
    for (i, key) in keys.into_iter().enumerate() {
        if let Err(e) = check_key(key, &format!("key {i}"), path, out) {
            out.push(Diagnostic::error(path.clone(), e));
        }
    }
}

/// Members Envoy needs to verify with a key of each type.
fn required_members(kty: &str) -> &'static [&'static str] {
    match kty {
        "RSA" => &["n", "e"],
        "EC" => &["crv", "x", "y"],
        "OKP" => &["crv", "x"],
        _ => &["k"],
    }
}

/// Members holding base64url-encoded bytes; Istio refuses the key if one does not decode.
const BYTE_MEMBERS: &[&str] = &["n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y", "k"];

fn check_key(
    key: &Value,
    what: &str,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) -> Result<(), String> {
    let Some(obj) = key.as_object() else {
        return Err(format!("jwks {what} is not a JSON object"));
    };
    let kty = match obj.get("kty") {
        Some(Value::String(k)) if matches!(k.as_str(), "RSA" | "EC" | "OKP" | "oct") => k.as_str(),
        Some(Value::String(k)) => {
            return Err(format!(
                "jwks {what} has unsupported kty {k:?}; use RSA, EC, OKP or oct"
            ))
        }
        Some(_) => {
            return Err(format!(
                "jwks {what}: kty must be a string (RSA, EC, OKP or oct)"
            ))
        }
        None => {
            return Err(format!(
                "jwks {what} has no kty; set it to RSA, EC, OKP or oct"
            ))
        }
    };
    for member in BYTE_MEMBERS {
        match obj.get(*member) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if is_base64(s) => {}
            Some(_) => return Err(format!("jwks {what}: {member:?} is not a base64url string")),
        }
    }
    warn_unusable(obj, kty, what, path, out);
    Ok(())
}

fn warn_unusable(
    obj: &Map<String, Value>,
    kty: &str,
    what: &str,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let missing: Vec<&str> = required_members(kty)
        .iter()
        .copied()
        .filter(|m| !obj.contains_key(*m))
        .collect();
    if !missing.is_empty() {
        out.push(Diagnostic::warning(
            path.clone(),
            format!(
                "jwks {what} ({kty}) lacks {}, so tokens cannot be verified with it",
                missing.join(", ")
            ),
        ));
    }
    if kty == "oct" {
        out.push(Diagnostic::warning(
            path.clone(),
            format!("jwks {what} is a symmetric (oct) key: anyone who can read this policy can sign tokens"),
        ));
    } else if obj.contains_key("d") {
        out.push(Diagnostic::warning(
            path.clone(),
            format!(
                "jwks {what} contains private key material (\"d\"); only the public key is needed to \
                 verify tokens, remove the private members"
            ),
        ));
    }
}

/// Standard or URL-safe base64, padded or not.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

#[cfg(test)]
#[path = "request_authentication_tests.rs"]
mod tests;

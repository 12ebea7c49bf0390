//! Istio's `x-kubernetes-validations` rules, hand-written in Rust.
//!
//! We cannot run CEL, so each distinct rule text in Istio's CRDs maps, by its exact text,
//! to a check with the same meaning, including where CEL would stop with an evaluation
//! error (`no such key`, a failed conversion) rather than return false. A rule text with
//! no entry here is skipped at run time; a unit test fails when `schema.json` has one.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use regex::Regex;

use super::go;
use super::value::{int_value, seq_of, unique_entries};
use crate::yaml::Node;

/// What evaluating a rule gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail,
    /// CEL stopped with an error; Kubernetes reports it with the rule's message.
    Error(String),
}

impl From<bool> for Outcome {
    fn from(ok: bool) -> Self {
        if ok {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    }
}

/// How a rule is checked.
#[derive(Clone, Copy)]
pub(crate) enum Check {
    /// `(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) <= 1`
    AtMostOne(&'static [&'static str]),
    /// WasmPlugin's `url`: a URL, or a host/path that becomes one with `http://`, whose
    /// scheme is one of these.
    UrlOrHostScheme(&'static [&'static str]),
    Custom(fn(&Node) -> Outcome),
}

impl Check {
    pub(crate) fn eval(self, node: &Node) -> Outcome {
        match self {
            Check::AtMostOne(fields) => {
                (fields.iter().filter(|f| has(node, f)).count() <= 1).into()
            }
            Check::UrlOrHostScheme(schemes) => match node.as_str() {
                Some(s) => url_or_host_scheme(s, schemes),
                None => Outcome::Pass,
            },
            Check::Custom(f) => f(node),
        }
    }
}

const WASM_SCHEMES_A: &[&str] = &["", "http", "https", "file", "oci"];

/// Every rule text Istio's CRDs use, with its check. Keep the text byte-for-byte.
const RULES: &[(&str, Check)] = &[
    // Label selectors.
    ("!self.contains(\"*\")", Check::Custom(no_wildcard)),
    ("self.all(key, !key.contains(\"*\"))", Check::Custom(keys_without_wildcard)),
    ("self.all(key, key.size() != 0)", Check::Custom(keys_not_empty)),
    // Policy target references.
    ("self.size() == 0", Check::Custom(empty_string)),
    ("(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1", Check::AtMostOne(&["selector", "targetRefs"])),
    (
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
        Check::AtMostOne(&["selector", "targetRef", "targetRefs"]),
    ),
    (
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
        Check::AtMostOne(&["workloadSelector", "targetRefs"]),
    ),
    // WasmPlugin and TrafficExtension.
    ("has(self.wasm) != has(self.lua)", Check::Custom(wasm_xor_lua)),
    (
        "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"file\", \"oci\"]) : (isURL(\"http://\" + self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"file\", \"oci\"])",
        Check::UrlOrHostScheme(WASM_SCHEMES_A),
    ),
    (
        "isURL(self) ? (url(self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"]) : (isURL(\"http://\" + self) &&\nurl(\"http://\" + self).getScheme() in [\"\", \"http\", \"https\", \"oci\", \"file\"])",
        Check::UrlOrHostScheme(WASM_SCHEMES_A),
    ),
    ("(has(self.valueFrom) ? self.valueFrom : \"\") != \"HOST\" || !has(self.value)", Check::Custom(env_value_only_inline)),
    // Durations and ports, everywhere.
    ("duration(self) >= duration('1ms')", Check::Custom(duration_at_least_1ms)),
    ("0 < self && self <= 65535", Check::Custom(port_in_range)),
    ("self.all(key, 0 < int(key) && int(key) <= 65535)", Check::Custom(keys_are_ports)),
    // EnvoyFilter.
    (
        "has(self.context) ? ((self.context == \"WAYPOINT\") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)",
        Check::Custom(waypoint_match_needs_waypoint_context),
    ),
    // Gateway and Sidecar TLS.
    (
        "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
        Check::AtMostOne(&["tlsCertificates", "credentialNames"]),
    ),
    (
        "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1",
        Check::AtMostOne(&["credentialName", "credentialNames"]),
    ),
    (
        "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1",
        Check::AtMostOne(&["credentialNames", "tlsCertificates"]),
    ),
    // ServiceEntry.
    (
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1",
        Check::AtMostOne(&["workloadSelector", "endpoints"]),
    ),
    (
        "!((has(self.addresses) ? self.addresses : []).exists(k, k.contains(\"/\")) && !((has(self.resolution) ? self.resolution : \"NONE\") in [\"STATIC\", \"NONE\"]))",
        Check::Custom(cidr_needs_static_or_none),
    ),
    (
        "((has(self.resolution) ? self.resolution : \"NONE\") == \"NONE\") ? !has(self.endpoints) : true",
        Check::Custom(none_resolution_without_endpoints),
    ),
    (
        "((has(self.resolution) ? self.resolution : \"\") == \"DNS_ROUND_ROBIN\") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true",
        Check::Custom(dns_round_robin_single_endpoint),
    ),
    ("self != \"*\"", Check::Custom(not_star)),
    ("self.all(l1, self.exists_one(l2, l1.number == l2.number))", Check::Custom(unique_port_numbers)),
    // WorkloadEntry.
    ("has(self.address) || has(self.network)", Check::Custom(address_or_network)),
    (
        "(has(self.address) ? self.address : \"\").startsWith(\"unix://\") ? !has(self.ports) : true",
        Check::Custom(uds_without_ports),
    ),
    (
        "self.startsWith(\"unix://\") ? (self.substring(7, 8) == \"/\" || self.substring(7, 8) == \"@\") : true",
        Check::Custom(uds_absolute_or_abstract),
    ),
    ("self.startsWith(\"unix://\") ? !self.endsWith(\"/\") : true", Check::Custom(uds_not_dir)),
    (
        "self.all(key, size(key) < 63 && key.matches(\"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$\"))",
        Check::Custom(keys_are_port_names),
    ),
    // WorkloadGroup probes.
    ("self in [\"\", \"HTTP\", \"HTTPS\"]", Check::Custom(http_scheme)),
    // AuthorizationPolicy.
    (
        "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true",
        Check::Custom(service_accounts_exclusive),
    ),
    // PeerAuthentication.
    (
        "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true",
        Check::Custom(port_level_mtls_needs_selector),
    ),
    // RequestAuthentication.
    (
        "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1",
        Check::AtMostOne(&["jwksUri", "jwks_uri", "jwks"]),
    ),
    ("url(self).getScheme() in [\"http\", \"https\"]", Check::Custom(http_or_https_url)),
    // Telemetry.
    (
        "((has(self.operation) ? self.operation : \"\") == \"UPSERT\") ? (self.value != \"\") : true",
        Check::Custom(upsert_needs_value),
    ),
    (
        "((has(self.operation) ? self.operation : \"\") == \"REMOVE\") ? !has(self.value) : true",
        Check::Custom(remove_without_value),
    ),
];

/// The check for a rule text, if we have one.
pub(crate) fn lookup(rule: &str) -> Option<Check> {
    static TABLE: OnceLock<HashMap<&'static str, Check>> = OnceLock::new();
    TABLE
        .get_or_init(|| RULES.iter().copied().collect())
        .get(rule)
        .copied()
}

/// How many rule texts have a check.
#[cfg(test)]
pub(crate) fn rule_count() -> usize {
    RULES.len()
}

// === helpers: CEL's view of a YAML node ===

/// `has(self.f)`: the key is present (Kubernetes keeps explicit nulls, which then fail
/// their type check).
fn has(node: &Node, field: &str) -> bool {
    node.get(field).is_some()
}

/// `has(self.f) ? self.f : default` for string fields.
fn str_or<'a>(node: &'a Node, field: &str, default: &'a str) -> &'a str {
    match node.get(field) {
        Some(v) => v.as_str().unwrap_or(default),
        None => default,
    }
}

fn map_keys(node: &Node) -> impl Iterator<Item = &str> {
    unique_entries(node)
        .into_iter()
        .map(|(k, _)| k.text.as_str())
}

/// CEL's `all()`: false wins over an error, an error over true.
fn all<T>(items: impl Iterator<Item = T>, mut f: impl FnMut(T) -> Outcome) -> Outcome {
    let mut err = None;
    for item in items {
        match f(item) {
            Outcome::Fail => return Outcome::Fail,
            Outcome::Error(e) => err = err.or(Some(e)),
            Outcome::Pass => {}
        }
    }
    err.map_or(Outcome::Pass, Outcome::Error)
}

/// CEL's `self.substring(start, end)`, counted in code points.
fn substring(s: &str, start: usize, end: usize) -> Result<String, String> {
    let len = s.chars().count();
    if start > len || end < start || end > len {
        return Err(format!(
            "index out of range: {}",
            if start > len { start } else { end }
        ));
    }
    Ok(s.chars().skip(start).take(end - start).collect())
}

/// CEL's `url(s).getScheme()`.
fn url_scheme(s: &str) -> Result<String, String> {
    go::parse_request_uri(s)
        .map(|u| u.scheme)
        .map_err(|e| format!("URL parse error during conversion from string: {e}"))
}

fn url_or_host_scheme(s: &str, schemes: &[&str]) -> Outcome {
    let ok = match go::parse_request_uri(s) {
        Ok(u) => schemes.contains(&u.scheme.as_str()),
        Err(_) => go::parse_request_uri(&format!("http://{s}"))
            .is_ok_and(|u| schemes.contains(&u.scheme.as_str())),
    };
    ok.into()
}

// === the checks ===

fn no_wildcard(node: &Node) -> Outcome {
    node.as_str().is_none_or(|s| !s.contains('*')).into()
}

fn keys_without_wildcard(node: &Node) -> Outcome {
    map_keys(node).all(|k| !k.contains('*')).into()
}

fn keys_not_empty(node: &Node) -> Outcome {
    map_keys(node).all(|k| !k.is_empty()).into()
}

fn empty_string(node: &Node) -> Outcome {
    node.as_str().is_none_or(str::is_empty).into()
}

fn not_star(node: &Node) -> Outcome {
    (node.as_str() != Some("*")).into()
}

fn wasm_xor_lua(node: &Node) -> Outcome {
    (has(node, "wasm") != has(node, "lua")).into()
}

fn env_value_only_inline(node: &Node) -> Outcome {
    (str_or(node, "valueFrom", "") != "HOST" || !has(node, "value")).into()
}

fn duration_at_least_1ms(node: &Node) -> Outcome {
    let Some(s) = node.as_str() else {
        return Outcome::Pass;
    };
    match go::parse_duration(s) {
        Ok(ns) => (ns >= 1_000_000).into(),
        Err(e) => Outcome::Error(e),
    }
}

fn port_in_range(node: &Node) -> Outcome {
    int_value(node).is_none_or(|p| 0 < p && p <= 65535).into()
}

fn keys_are_ports(node: &Node) -> Outcome {
    all(map_keys(node), |k| match cel_int(k) {
        Some(p) => (0 < p && p <= 65535).into(),
        None => Outcome::Error("type conversion error from 'string' to 'int'".to_string()),
    })
}

/// CEL's `int(string)`: Go's `strconv.ParseInt(s, 10, 64)`.
fn cel_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

fn waypoint_match_needs_waypoint_context(node: &Node) -> Outcome {
    let waypoint = has(node, "waypoint");
    let ok = match node.get("context") {
        Some(ctx) => (ctx.as_str() == Some("WAYPOINT")) == waypoint,
        None => !waypoint,
    };
    ok.into()
}

fn cidr_needs_static_or_none(node: &Node) -> Outcome {
    let has_cidr = node
        .get("addresses")
        .map(seq_of)
        .unwrap_or_default()
        .iter()
        .any(|a| a.as_str().is_some_and(|s| s.contains('/')));
    let resolution = str_or(node, "resolution", "NONE");
    (!has_cidr || matches!(resolution, "STATIC" | "NONE")).into()
}

fn none_resolution_without_endpoints(node: &Node) -> Outcome {
    (str_or(node, "resolution", "NONE") != "NONE" || !has(node, "endpoints")).into()
}

fn dns_round_robin_single_endpoint(node: &Node) -> Outcome {
    if str_or(node, "resolution", "") != "DNS_ROUND_ROBIN" {
        return Outcome::Pass;
    }
    (node.get("endpoints").map(seq_of).unwrap_or_default().len() <= 1).into()
}

fn unique_port_numbers(node: &Node) -> Outcome {
    let items = seq_of(node);
    let mut numbers = Vec::with_capacity(items.len());
    for item in items {
        match item.get("number") {
            Some(n) => numbers.push(int_value(n)),
            None => return Outcome::Error("no such key: number".to_string()),
        }
    }
    numbers
        .iter()
        .all(|n| numbers.iter().filter(|m| *m == n).count() == 1)
        .into()
}

fn address_or_network(node: &Node) -> Outcome {
    (has(node, "address") || has(node, "network")).into()
}

fn uds_without_ports(node: &Node) -> Outcome {
    (!str_or(node, "address", "").starts_with("unix://") || !has(node, "ports")).into()
}

fn uds_absolute_or_abstract(node: &Node) -> Outcome {
    let Some(s) = node.as_str() else {
        return Outcome::Pass;
    };
    if !s.starts_with("unix://") {
        return Outcome::Pass;
    }
    match substring(s, 7, 8) {
        Ok(c) => (c == "/" || c == "@").into(),
        Err(e) => Outcome::Error(e),
    }
}

fn uds_not_dir(node: &Node) -> Outcome {
    node.as_str()
        .is_none_or(|s| !s.starts_with("unix://") || !s.ends_with('/'))
        .into()
}

fn keys_are_port_names(node: &Node) -> Outcome {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$").expect("constant regex compiles")
    });
    map_keys(node)
        .all(|k| k.chars().count() < 63 && NAME.is_match(k))
        .into()
}

fn http_scheme(node: &Node) -> Outcome {
    node.as_str()
        .is_none_or(|s| matches!(s, "" | "HTTP" | "HTTPS"))
        .into()
}

fn service_accounts_exclusive(node: &Node) -> Outcome {
    if !(has(node, "serviceAccounts") || has(node, "notServiceAccounts")) {
        return Outcome::Pass;
    }
    ["principals", "notPrincipals", "namespaces", "notNamespaces"]
        .iter()
        .all(|f| !has(node, f))
        .into()
}

fn port_level_mtls_needs_selector(node: &Node) -> Outcome {
    if !has(node, "portLevelMtls") {
        return Outcome::Pass;
    }
    let labels = node.get("selector").and_then(|s| s.get("matchLabels"));
    labels.is_some_and(|l| !unique_entries(l).is_empty()).into()
}

fn http_or_https_url(node: &Node) -> Outcome {
    let Some(s) = node.as_str() else {
        return Outcome::Pass;
    };
    match url_scheme(s) {
        Ok(scheme) => matches!(scheme.as_str(), "http" | "https").into(),
        Err(e) => Outcome::Error(e),
    }
}

fn upsert_needs_value(node: &Node) -> Outcome {
    if str_or(node, "operation", "") != "UPSERT" {
        return Outcome::Pass;
    }
    match node.get("value") {
        Some(v) => (v.as_str() != Some("")).into(),
        None => Outcome::Error("no such key: value".to_string()),
    }
}

fn remove_without_value(node: &Node) -> Outcome {
    (str_or(node, "operation", "") != "REMOVE" || !has(node, "value")).into()
}

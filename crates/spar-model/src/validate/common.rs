//! Pieces the networking rules share: Istio's flavour of host names, `exportTo`,
//! label maps, port protocols, durations, RE2 regexes and Envoy header values.
//!
//! Istio's webhook is a little stricter than [`crate::names`] in places (an all-digit
//! top-level label is not a domain, gateway and sidecar hosts must be FQDNs), so those
//! rules live here rather than in the general helpers.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Diagnostic;
use crate::duration::parse_duration;
use crate::istio::types::{ConnectionPoolSettings, Destination, H2UpgradePolicy};
use crate::names;
use crate::FieldPath;

pub(super) type Diags = Vec<Diagnostic>;

pub(super) fn error(out: &mut Diags, path: FieldPath, message: impl Into<String>) {
    out.push(Diagnostic::error(path, message));
}

pub(super) fn warn(out: &mut Diags, path: FieldPath, message: impl Into<String>) {
    out.push(Diagnostic::warning(path, message));
}

/// The largest regex Istio lets through: Envoy caps RE2 program size and length is
/// the only proxy for it that does not need RE2 itself.
const MAX_REGEX_LEN: usize = 1024;

// ---------------------------------------------------------------------------------
// Hosts

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A host that may start with a wildcard label. Unlike a plain DNS check, a name whose
/// last label is all digits is refused, so `10.0.0.300` is not taken for a domain.
pub(super) fn wildcard_domain(host: &str) -> Result<(), String> {
    names::check_wildcard_domain(host)?;
    match host.rsplit_once('.') {
        Some((_, tld)) if all_digits(tld) => Err(format!(
            "domain name {host:?} invalid (top-level label {tld:?} cannot be all digits)"
        )),
        _ => Ok(()),
    }
}

/// A DNS name without wildcards (a trailing dot is allowed).
pub(super) fn fqdn(host: &str) -> Result<(), String> {
    names::check_fqdn(host)?;
    let last = host.rsplit('.').next().unwrap_or(host);
    if all_digits(last) {
        return Err(format!(
            "domain name {host:?} invalid (top-level label {last:?} cannot be all digits)"
        ));
    }
    Ok(())
}

/// Wildcards are only allowed as the whole first label (`*.example.com`) in gateway
/// and sidecar hosts; `*foo.com` would be matched as a suffix by the proxy.
pub(super) fn is_partial_wildcard(host: &str) -> bool {
    host.contains('*') && host != "*" && !host.starts_with("*.")
}

/// Host part of a `namespace/host` entry of a Gateway server or Sidecar egress
/// listener: `*`, or a (possibly wildcarded) FQDN; gateways also take an IP.
fn listener_host_part(host: &str, gateway: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if host != "*" && !host.contains('.') {
        problems.push(format!(
            "short name {host:?} is not allowed here: write the fully qualified name, e.g. {host}.default.svc.cluster.local"
        ));
    }
    if let Err(e) = wildcard_domain(host) {
        if !(gateway && names::is_ip(host)) {
            problems.push(e);
        }
    }
    if is_partial_wildcard(host) {
        problems.push(format!(
            "partial wildcard {host:?} is not allowed: a wildcard must be the whole first label, e.g. *.example.com"
        ));
    }
    problems
}

/// A Gateway server host (`host` or `namespace/host`) or, with `gateway == false`, a
/// Sidecar egress host (`namespace/host`, namespace optionally prefixed with `~`).
/// Returns every problem found.
pub(super) fn namespaced_host(value: &str, gateway: bool) -> Vec<String> {
    let Some((ns, host)) = value.split_once('/') else {
        if gateway {
            return listener_host_part(value, true);
        }
        return vec![format!(
            "host {value:?} must be of the form namespace/dnsName, e.g. ./{value} or */{value}"
        )];
    };
    let mut problems = Vec::new();
    if ns.is_empty() || host.is_empty() {
        problems.push(format!(
            "host {value:?}: namespace and dnsName must both be non-empty"
        ));
    }
    let ns_ok = if gateway {
        ns == "*" || ns == "." || names::is_dns1123_label(ns)
    } else {
        let ns = ns.strip_prefix('~').unwrap_or(ns);
        ns.is_empty() || ns == "*" || ns == "." || names::is_dns1123_label(ns)
    };
    if !ns_ok && !ns.is_empty() {
        problems.push(format!(
            "host {value:?}: namespace {ns:?} must be *, . or a namespace name"
        ));
    }
    if !host.is_empty() {
        problems.extend(listener_host_part(host, gateway));
    }
    problems
}

/// Istio's host overlap: equal names, or a wildcard that covers the other name.
pub(super) fn hosts_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Whether every name `sub` matches is also matched by `sup`.
pub(super) fn host_subset_of(sub: &str, sup: &str) -> bool {
    match (sub.strip_prefix('*'), sup.strip_prefix('*')) {
        (Some(ssub), Some(ssup)) => ssub.ends_with(ssup),
        (Some(_), None) => false,
        (None, Some(ssup)) => sub.ends_with(ssup),
        (None, None) => sub == sup,
    }
}

/// A route, mirror or egress-proxy destination.
pub(super) fn check_destination(out: &mut Diags, path: &FieldPath, d: &Destination) {
    if let Some(host) = &d.host {
        if host == "*" {
            error(out, path.field("host"), "destination host cannot be *: name the service, e.g. reviews.default.svc.cluster.local");
        } else if let Err(e) = wildcard_domain(host) {
            error(out, path.field("host"), e);
        }
    }
    if let Some(subset) = &d.subset {
        check_subset_name(out, path.field("subset"), subset);
    }
    if let Some(port) = &d.port {
        check_port(
            out,
            path.field("port").field("number"),
            port.number.unwrap_or(0),
        );
    }
}

pub(super) fn check_subset_name(out: &mut Diags, path: FieldPath, name: &str) {
    if name.is_empty() {
        error(out, path, "subset name cannot be empty");
    } else if !names::is_dns1123_label(name) {
        error(
            out,
            path,
            format!("invalid subset name {name:?}: use a DNS label such as v1 or canary"),
        );
    }
}

// ---------------------------------------------------------------------------------
// exportTo, labels, selectors

/// Checks `exportTo`: `.`, `*`, namespace names, and `~` for ServiceEntry only; no
/// duplicates (`.` counts as the resource's own namespace); `*` and `~` must stand
/// alone. Returns the entries with `.` replaced by the namespace.
pub(super) fn check_export_to(
    out: &mut Diags,
    path: &FieldPath,
    namespace: &str,
    export_to: &[String],
    service_entry: bool,
) -> BTreeSet<String> {
    // Each normalized entry, with the spelling that first produced it.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (i, entry) in export_to.iter().enumerate() {
        let p = path.index(i);
        let key = if entry == "." {
            namespace.to_string()
        } else {
            entry.clone()
        };
        if let Some(first) = seen.get(&key) {
            if *first != entry.as_str() {
                error(out, p, format!("duplicate exportTo entry: . already means the current namespace {namespace:?}"));
            } else {
                error(out, p, format!("duplicate exportTo entry {entry:?}"));
            }
            continue;
        }
        let valid = match entry.as_str() {
            "." | "*" => true,
            "~" if service_entry => true,
            "~" => {
                error(
                    out,
                    p,
                    "exportTo ~ (visible to no one) is only allowed on ServiceEntry",
                );
                false
            }
            ns if names::is_dns1123_label(ns) => true,
            other => {
                error(
                    out,
                    p,
                    format!("exportTo entry {other:?} must be ., *, or a namespace name"),
                );
                false
            }
        };
        if valid {
            seen.insert(key, entry);
        }
    }
    if seen.contains_key("*") && export_to.len() > 1 {
        error(
            out,
            path.clone(),
            "exportTo * already means every namespace: remove the other entries",
        );
    }
    if seen.contains_key("~") && export_to.len() > 1 {
        error(
            out,
            path.clone(),
            "exportTo ~ (visible to no one) cannot be combined with other entries",
        );
    }
    seen.into_keys().collect()
}

/// Kubernetes label syntax for every key and value of a label map.
pub(super) fn check_labels(out: &mut Diags, path: &FieldPath, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if let Err(e) = names::check_label_key(k) {
            error(out, path.key(k), e);
        }
        if !names::is_label_value(v) {
            error(
                out,
                path.key(k),
                format!(
                    "label value {v:?} invalid: use at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric"
                ),
            );
        }
    }
}

/// A workload selector's labels. Empty keys and `*` are left to the CRD schema; an
/// empty selector is legal but almost always a mistake, as it selects every workload.
pub(super) fn check_selector(
    out: &mut Diags,
    path: &FieldPath,
    labels: &BTreeMap<String, String>,
    kind: &str,
) {
    if labels.is_empty() {
        warn(
            out,
            path.clone(),
            format!("workload selector has no labels, so this {kind} applies to every workload in the namespace"),
        );
        return;
    }
    let checked: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, v)| !k.is_empty() && !k.contains('*') && !v.contains('*'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_labels(out, path, &checked);
}

// ---------------------------------------------------------------------------------
// Ports and protocols

pub(super) fn port_in_range(n: u32) -> bool {
    (1..=65535).contains(&n)
}

pub(super) fn check_port(out: &mut Diags, path: FieldPath, n: u32) {
    if !port_in_range(n) {
        error(
            out,
            path,
            format!("port number {n} must be in the range 1..65535"),
        );
    }
}

/// Port protocols as Istio reads them (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http,
    HttpProxy,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Udp,
    Mongo,
    Redis,
    Mysql,
}

pub(super) const PROTOCOL_NAMES: &str =
    "HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY, TCP, TLS, UDP, MONGO, REDIS, MYSQL";

impl Protocol {
    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "http" => Self::Http,
            "http_proxy" => Self::HttpProxy,
            "http2" => Self::Http2,
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "https" => Self::Https,
            "tls" => Self::Tls,
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "mongo" => Self::Mongo,
            "redis" => Self::Redis,
            "mysql" => Self::Mysql,
            _ => return None,
        })
    }

    pub(super) fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::HttpProxy | Self::Http2 | Self::Grpc | Self::GrpcWeb
        )
    }

    pub(super) fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }

    pub(super) fn is_tcp(self) -> bool {
        matches!(
            self,
            Self::Tcp | Self::Https | Self::Tls | Self::Mongo | Self::Redis | Self::Mysql
        )
    }
}

/// An optional port protocol: empty means "detect", anything else must be known.
pub(super) fn check_protocol(out: &mut Diags, path: FieldPath, protocol: Option<&str>) {
    if let Some(p) = protocol.filter(|p| !p.is_empty()) {
        if Protocol::parse(p).is_none() {
            error(
                out,
                path,
                format!("unsupported protocol {p:?}: use one of {PROTOCOL_NAMES}"),
            );
        }
    }
}

/// Port names are DNS-1123 labels (`http`, `grpc-web`).
pub(super) fn check_port_name(out: &mut Diags, path: FieldPath, name: &str) {
    if !names::is_dns1123_label(name) {
        error(
            out,
            path,
            format!("invalid port name {name:?}: use letters, digits and '-', starting and ending with a letter or digit (e.g. http-web)"),
        );
    }
}

// ---------------------------------------------------------------------------------
// Addresses

pub(super) const UNIX_PREFIX: &str = "unix://";

/// The path of a `unix://` address: absolute and not a directory, or abstract (`@name`).
pub(super) fn unix_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("unix socket address must not be empty".into());
    }
    if path.starts_with('@') {
        return Ok(());
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "{path:?} is not an absolute path to a file: write unix:///path/to/socket or unix://@abstract-name"
        ));
    }
    Ok(())
}

pub(super) fn ip_address(addr: &str) -> Result<(), String> {
    if names::is_ip(addr) {
        Ok(())
    } else {
        Err(format!("{addr:?} is not a valid IP address"))
    }
}

// ---------------------------------------------------------------------------------
// Connection pools (DestinationRule traffic policies and Sidecar inbound)

pub(super) fn check_connection_pool(
    out: &mut Diags,
    path: &FieldPath,
    pool: &ConnectionPoolSettings,
) {
    if pool.http.is_none() && pool.tcp.is_none() {
        error(
            out,
            path.clone(),
            "connectionPool must set http or tcp settings",
        );
    }
    let non_negative = |out: &mut Diags, path: FieldPath, v: Option<i32>| {
        if let Some(v) = v.filter(|v| *v < 0) {
            error(out, path, format!("must not be negative (got {v})"));
        }
    };
    if let Some(h) = &pool.http {
        let p = path.field("http");
        non_negative(
            out,
            p.field("http1MaxPendingRequests"),
            h.http1_max_pending_requests,
        );
        non_negative(out, p.field("http2MaxRequests"), h.http2_max_requests);
        non_negative(
            out,
            p.field("maxRequestsPerConnection"),
            h.max_requests_per_connection,
        );
        non_negative(out, p.field("maxRetries"), h.max_retries);
        non_negative(
            out,
            p.field("maxConcurrentStreams"),
            h.max_concurrent_streams,
        );
        check_duration_ms(out, p.field("idleTimeout"), h.idle_timeout.as_ref());
        if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && h.use_client_protocol == Some(true)
        {
            error(
                out,
                p.field("useClientProtocol"),
                "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE: choose one",
            );
        }
        if let Some(ka) = &h.http2_keep_alive {
            let kp = p.field("http2KeepAlive");
            check_required_duration(
                out,
                kp.field("interval"),
                ka.interval.as_ref(),
                "http2KeepAlive.interval",
            );
            check_required_duration(
                out,
                kp.field("timeout"),
                ka.timeout.as_ref(),
                "http2KeepAlive.timeout",
            );
        }
    }
    if let Some(t) = &pool.tcp {
        let p = path.field("tcp");
        non_negative(out, p.field("maxConnections"), t.max_connections);
        check_duration_ms(out, p.field("connectTimeout"), t.connect_timeout.as_ref());
        check_duration_ms(
            out,
            p.field("maxConnectionDuration"),
            t.max_connection_duration.as_ref(),
        );
        check_duration_ms(out, p.field("idleTimeout"), t.idle_timeout.as_ref());
        if let Some(ka) = &t.tcp_keepalive {
            let kp = p.field("tcpKeepalive");
            check_duration_ms(out, kp.field("time"), ka.time.as_ref());
            check_duration_ms(out, kp.field("interval"), ka.interval.as_ref());
        }
    }
}

// ---------------------------------------------------------------------------------
// Durations, regexes, header values

/// Envoy is configured in milliseconds; Istio refuses finer durations rather than
/// round them. Unparsable values and values under 1ms are the schema's to report.
pub(super) fn check_duration_ms(out: &mut Diags, path: FieldPath, value: Option<&String>) {
    let Some(text) = value else { return };
    if let Ok(d) = parse_duration(text) {
        if d.subsec_nanos() % 1_000_000 != 0 {
            error(
                out,
                path,
                format!(
                    "duration {text:?} is finer than a millisecond: round it to whole milliseconds"
                ),
            );
        }
    }
}

/// A duration that must be present and at least 1ms.
pub(super) fn check_required_duration(
    out: &mut Diags,
    path: FieldPath,
    value: Option<&String>,
    what: &str,
) {
    match value {
        None => error(out, path, format!("{what} is required")),
        Some(_) => check_duration_ms(out, path, value),
    }
}

/// RE2 syntax, as Envoy and Istio use it: no backreferences, no lookaround.
pub(super) fn check_re2(re: &str) -> Result<(), String> {
    let invalid = |reason: &str| {
        format!(
            "invalid regex {re:?}: {reason}; Istio uses RE2 syntax (no backreferences or lookaround), see https://github.com/google/re2/wiki/Syntax"
        )
    };
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex is too large ({} characters); at most {MAX_REGEX_LEN} are allowed",
            re.len()
        ));
    }
    if let Some(n) = repeat_counts(re).find(|n| *n > MAX_REPEAT) {
        return Err(invalid(&format!("repeat count {n} exceeds {MAX_REPEAT}")));
    }
    regex::Regex::new(&expand_quoted(re))
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or(text.trim())
                .to_string();
            invalid(&reason)
        })
}

/// RE2 refuses `{n}` / `{n,m}` repetitions above this; the `regex` crate does not.
const MAX_REPEAT: u64 = 1000;

/// The numbers of every `{n}`, `{n,}` and `{n,m}` repetition outside classes.
fn repeat_counts(re: &str) -> impl Iterator<Item = u64> + '_ {
    let b = re.as_bytes();
    let mut counts = Vec::new();
    let (mut i, mut in_class) = (0, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'{' if !in_class => {
                let body_len = b[i + 1..].iter().position(|c| *c == b'}');
                if let Some(body) = body_len.map(|len| &re[i + 1..i + 1 + len]) {
                    let nums: Vec<&str> = body.split(',').collect();
                    if nums.len() <= 2 && nums.iter().all(|n| n.bytes().all(|c| c.is_ascii_digit()))
                    {
                        counts.extend(nums.iter().filter_map(|n| n.parse::<u64>().ok()));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    counts.into_iter()
}

/// RE2's `\Q...\E` quotes a literal; the `regex` crate has no such syntax, so the
/// quoted text is escaped before compiling.
fn expand_quoted(re: &str) -> String {
    let mut out = String::with_capacity(re.len());
    let mut rest = re;
    while let Some(start) = find_unescaped(rest, "\\Q") {
        out.push_str(&rest[..start]);
        let quoted = &rest[start + 2..];
        let (literal, after) = match quoted.find("\\E") {
            Some(end) => (&quoted[..end], &quoted[end + 2..]),
            None => (quoted, ""),
        };
        out.push_str(&regex::escape(literal));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Position of `pat` (a backslash sequence) not itself preceded by an escaping backslash.
fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if s[i..].starts_with(pat) {
                return Some(i);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// An Envoy custom header value: no control characters except tab, and `%` only in
/// `%%`, `%VARIABLE%` or `%VARIABLE(args)%` where args is a raw string or a JSON array
/// of strings.
pub(super) fn check_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
        return Err(format!(
            "header value {value:?} contains control characters"
        ));
    }
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'%') {
            i += 2;
            continue;
        }
        i = header_variable_end(b, i + 1).ok_or_else(|| {
            format!(
                "header value {value:?} has an unterminated %VARIABLE%: close it with %, or write %% for a literal percent sign"
            )
        })?;
    }
    Ok(())
}

/// Given the index just after an opening `%`, returns the index just after the
/// closing `%` of the variable, or `None` if it never closes properly.
fn header_variable_end(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() && b[i] != b'%' && b[i] != b'(' {
        i += 1;
    }
    match b.get(i)? {
        b'%' => return Some(i + 1),
        _ => i += 1,
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) == Some(&b'[') {
        // A JSON array of strings: ["a", "b"]
        i += 1;
        loop {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if *b.get(i)? != b'"' {
                return None;
            }
            i += 1;
            loop {
                match *b.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            i += 1;
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            match *b.get(i)? {
                b',' => i += 1,
                b']' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if *b.get(i)? != b')' {
            return None;
        }
        i += 1;
    } else {
        // A raw argument, up to the first unescaped ')'.
        loop {
            match *b.get(i)? {
                b'\\' => i += 2,
                b')' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    (*b.get(i)? == b'%').then_some(i + 1)
}

pub(super) fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Header names in VirtualService header operations: `host` and pseudo-headers
/// (`:path`) are owned by the proxy. Adding or setting `:authority`/`host` on a
/// request is allowed (it rewrites the authority); removing them, or touching them on
/// responses, is not.
pub(super) fn header_op_name(name: &str, request_add_or_set: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if request_add_or_set && is_authority_header(name) {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "header {name:?} cannot be modified here: use rewrite.authority (or headers.request.set) to change the Host"
        ));
    }
    if name.starts_with(':') {
        return Err(format!(
            "header {name:?} cannot be modified: pseudo-headers (\":\" prefix) belong to the proxy"
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod testing {
    //! Building typed specs from YAML snippets, and reading diagnostics back.

    use serde::de::DeserializeOwned;

    use crate::diag::{Diagnostic, Severity};
    use crate::validate::Ctx;
    use crate::yaml::{from_node_at, parse_documents};
    use crate::FieldPath;

    pub const CTX: Ctx<'static> = Ctx {
        namespace: "default",
        name: "test",
    };

    /// Reads a spec from YAML (the contents of `spec:`).
    pub fn spec<T: DeserializeOwned>(yaml: &str) -> T {
        let docs = parse_documents(yaml).unwrap();
        let node = &docs.first().expect("one YAML document").root;
        from_node_at(node, FieldPath::root().field("spec"), None).unwrap()
    }

    /// `path: message` of every error.
    pub fn errors(diags: &[Diagnostic]) -> Vec<String> {
        render(diags, Severity::Error)
    }

    pub fn warnings(diags: &[Diagnostic]) -> Vec<String> {
        render(diags, Severity::Warning)
    }

    fn render(diags: &[Diagnostic], severity: Severity) -> Vec<String> {
        diags
            .iter()
            .filter(|d| d.severity == severity)
            .map(|d| match &d.path {
                Some(p) => format!("{p}: {}", d.message),
                None => d.message.clone(),
            })
            .collect()
    }

    /// Table runner: each case is (name, spec YAML, expected error substring or `None`
    /// for "no errors"). Reports every failing case at once.
    pub fn run_cases<T: DeserializeOwned>(
        check: impl Fn(&T) -> Vec<Diagnostic>,
        cases: &[(&str, &str, Option<&str>)],
    ) {
        let mut failures = Vec::new();
        for (name, yaml, want) in cases {
            let errs = errors(&check(&spec::<T>(yaml)));
            match want {
                None if !errs.is_empty() => {
                    failures.push(format!("{name}: expected no errors, got {errs:#?}"))
                }
                Some(w) if !errs.iter().any(|e| e.contains(w)) => failures.push(format!(
                    "{name}: expected an error containing {w:?}, got {errs:#?}"
                )),
                _ => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[cfg(test)]
#[path = "common_tests.rs"]
mod tests;

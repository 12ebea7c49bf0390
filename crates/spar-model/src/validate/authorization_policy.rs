//! Webhook rules for `AuthorizationPolicy`.
//!
//! Errors are what Istio's webhook rejects, plus path templates Envoy would refuse
//! (Istio accepts those and the listener is then rejected by every proxy). Values Istio
//! accepts but matches in a way the author almost surely did not mean (a `*` in the
//! middle of a principal, a lower-case method) are warnings, so configuration that runs
//! on Istio still loads here.

use super::peer_authentication::{check_selector, check_target_refs};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{
    AuthorizationAction, AuthorizationPolicy, Condition, Operation, Rule, Source,
};
use crate::names::{check_ip_or_cidr, is_header_name};
use crate::FieldPath;

pub fn check(spec: &AuthorizationPolicy, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    check_selector(spec.selector.as_ref(), &root, &mut out);
    check_target_refs(spec.target_ref.as_ref(), &spec.target_refs, &root, &mut out);

    let action = spec.action.unwrap_or(AuthorizationAction::Allow);
    check_action(spec, action, &root, &mut out);
    for (i, rule) in spec.rules.iter().enumerate() {
        check_rule(rule, action, &root.field("rules").index(i), &mut out);
    }
    out
}

fn check_action(
    spec: &AuthorizationPolicy,
    action: AuthorizationAction,
    root: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let provider_name = spec
        .provider
        .as_ref()
        .and_then(|p| p.name.as_deref())
        .unwrap_or("");
    match action {
        AuthorizationAction::Custom => {
            if spec.rules.is_empty() {
                out.push(Diagnostic::error(
                    root.field("rules"),
                    "a CUSTOM policy without rules never calls its provider; add an empty rule \
                     (`rules: [{}]`) to send every request to it",
                ));
            }
            if provider_name.is_empty() {
                out.push(Diagnostic::error(
                    root.field("provider").field("name"),
                    "action CUSTOM needs provider.name: the name of an extension provider \
                     defined in meshConfig.extensionProviders",
                ));
            }
        }
        AuthorizationAction::Deny if spec.rules.is_empty() => {
            out.push(Diagnostic::error(
                root.field("rules"),
                "a DENY policy without rules never denies anything; add an empty rule \
                 (`rules: [{}]`) to deny every request",
            ));
        }
        _ => {}
    }
    if spec.provider.is_some() && action != AuthorizationAction::Custom {
        out.push(Diagnostic::error(
            root.field("provider"),
            format!(
                "provider is only used by action CUSTOM, but the action is {}; set `action: CUSTOM` \
                 or remove provider",
                action.as_str()
            ),
        ));
    }
}

/// How the values of a field or condition are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Values {
    /// Exact, `prefix*`, `*suffix` or `*`.
    Match,
    /// Like `Match`, but Istio rejects any other use of `*`.
    TrustDomain,
    Ip,
    Port,
    ServiceAccount,
    Method,
    Path,
}

fn check_rule(
    rule: &Rule,
    action: AuthorizationAction,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let custom = action == AuthorizationAction::Custom;
    let (mut has_source, mut tcp_in_from) = (false, false);
    for (j, from) in rule.from.iter().enumerate() {
        let from_path = path.field("from").index(j);
        match &from.source {
            None => out.push(Diagnostic::error(
                from_path,
                "`from` entry without `source`; write `- source: {...}` or remove the entry",
            )),
            Some(src) => {
                has_source = true;
                tcp_in_from |= source_has_tcp_fields(src);
                check_source(src, custom, &from_path.field("source"), out);
            }
        }
    }
    let (mut has_operation, mut tcp_in_to) = (false, false);
    for (j, to) in rule.to.iter().enumerate() {
        let to_path = path.field("to").index(j);
        match &to.operation {
            None => out.push(Diagnostic::error(
                to_path,
                "`to` entry without `operation`; write `- operation: {...}` or remove the entry",
            )),
            Some(op) => {
                has_operation = true;
                tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
                check_operation(op, &to_path.field("operation"), out);
            }
        }
    }
    for (j, cond) in rule.when.iter().enumerate() {
        check_condition(cond, custom, &path.field("when").index(j), out);
    }

    // A DENY rule made only of HTTP attributes cannot be evaluated on a TCP connection, so
    // the proxy denies the whole connection on TCP ports.
    let http_only = (has_source && !has_operation && !tcp_in_from) || (has_operation && !tcp_in_to);
    if action == AuthorizationAction::Deny && http_only {
        out.push(Diagnostic::warning(
            path.clone(),
            "this DENY rule uses only HTTP attributes, so on TCP (non-HTTP) ports in its scope it \
             denies every connection; add `ports` to the operation to limit it to HTTP ports",
        ));
    }
}

/// Whether the source uses attributes a proxy can evaluate on a plain TCP connection.
fn source_has_tcp_fields(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.trust_domains,
        &s.not_trust_domains,
    ]
    .iter()
    .any(|v| !v.is_empty())
}

fn check_source(src: &Source, custom: bool, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    let fields: [(&str, &[String], Values); 14] = [
        ("principals", &src.principals, Values::Match),
        ("notPrincipals", &src.not_principals, Values::Match),
        ("requestPrincipals", &src.request_principals, Values::Match),
        (
            "notRequestPrincipals",
            &src.not_request_principals,
            Values::Match,
        ),
        ("namespaces", &src.namespaces, Values::Match),
        ("notNamespaces", &src.not_namespaces, Values::Match),
        (
            "serviceAccounts",
            &src.service_accounts,
            Values::ServiceAccount,
        ),
        (
            "notServiceAccounts",
            &src.not_service_accounts,
            Values::ServiceAccount,
        ),
        ("trustDomains", &src.trust_domains, Values::TrustDomain),
        (
            "notTrustDomains",
            &src.not_trust_domains,
            Values::TrustDomain,
        ),
        ("ipBlocks", &src.ip_blocks, Values::Ip),
        ("notIpBlocks", &src.not_ip_blocks, Values::Ip),
        ("remoteIpBlocks", &src.remote_ip_blocks, Values::Ip),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks, Values::Ip),
    ];
    if fields.iter().all(|(_, v, _)| v.is_empty()) {
        out.push(Diagnostic::error(
            path.clone(),
            "`source` is empty; set at least one field (principals, namespaces, ipBlocks, ...), or \
             remove the `from` entry to match any source",
        ));
    }
    for (name, values, kind) in fields {
        // Istio implements no identity matching for the CUSTOM action, so it refuses
        // identity fields there rather than ignore them.
        if custom && !values.is_empty() && !matches!(kind, Values::Ip) {
            out.push(Diagnostic::error(
                path.field(name),
                format!(
                    "{name} is not supported with action CUSTOM; match on ipBlocks/remoteIpBlocks, \
                     the operation or request headers here, or move this check to an ALLOW or DENY policy"
                ),
            ));
        }
        check_values(values, kind, &path.field(name), out);
    }
}

fn check_operation(op: &Operation, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    let fields: [(&str, &[String], Values); 8] = [
        ("hosts", &op.hosts, Values::Match),
        ("notHosts", &op.not_hosts, Values::Match),
        ("ports", &op.ports, Values::Port),
        ("notPorts", &op.not_ports, Values::Port),
        ("methods", &op.methods, Values::Method),
        ("notMethods", &op.not_methods, Values::Method),
        ("paths", &op.paths, Values::Path),
        ("notPaths", &op.not_paths, Values::Path),
    ];
    if fields.iter().all(|(_, v, _)| v.is_empty()) {
        out.push(Diagnostic::error(
            path.clone(),
            "`operation` is empty; set at least one field (hosts, ports, methods, paths, ...), or \
             remove the `to` entry to match any operation",
        ));
    }
    for (name, values, kind) in fields {
        check_values(values, kind, &path.field(name), out);
    }
}

/// Checks one list of values; each finding points at the offending item.
fn check_values(values: &[String], kind: Values, list: &FieldPath, out: &mut Vec<Diagnostic>) {
    for (i, v) in values.iter().enumerate() {
        let path = list.index(i);
        if v.is_empty() {
            let instead = match kind {
                Values::Ip => "an IP address (10.1.2.3) or a CIDR block (10.1.0.0/16)",
                Values::Port => "a port number",
                Values::ServiceAccount => "a service account as name or namespace/name",
                _ => "\"*\" to match any value",
            };
            out.push(Diagnostic::error(
                path,
                format!("empty value is not allowed; remove it or write {instead}"),
            ));
            continue;
        }
        match kind {
            Values::Match => {
                if let Some(why) = wildcard_problem(v) {
                    out.push(Diagnostic::warning(
                        path,
                        format!("{v:?} matches literally: {why}"),
                    ));
                }
            }
            Values::Method => {
                let upper = v.to_ascii_uppercase();
                if let Some(why) = wildcard_problem(v) {
                    out.push(Diagnostic::warning(
                        path,
                        format!("{v:?} matches literally: {why}"),
                    ));
                } else if upper != *v && STANDARD_METHODS.contains(&upper.as_str()) {
                    out.push(Diagnostic::warning(
                        path,
                        format!(
                            "HTTP methods are case-sensitive, so {v:?} never matches a {upper} \
                             request; write {upper:?}"
                        ),
                    ));
                }
            }
            Values::TrustDomain => {
                if let Some(why) = wildcard_problem(v) {
                    out.push(Diagnostic::error(
                        path,
                        format!("invalid trust domain {v:?}: {why}"),
                    ));
                } else if v.contains('/') {
                    out.push(Diagnostic::error(
                        path,
                        format!(
                            "invalid trust domain {v:?}: a trust domain has no \"/\"; write only the \
                             domain (cluster.local), not a principal or SPIFFE ID"
                        ),
                    ));
                }
            }
            Values::Ip => {
                if let Err(e) = check_ip_or_cidr(v) {
                    out.push(Diagnostic::error(
                        path,
                        format!(
                            "{e}; write an IP address (10.1.2.3) or a CIDR block (10.1.0.0/16)"
                        ),
                    ));
                }
            }
            Values::Port => check_port(v, path, out),
            Values::Path => match path_problem(v) {
                Ok(None) => {}
                Ok(Some(warning)) => out.push(Diagnostic::warning(path, warning)),
                Err(error) => out.push(Diagnostic::error(path, error)),
            },
            Values::ServiceAccount => {
                if let Err(e) = check_service_account(v) {
                    out.push(Diagnostic::error(path, e));
                }
            }
        }
    }
}

/// Methods a lower-case spelling most likely meant; other methods may be custom.
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Why Istio would not treat the `*`s in `v` as wildcards, if it would not.
fn wildcard_problem(v: &str) -> Option<&'static str> {
    match v.matches('*').count() {
        0 => None,
        1 if v.starts_with('*') || v.ends_with('*') => None,
        1 => Some("\"*\" is a wildcard only at the start or the end of a value (prefix* or *suffix)"),
        _ => Some("only one \"*\" is allowed, at the start or the end of a value (prefix* or *suffix), or \"*\" alone"),
    }
}

fn check_port(v: &str, path: FieldPath, out: &mut Vec<Diagnostic>) {
    // Istio reads ports as unsigned decimal numbers: no sign, no spaces, no names.
    let number = v
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse::<u32>().ok())
        .flatten();
    match number {
        Some(0) => out.push(Diagnostic::warning(
            path,
            "port 0 never matches a connection; write a port from 1 to 65535",
        )),
        Some(p) if p <= 65535 => {}
        _ => out.push(Diagnostic::error(
            path,
            format!("bad port {v:?}: write a port number from 1 to 65535 (not a port name)"),
        )),
    }
}

/// `name` or `namespace/name`, as `source.serviceAccounts` and `source.serviceAccount` take them.
fn check_service_account(v: &str) -> Result<(), String> {
    if v.contains('*') {
        return Err(format!(
            "wildcards are not allowed in service accounts (got {v:?}); list each service account, \
             or use principals for prefix/suffix matches"
        ));
    }
    let ok = match v.split_once('/') {
        None => true,
        Some((ns, sa)) => !ns.is_empty() && !sa.is_empty() && !sa.contains('/'),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad service account {v:?}: write \"name\" or \"namespace/name\""
        ))
    }
}

/// Envoy's limit on a URI template's length.
const PATH_TEMPLATE_MAX: usize = 256;
const MATCH_ONE: &str = "{*}";
const MATCH_ANY: &str = "{**}";

/// Checks a path value: `Err` for what Istio or Envoy rejects, `Ok(Some)` for a path that
/// is accepted but can only match literally or never.
fn path_problem(p: &str) -> Result<Option<String>, String> {
    let template = p.contains(MATCH_ONE) || p.contains(MATCH_ANY);
    let mut after_any = false;
    for seg in p.trim_matches('/').split('/') {
        let operator = seg == MATCH_ONE || seg == MATCH_ANY;
        if operator && after_any {
            return Err(format!(
                "invalid path template {p:?}: {{**}} must be the last operator; only literal \
                 segments may follow it"
            ));
        }
        if operator {
            after_any |= seg == MATCH_ANY;
            continue;
        }
        if seg.contains(['{', '}']) {
            return Err(format!(
                "invalid path {p:?}: \"{{\" and \"}}\" may only appear as a whole segment {{*}} (one \
                 segment) or {{**}} (any number of segments)"
            ));
        }
        if template && !is_template_literal(seg) {
            return Err(format!(
                "invalid path template {p:?}: segment {seg:?} is not a plain literal; between \
                 slashes write {{*}}, {{**}}, or letters, digits and -._~%!$&'()+,;:@= (no \"*\")"
            ));
        }
    }
    if template {
        if !p.starts_with('/') {
            return Err(format!(
                "invalid path template {p:?}: a path template must start with \"/\""
            ));
        }
        if p.len() > PATH_TEMPLATE_MAX {
            return Err(format!(
                "path template is {} characters long; Envoy accepts at most {PATH_TEMPLATE_MAX}",
                p.len()
            ));
        }
        return Ok(None);
    }
    if let Some(why) = wildcard_problem(p) {
        return Ok(Some(format!(
            "{p:?} matches literally: {why}; to match any one segment write a path template such as \
             /api/{{*}}/items, and {{**}} for the rest of the path"
        )));
    }
    if !p.starts_with('/') && !p.starts_with('*') {
        return Ok(Some(format!(
            "{p:?} never matches: request paths start with \"/\"; write \"/{p}\""
        )));
    }
    Ok(None)
}

/// A path-template segment Envoy takes literally: RFC 3986 `pchar`s, without `*`.
fn is_template_literal(seg: &str) -> bool {
    !seg.is_empty()
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b))
}

/// What a `when` key means to Istio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    Header(&'a str),
    Values(Values),
}

const SUPPORTED_KEYS: &str = "request.headers[<name>], source.ip, remote.ip, source.namespace, \
     source.principal, source.serviceAccount, source.trustDomain, request.auth.principal, \
     request.auth.audiences, request.auth.presenter, request.auth.claims[<name>] (nested: \
     request.auth.claims[<a>][<b>]), destination.ip, destination.port, connection.sni, \
     experimental.envoy.filters.<filter>[<key>]";

fn classify_key(key: &str) -> Result<Key<'_>, String> {
    let plain = Key::Values(Values::Match);
    let key_kind = match key {
        "source.ip" | "remote.ip" | "destination.ip" => Key::Values(Values::Ip),
        "destination.port" => Key::Values(Values::Port),
        "source.serviceAccount" => Key::Values(Values::ServiceAccount),
        "source.trustDomain" => Key::Values(Values::TrustDomain),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => plain,
        "destination.namespace" => {
            return Err(
                "key destination.namespace is not supported: a policy applies in its own \
                        namespace (metadata.namespace)"
                    .into(),
            )
        }
        "destination.name" | "destination.user" => {
            return Err(format!(
                "key {key} was only supported by the removed v1alpha1 RBAC API; use `selector` to \
                 pick workloads"
            ))
        }
        _ if key.starts_with("destination.labels") => {
            return Err(format!(
                "key {key} is not supported: pick workloads with `selector.matchLabels` instead"
            ))
        }
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers") {
                return match bracket_groups(rest).as_deref() {
                    Some([name]) => Ok(Key::Header(name)),
                    _ => Err(format!(
                        "bad key {key:?}: write request.headers[<header-name>], e.g. request.headers[x-user]"
                    )),
                };
            }
            if let Some(rest) = key.strip_prefix("request.auth.claims") {
                return match bracket_groups(rest) {
                    Some(_) => Ok(plain),
                    None => Err(format!(
                        "bad key {key:?}: write request.auth.claims[<claim>], or \
                         request.auth.claims[<claim>][<nested>] for a nested claim"
                    )),
                };
            }
            if key.starts_with("experimental.envoy.filters.") {
                return match is_map_key(key) {
                    true => Ok(plain),
                    false => Err(format!(
                        "bad key {key:?}: write experimental.envoy.filters.<filter>[<key>]"
                    )),
                };
            }
            return Err(format!(
                "unknown key {key:?}; supported keys are {SUPPORTED_KEYS}"
            ));
        }
    };
    Ok(key_kind)
}

/// `[a][b]...` with at least one group and no empty ones.
fn bracket_groups(s: &str) -> Option<Vec<&str>> {
    let mut groups = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        groups.push(name);
        rest = &inner[end + 1..];
    }
    (!groups.is_empty()).then_some(groups)
}

/// `name[key]`: something before the first `[`, and something between it and a final `]`.
fn is_map_key(key: &str) -> bool {
    match key.find('[') {
        Some(open) => open > 0 && key.ends_with(']') && open + 2 < key.len(),
        None => false,
    }
}

/// Keys whose attributes a CUSTOM policy cannot see (see `check_source`).
fn custom_unsupported(key: &str) -> bool {
    matches!(
        key,
        "source.namespace" | "source.serviceAccount" | "source.trustDomain" | "source.principal"
    ) || key.starts_with("request.auth.")
}

fn check_condition(cond: &Condition, custom: bool, path: &FieldPath, out: &mut Vec<Diagnostic>) {
    let key = cond.key.as_deref().unwrap_or("");
    if key.is_empty() {
        out.push(Diagnostic::error(
            path.field("key"),
            format!("key must not be empty; use one of {SUPPORTED_KEYS}"),
        ));
        return;
    }
    if custom && custom_unsupported(key) {
        out.push(Diagnostic::error(
            path.field("key"),
            format!(
                "key {key} is not supported with action CUSTOM; move this condition to an ALLOW or \
                 DENY policy"
            ),
        ));
    }
    let kind = match classify_key(key) {
        Ok(k) => k,
        Err(e) => {
            out.push(Diagnostic::error(path.field("key"), e));
            return;
        }
    };
    if let Key::Header(name) = kind {
        // Envoy takes any name here, but one that is not an HTTP token never occurs in a request.
        let bare = name.strip_prefix(':').unwrap_or(name);
        if !is_header_name(bare) {
            out.push(Diagnostic::warning(
                path.field("key"),
                format!(
                    "{name:?} is not a valid HTTP header name, so this condition never matches"
                ),
            ));
        }
    }
    if cond.values.is_empty() && cond.not_values.is_empty() {
        out.push(Diagnostic::error(
            path.clone(),
            format!("condition on {key} needs `values` or `notValues` (at least one of them)"),
        ));
        return;
    }
    let values_kind = match kind {
        Key::Header(_) => Values::Match,
        Key::Values(v) => v,
    };
    check_values(&cond.values, values_kind, &path.field("values"), out);
    check_values(&cond.not_values, values_kind, &path.field("notValues"), out);
}

#[cfg(test)]
#[path = "authorization_policy_tests.rs"]
mod tests;

//! Webhook rules for a `VirtualService` HTTP route (`spec.http[i]`).

use super::super::common::{
    check_duration_ms, check_header_value, check_port, check_re2, error, header_op_name,
    is_authority_header, warn, Diags,
};
use super::{
    check_destination, check_match_common, check_string_match, check_weighted_destinations,
    is_jwt_claim_header, Scope,
};
use crate::duration::parse_duration;
use crate::istio::types::{
    CorsPolicy, HTTPDirectResponse, HTTPFaultInjection, HTTPMatchRequest, HTTPRedirect, HTTPRetry,
    HTTPRewrite, HTTPRoute, Headers, Percent,
};
use crate::names;
use crate::FieldPath;

/// Direct response bodies live in every proxy's route table; beyond this, Istio warns.
const BODY_WARN_BYTES: usize = 100 * 1024;
const BODY_MAX_BYTES: usize = 1024 * 1024;

use crate::validate::RETRY_ON;

const GRPC_CODES: &[&str] = &[
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

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// Redirect codes Envoy can send; istiod drops the route for any other.
const REDIRECT_CODES: &[u32] = &[301, 302, 303, 307, 308];

pub(super) fn check_route(
    out: &mut Diags,
    path: &FieldPath,
    r: &HTTPRoute,
    delegate_vs: bool,
    scope: &Scope,
) {
    check_actions(out, path, r, delegate_vs);
    for (j, m) in r.r#match.iter().enumerate() {
        check_match(out, &path.field("match").index(j), m, scope);
    }
    if let Some(h) = &r.headers {
        check_header_ops(out, &path.field("headers"), h);
    }
    check_authority_rewrite(out, path, r);
    if let Some(c) = &r.cors_policy {
        check_cors(out, &path.field("corsPolicy"), c);
    }
    if let Some(f) = &r.fault {
        check_fault(out, &path.field("fault"), f);
    }
    check_mirrors(out, path, r);
    if let Some(rd) = &r.redirect {
        check_redirect(out, &path.field("redirect"), rd, &r.r#match);
    }
    if let Some(d) = &r.direct_response {
        check_direct_response(out, &path.field("directResponse"), d);
    }
    if let Some(rt) = &r.retries {
        check_retries(out, &path.field("retries"), rt);
    }
    if let Some(rw) = &r.rewrite {
        check_rewrite(out, &path.field("rewrite"), rw);
    }
    for (i, d) in r.route.iter().enumerate() {
        if let Some(h) = &d.headers {
            check_header_ops(out, &path.field("route").index(i).field("headers"), h);
        }
    }
    check_weighted_destinations(
        out,
        &path.field("route"),
        r.route.iter().map(|d| (d.destination.as_ref(), d.weight)),
    );
    check_duration_ms(out, path.field("timeout"), r.timeout.as_ref());
}

/// What the route does: forward (`route`), `redirect`, `directResponse`, or hand over
/// to a delegate VirtualService. Exactly one, and fault/rewrite only when forwarding.
fn check_actions(out: &mut Diags, path: &FieldPath, r: &HTTPRoute, delegate_vs: bool) {
    let has_route = !r.route.is_empty();
    if r.delegate.is_some() {
        if delegate_vs {
            error(out, path.field("delegate"), "a delegate VirtualService cannot delegate again: replace delegate with route, redirect or directResponse");
            return;
        }
        for (field, set) in [
            ("route", has_route),
            ("redirect", r.redirect.is_some()),
            ("directResponse", r.direct_response.is_some()),
        ] {
            if set {
                error(out, path.field(field), format!("an HTTP route with delegate cannot also have {field}: the delegate VirtualService decides"));
            }
        }
        return;
    }
    if r.redirect.is_some() {
        for (field, set) in [
            ("route", has_route),
            ("fault", r.fault.is_some()),
            ("rewrite", r.rewrite.is_some()),
            ("directResponse", r.direct_response.is_some()),
        ] {
            if set {
                error(
                    out,
                    path.field(field),
                    format!("HTTP route cannot contain both {field} and redirect"),
                );
            }
        }
    } else if r.direct_response.is_some() {
        for (field, set) in [
            ("route", has_route),
            ("fault", r.fault.is_some()),
            ("rewrite", r.rewrite.is_some()),
        ] {
            if set {
                error(
                    out,
                    path.field(field),
                    format!("HTTP route cannot contain both {field} and directResponse"),
                );
            }
        }
    } else if !has_route {
        let msg = if delegate_vs {
            "HTTP route or redirect or directResponse is required"
        } else {
            "HTTP route or redirect or directResponse or delegate is required"
        };
        error(out, path.clone(), msg);
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        error(
            out,
            path.field("mirror"),
            "HTTP route cannot contain both mirror and mirrors: move mirror into mirrors",
        );
    }
}

fn check_match(out: &mut Diags, path: &FieldPath, m: &HTTPMatchRequest, scope: &Scope) {
    for (field, map, without) in [
        ("headers", &m.headers, false),
        ("withoutHeaders", &m.without_headers, true),
    ] {
        for (name, sm) in map {
            let p = path.field(field).key(name);
            if !is_match_header_name(name) {
                error(
                    out,
                    p.clone(),
                    format!("{name:?} is not a valid header name"),
                );
            }
            // In withoutHeaders, regex `*` means "header present", not a regex.
            if !(without && sm.regex.as_deref() == Some("*")) {
                check_string_match(out, &p, sm, false);
            }
        }
    }
    if let Some(uri) = &m.uri {
        check_string_match(out, &path.field("uri"), uri, true);
    }
    for (field, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            check_string_match(out, &path.field(field), sm, false);
        }
    }
    for (name, sm) in &m.query_params {
        check_string_match(out, &path.field("queryParams").key(name), sm, false);
    }
    check_match_common(
        out,
        path,
        m.port,
        &m.source_labels,
        m.source_namespace.as_deref(),
        &m.gateways,
        scope,
    );
}

/// A header to match on: a token, a pseudo-header, or a JWT claim reference.
fn is_match_header_name(name: &str) -> bool {
    matches!(
        name,
        ":method" | ":scheme" | ":authority" | ":path" | ":status"
    ) || is_jwt_claim_header(name)
        || names::is_header_name(name)
}

fn check_header_ops(out: &mut Diags, path: &FieldPath, h: &Headers) {
    for (dir, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let p = path.field(dir);
        let request = dir == "request";
        for (field, map) in [("add", &ops.add), ("set", &ops.set)] {
            for (name, value) in map {
                let p = p.field(field).key(name);
                if let Err(e) = header_op_name(name, request) {
                    error(out, p.clone(), e);
                }
                if let Err(e) = check_header_value(value) {
                    error(out, p, e);
                }
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            if let Err(e) = header_op_name(name, false) {
                error(out, p.field("remove").index(i), e);
            }
        }
    }
}

/// The authority can be rewritten in one place only: `rewrite.authority` or a request
/// header operation on `:authority`/`host`.
fn check_authority_rewrite(out: &mut Diags, path: &FieldPath, r: &HTTPRoute) {
    let mut current = r
        .rewrite
        .as_ref()
        .and_then(|rw| rw.authority.clone())
        .filter(|a| !a.is_empty());
    let Some(req) = r.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    for (field, map) in [("set", &req.set), ("add", &req.add)] {
        for (name, value) in map.iter().filter(|(k, _)| is_authority_header(k)) {
            if let Some(have) = &current {
                error(
                    out,
                    path.field("headers").field("request").field(field).key(name),
                    format!("authority header cannot be set multiple times: have {have:?}, attempting to set {value:?}; keep only one"),
                );
                return;
            }
            current = Some(value.clone());
        }
    }
}

fn check_cors(out: &mut Diags, path: &FieldPath, c: &CorsPolicy) {
    for (i, origin) in c.allow_origins.iter().enumerate() {
        let p = path.field("allowOrigins").index(i);
        let value = origin
            .exact
            .as_deref()
            .or(origin.prefix.as_deref())
            .or(origin.regex.as_deref());
        if value.is_none_or(str::is_empty) {
            error(
                out,
                p,
                "an allowOrigins entry needs a non-empty exact, prefix or regex",
            );
        } else {
            check_string_match(out, &p, origin, false);
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            error(
                out,
                path.field("allowMethods").index(i),
                format!(
                    "{m:?} is not a supported HTTP method: use one of {} (upper case)",
                    CORS_METHODS.join(", ")
                ),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, name) in list.iter().enumerate() {
            if name != "*" && !names::is_header_name(name) {
                error(
                    out,
                    path.field(field).index(i),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
    }
    if let Some(max_age) = &c.max_age {
        if let Ok(d) = parse_duration(max_age) {
            if d.subsec_nanos() != 0 {
                error(
                    out,
                    path.field("maxAge"),
                    format!(
                        "maxAge {max_age:?} must be whole seconds: browsers read it in seconds"
                    ),
                );
            }
        }
    }
}

/// Envoy's fractional percent: 0, or between 0.0001 and 100.
fn check_percentage(out: &mut Diags, path: FieldPath, p: Option<&Percent>) {
    let Some(v) = p.and_then(|p| p.value) else {
        return;
    };
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
        error(
            out,
            path,
            format!("percentage {v} must be 0 or between 0.0001 and 100"),
        );
    }
}

fn check_fault(out: &mut Diags, path: &FieldPath, f: &HTTPFaultInjection) {
    if f.abort.is_none() && f.delay.is_none() {
        error(
            out,
            path.clone(),
            "fault injection needs an abort and/or a delay",
        );
    }
    if let Some(a) = &f.abort {
        let p = path.field("abort");
        check_percentage(out, p.field("percentage"), a.percentage.as_ref());
        let kinds = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            error(
                out,
                p.clone(),
                "set only one of httpStatus, grpcStatus or http2Error",
            );
        }
        if let Some(status) = a.http_status {
            if !(200..=599).contains(&status) {
                error(
                    out,
                    p.field("httpStatus"),
                    format!("HTTP status {status} is not in range 200-599"),
                );
            }
        } else if let Some(code) = &a.grpc_status {
            if !GRPC_CODES.contains(&code.as_str()) {
                error(
                    out,
                    p.field("grpcStatus"),
                    format!("gRPC status {code:?} is not supported: use a code name such as NOT_FOUND or UNAVAILABLE (see https://github.com/grpc/grpc/blob/master/doc/statuscodes.md)"),
                );
            }
        } else if a.http2_error.is_some() {
            error(
                out,
                p.field("http2Error"),
                "HTTP/2 error abort injection is not supported: use httpStatus or grpcStatus",
            );
        } else {
            warn(
                out,
                p,
                "abort is configured without httpStatus or grpcStatus, so nothing is injected",
            );
        }
    }
    if let Some(d) = &f.delay {
        let p = path.field("delay");
        check_percentage(out, p.field("percentage"), d.percentage.as_ref());
        if let Some(pct) = d.percent {
            if !(0..=100).contains(&pct) {
                error(
                    out,
                    p.field("percent"),
                    format!("percent {pct} is not in range 0..100"),
                );
            }
        }
        if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
            error(
                out,
                p.clone(),
                "set only one of fixedDelay or exponentialDelay",
            );
        }
        if d.exponential_delay.is_some() {
            error(
                out,
                p.field("exponentialDelay"),
                "exponentialDelay is not supported: use fixedDelay",
            );
        } else if d.fixed_delay.is_none() {
            warn(
                out,
                p.clone(),
                "delay has no fixedDelay, so no delay is injected",
            );
        }
        check_duration_ms(out, p.field("fixedDelay"), d.fixed_delay.as_ref());
    }
}

fn check_mirrors(out: &mut Diags, path: &FieldPath, r: &HTTPRoute) {
    for (field, v) in [
        ("mirrorPercent", r.mirror_percent),
        ("mirror_percent", r.mirror_percent_snake),
    ] {
        let Some(v) = v else { continue };
        if v > 100 {
            error(
                out,
                path.field(field),
                format!("{field} must be at most 100 (got {v})"),
            );
        }
        warn(
            out,
            path.field(field),
            format!("{field} is deprecated: use mirrorPercentage (value: {v}.0)"),
        );
    }
    if let Some(v) = r.mirror_percentage.as_ref().and_then(|p| p.value) {
        if !(0.0..=100.0).contains(&v) {
            error(
                out,
                path.field("mirrorPercentage").field("value"),
                format!("mirrorPercentage must be between 0 and 100 (got {v})"),
            );
        }
    }
    if let Some(m) = &r.mirror {
        check_destination(out, &path.field("mirror"), m);
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let p = path.field("mirrors").index(i);
        match &m.destination {
            Some(d) => check_destination(out, &p.field("destination"), d),
            None => error(
                out,
                p.field("destination"),
                "destination is required for mirrors",
            ),
        }
        if let Some(v) = m.percentage.as_ref().and_then(|p| p.value) {
            if !(0.0..=100.0).contains(&v) {
                error(
                    out,
                    p.field("percentage").field("value"),
                    format!("mirror percentage must be between 0 and 100 (got {v})"),
                );
            }
        }
    }
}

fn check_redirect(
    out: &mut Diags,
    path: &FieldPath,
    rd: &HTTPRedirect,
    matches: &[HTTPMatchRequest],
) {
    let uri = rd.uri.as_deref().filter(|s| !s.is_empty());
    let prefix = rd.prefix_rewrite.as_deref().filter(|s| !s.is_empty());
    if uri.is_some() && prefix.is_some() {
        error(
            out,
            path.clone(),
            "redirect may only specify one of uri or prefixRewrite",
        );
    }
    if prefix.is_some()
        && matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        error(
            out,
            path.field("prefixRewrite"),
            "redirect prefixRewrite requires every uri match of the route to be a prefix match",
        );
    }
    let authority = rd.authority.as_deref().is_some_and(|s| !s.is_empty());
    let scheme = rd.scheme.as_deref().filter(|s| !s.is_empty());
    if uri.is_none()
        && prefix.is_none()
        && !authority
        && scheme.is_none()
        && rd.port.is_none()
        && rd.derive_port.is_none()
    {
        error(
            out,
            path.clone(),
            "redirect must specify uri, prefixRewrite, authority, scheme, port or derivePort",
        );
    }
    if let Some(code) = rd.redirect_code.filter(|c| *c != 0) {
        if !REDIRECT_CODES.contains(&code) {
            error(
                out,
                path.field("redirectCode"),
                format!("redirect code {code} is not supported: use 301, 302, 303, 307 or 308"),
            );
        }
    }
    if let Some(s) = scheme {
        if s != "http" && s != "https" {
            error(
                out,
                path.field("scheme"),
                format!("invalid redirect scheme {s:?}: use \"http\" or \"https\""),
            );
        }
    }
    if rd.port.is_some() && rd.derive_port.is_some() {
        error(
            out,
            path.clone(),
            "redirect may only specify one of port or derivePort",
        );
    }
    if let Some(port) = rd.port.filter(|p| *p > 0) {
        check_port(out, path.field("port"), port);
    }
}

fn check_direct_response(out: &mut Diags, path: &FieldPath, d: &HTTPDirectResponse) {
    if let Some(body) = &d.body {
        let p = path.field("body");
        if body.string.is_some() && body.bytes.is_some() {
            error(out, p.clone(), "set only one of string or bytes");
        }
        // bytes is base64 in YAML: 4 characters carry 3 bytes.
        let size = match (&body.string, &body.bytes) {
            (Some(s), _) => s.len(),
            (None, Some(b)) => b.len() / 4 * 3,
            (None, None) => 0,
        };
        if size > BODY_MAX_BYTES {
            error(
                out,
                p,
                "direct response body must be less than 1MB: every proxy keeps it in memory",
            );
        } else if size > BODY_WARN_BYTES {
            warn(out, p, "large direct response bodies (over 100KB) cost memory in every proxy and control-plane push time");
        }
    }
    let status = d.status.unwrap_or(0);
    if !(200..=599).contains(&status) {
        error(
            out,
            path.field("status"),
            format!("HTTP status {status} is not in range 200-599"),
        );
    }
}

fn check_retries(out: &mut Diags, path: &FieldPath, r: &HTTPRetry) {
    let attempts = r.attempts.unwrap_or(0);
    if attempts < 0 {
        error(
            out,
            path.field("attempts"),
            format!("attempts cannot be negative (got {attempts})"),
        );
    }
    let configured = r.per_try_timeout.is_some()
        || r.retry_on.as_deref().is_some_and(|s| !s.is_empty())
        || r.retry_remote_localities.is_some();
    if attempts == 0 && configured {
        error(
            out,
            path.clone(),
            "retry policy is configured but attempts is 0, which disables retries: set attempts to 1 or more, or remove the policy",
        );
    }
    check_duration_ms(out, path.field("perTryTimeout"), r.per_try_timeout.as_ref());
    check_duration_ms(out, path.field("backoff"), r.backoff.as_ref());
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.is_empty()) {
        for policy in on.split(',') {
            let status_code = policy
                .parse::<u16>()
                .is_ok_and(|c| (100..=599).contains(&c));
            if !status_code && !RETRY_ON.contains(&policy) {
                error(
                    out,
                    path.field("retryOn"),
                    format!(
                        "{policy:?} is not a valid retryOn policy: use comma-separated values without spaces from {}, or HTTP status codes",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

fn check_rewrite(out: &mut Diags, path: &FieldPath, rw: &HTTPRewrite) {
    let uri = rw.uri.as_deref().is_some_and(|s| !s.is_empty());
    let authority = rw.authority.as_deref().is_some_and(|s| !s.is_empty());
    if uri && rw.uri_regex_rewrite.is_some() {
        error(
            out,
            path.clone(),
            "rewrite may only contain one of uri or uriRegexRewrite",
        );
    }
    if !uri && rw.uri_regex_rewrite.is_none() && !authority {
        error(
            out,
            path.clone(),
            "rewrite must specify at least one of uri, uriRegexRewrite or authority",
        );
    }
    if let Some(re) = &rw.uri_regex_rewrite {
        let p = path.field("uriRegexRewrite");
        let m = re.r#match.as_deref().unwrap_or("");
        let to = re.rewrite.as_deref().unwrap_or("");
        if m.is_empty() || to.is_empty() {
            error(
                out,
                p.clone(),
                "uriRegexRewrite requires both match and rewrite",
            );
        }
        if !m.is_empty() {
            if let Err(e) = check_re2(m) {
                error(out, p.field("match"), e);
            }
        }
    }
}

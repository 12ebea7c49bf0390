//! Semantic checks of a mesh config (the enum values were checked while reading).
//!
//! Errors are what istiod refuses; warnings are mistakes istiod accepts silently
//! (a default provider that names nothing, a provider of the wrong kind).

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    ExtensionProvider, HttpRetry, LocalityLbSetting, LogFormat, MeshConfig, Provider, ProxyConfig,
    BUILTIN_PROVIDERS,
};
use crate::duration::parse_duration;
use crate::names::{check_namespaced_host, check_wildcard_domain, is_k8s_label_name};
use crate::{Diagnostic, FieldPath};

use crate::validate::RETRY_ON;

#[derive(Clone, Copy, PartialEq)]
enum Min {
    /// Zero allowed (`protocolDetectionTimeout: 0s` disables the timeout).
    Zero,
    /// At least 1ms, the finest granularity Istio passes on.
    Millisecond,
}

struct Checker {
    out: Vec<Diagnostic>,
}

impl Checker {
    fn error(&mut self, path: FieldPath, msg: impl Into<String>) {
        self.out.push(Diagnostic::error(path, msg));
    }

    fn warn(&mut self, path: FieldPath, msg: impl Into<String>) {
        self.out.push(Diagnostic::warning(path, msg));
    }

    fn duration(&mut self, value: Option<&str>, path: FieldPath, min: Min) {
        let Some(text) = value else { return };
        match parse_duration(text) {
            Err(e) => self.error(path, e.to_string()),
            Ok(d) if min == Min::Millisecond && d < Duration::from_millis(1) => {
                self.error(path, format!("duration {text:?} must be at least 1ms"))
            }
            Ok(_) => {}
        }
    }

    fn port(&mut self, value: Option<i64>, path: FieldPath, zero_ok: bool) {
        match value {
            None => {}
            Some(0) if zero_ok => {}
            Some(p) if !(1..=65535).contains(&p) => self.error(
                path,
                format!("port number {p} must be in the range 1..65535"),
            ),
            Some(_) => {}
        }
    }
}

/// Checks `mesh` as written (validate before [`MeshConfig::effective`], so findings
/// point at what the user wrote). `path` prefixes every finding (root for `mesh.yaml`,
/// `data.mesh` for a ConfigMap).
pub fn validate_mesh_config(mesh: &MeshConfig, path: &FieldPath) -> Vec<Diagnostic> {
    let mut c = Checker { out: Vec::new() };
    let p = |f: &str| path.field(f);

    c.port(
        mesh.proxy_listen_port.map(i64::from),
        p("proxyListenPort"),
        false,
    );
    c.port(
        mesh.proxy_inbound_listen_port.map(i64::from),
        p("proxyInboundListenPort"),
        true,
    );
    c.port(
        mesh.proxy_http_port.map(i64::from),
        p("proxyHttpPort"),
        true,
    );
    c.duration(
        mesh.connect_timeout.as_deref(),
        p("connectTimeout"),
        Min::Millisecond,
    );
    c.duration(
        mesh.hbone_idle_timeout.as_deref(),
        p("hboneIdleTimeout"),
        Min::Zero,
    );
    c.duration(
        mesh.protocol_detection_timeout.as_deref(),
        p("protocolDetectionTimeout"),
        Min::Zero,
    );
    c.duration(
        mesh.dns_refresh_rate.as_deref(),
        p("dnsRefreshRate"),
        Min::Millisecond,
    );
    if let Some(ka) = &mesh.tcp_keepalive {
        c.duration(
            ka.time.as_deref(),
            p("tcpKeepalive").field("time"),
            Min::Millisecond,
        );
        c.duration(
            ka.interval.as_deref(),
            p("tcpKeepalive").field("interval"),
            Min::Millisecond,
        );
    }
    if let Some(ca) = &mesh.ca {
        c.duration(
            ca.request_timeout.as_deref(),
            p("ca").field("requestTimeout"),
            Min::Millisecond,
        );
        if ca.address.is_empty() {
            c.error(p("ca").field("address"), "required when `ca` is set");
        }
    }

    if let Some(td) = &mesh.trust_domain {
        check_trust_domain(&mut c, td, p("trustDomain"));
    }
    for (i, td) in mesh.trust_domain_aliases.iter().enumerate() {
        check_trust_domain(&mut c, td, p("trustDomainAliases").index(i));
    }
    if let Some(ns) = mesh
        .root_namespace
        .as_deref()
        .filter(|ns| !is_k8s_label_name(ns))
    {
        c.error(
            p("rootNamespace"),
            format!("{ns:?} is not a valid namespace name"),
        );
    }
    for field in [
        "defaultServiceExportTo",
        "defaultVirtualServiceExportTo",
        "defaultDestinationRuleExportTo",
    ] {
        let list = match field {
            "defaultServiceExportTo" => &mesh.default_service_export_to,
            "defaultVirtualServiceExportTo" => &mesh.default_virtual_service_export_to,
            _ => &mesh.default_destination_rule_export_to,
        };
        check_export_to(&mut c, list, p(field));
    }

    if mesh.access_log_encoding == Some(super::AccessLogEncoding::Json) {
        if let Some(fmt) = mesh
            .access_log_format
            .as_deref()
            .filter(|f| !f.trim().is_empty())
        {
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(fmt).is_err() {
                c.error(
                    p("accessLogFormat"),
                    "with accessLogEncoding JSON the format must be a JSON object of field name to %COMMAND%",
                );
            }
        }
    }

    if let Some(pc) = &mesh.default_config {
        check_proxy_config(&mut c, pc, &p("defaultConfig"));
    }
    if let Some(lb) = &mesh.locality_lb_setting {
        check_locality(&mut c, lb, &p("localityLbSetting"));
    }
    if let Some(retry) = &mesh.default_http_retry_policy {
        check_retry(&mut c, retry, &p("defaultHttpRetryPolicy"));
    }
    for (i, s) in mesh.service_settings.iter().enumerate() {
        for (j, host) in s.hosts.iter().enumerate() {
            if let Err(e) = check_wildcard_domain(host) {
                c.error(p("serviceSettings").index(i).field("hosts").index(j), e);
            }
        }
    }
    for (i, cert) in mesh.ca_certificates.iter().enumerate() {
        if cert.pem.is_some() == cert.spiffe_bundle_url.is_some() {
            c.error(
                p("caCertificates").index(i),
                "exactly one of `pem` and `spiffeBundleUrl` must be set",
            );
        }
    }
    check_providers(&mut c, mesh, path);
    c.out
}

fn check_trust_domain(c: &mut Checker, td: &str, path: FieldPath) {
    if td.is_empty() {
        c.error(path, "trust domain must not be empty");
    } else if !td
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        c.error(
            path,
            format!("trust domain {td:?} may only contain letters, digits, '.', '-' and '_'"),
        );
    }
}

fn check_export_to(c: &mut Checker, list: &[String], path: FieldPath) {
    for (i, v) in list.iter().enumerate() {
        let ok = matches!(v.as_str(), "*" | "." | "~") || is_k8s_label_name(v);
        if !ok {
            c.error(
                path.index(i),
                format!("{v:?} must be '*', '.', '~' or a namespace name"),
            );
        }
    }
    if list.len() > 1 && list.iter().any(|v| v == "*") {
        c.error(
            path,
            "'*' (everywhere) cannot be combined with other values",
        );
    }
}

fn check_proxy_config(c: &mut Checker, pc: &ProxyConfig, path: &FieldPath) {
    let p = |f: &str| path.field(f);
    c.duration(
        pc.drain_duration.as_deref(),
        p("drainDuration"),
        Min::Millisecond,
    );
    c.duration(
        pc.termination_drain_duration.as_deref(),
        p("terminationDrainDuration"),
        Min::Zero,
    );
    c.duration(
        pc.discovery_refresh_delay.as_deref(),
        p("discoveryRefreshDelay"),
        Min::Millisecond,
    );
    c.duration(
        pc.file_flush_interval.as_deref(),
        p("fileFlushInterval"),
        Min::Millisecond,
    );
    c.port(
        pc.proxy_admin_port.map(i64::from),
        p("proxyAdminPort"),
        false,
    );
    c.port(pc.status_port.map(i64::from), p("statusPort"), false);
    if let Some(n) = pc.concurrency.filter(|n| *n < 0) {
        c.error(
            p("concurrency"),
            format!("must not be negative (got {n}); 0 means one worker per CPU"),
        );
    }
    if let Some(addr) = &pc.discovery_address {
        if let Err(e) = check_host_port(addr) {
            c.error(p("discoveryAddress"), e);
        }
    }
    if let Some(t) = &pc.tracing {
        if let Some(s) = t.sampling.filter(|s| !(0.0..=100.0).contains(s)) {
            c.error(
                p("tracing").field("sampling"),
                format!("must be between 0.0 and 100.0 (got {s})"),
            );
        }
        let tracers = [
            t.zipkin.is_some(),
            t.lightstep.is_some(),
            t.datadog.is_some(),
            t.stackdriver.is_some(),
            t.open_census_agent.is_some(),
        ];
        if tracers.iter().filter(|x| **x).count() > 1 {
            c.error(p("tracing"), "at most one tracer (zipkin, lightstep, datadog, stackdriver, openCensusAgent) may be set");
        }
    }
    if let Some(m) = &pc.proxy_stats_matcher {
        for (i, re) in m.inclusion_regexps.iter().enumerate() {
            if let Err(e) = regex::Regex::new(re) {
                c.error(
                    p("proxyStatsMatcher").field("inclusionRegexps").index(i),
                    format!("invalid regular expression: {e}"),
                );
            }
        }
    }
}

/// `host:port` (IPv6 hosts in brackets), as Istio wants for `discoveryAddress`.
fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} must be host:port"));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("{addr:?}: host must not be empty"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => {}
        _ => {
            return Err(format!(
                "{addr:?}: port {port:?} must be a number in the range 1..65535"
            ))
        }
    }
    if crate::names::is_ip(host) {
        return Ok(());
    }
    crate::names::check_fqdn(host).map_err(|e| format!("{addr:?}: {e}"))
}

/// A locality is `region[/zone[/subzone]]`; `*` may stand for a whole trailing segment.
fn check_locality_name(loc: &str) -> Result<(), String> {
    let parts: Vec<&str> = loc.split('/').collect();
    if loc.is_empty() || parts.len() > 3 {
        return Err(format!("locality {loc:?} must be region[/zone[/subzone]]"));
    }
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(format!("locality {loc:?} has an empty segment"));
        }
        if part.contains('*') && (*part != "*" || i != parts.len() - 1) {
            return Err(format!(
                "locality {loc:?}: '*' may only be a whole, last segment"
            ));
        }
    }
    Ok(())
}

fn check_locality(c: &mut Checker, lb: &LocalityLbSetting, path: &FieldPath) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        c.error(
            path.clone(),
            "`distribute` and `failover` cannot both be set",
        );
    }
    for (i, d) in lb.distribute.iter().enumerate() {
        let dp = path.field("distribute").index(i);
        if let Err(e) = check_locality_name(&d.from) {
            c.error(dp.field("from"), e);
        }
        for loc in d.to.keys() {
            if let Err(e) = check_locality_name(loc) {
                c.error(dp.field("to").key(loc), e);
            }
        }
        let total: u64 = d.to.values().map(|w| u64::from(*w)).sum();
        if total != 100 {
            c.error(
                dp.field("to"),
                format!("weights must add up to 100 (got {total})"),
            );
        }
    }
    for (i, f) in lb.failover.iter().enumerate() {
        let fp = path.field("failover").index(i);
        if f.from == f.to {
            c.error(
                fp.clone(),
                format!("`from` and `to` must differ (both {:?})", f.from),
            );
        }
        for (field, v) in [("from", &f.from), ("to", &f.to)] {
            if v.is_empty() || v.contains('*') || v.contains('/') {
                c.error(
                    fp.field(field),
                    format!("{v:?} must be a region name (no '/' or '*')"),
                );
            }
        }
    }
    for (i, label) in lb.failover_priority.iter().enumerate() {
        if label.trim().is_empty() {
            c.error(path.field("failoverPriority").index(i), "must not be empty");
        }
    }
}

fn check_retry(c: &mut Checker, r: &HttpRetry, path: &FieldPath) {
    if let Some(n) = r.attempts.filter(|n| *n < 0) {
        c.error(
            path.field("attempts"),
            format!("must not be negative (got {n})"),
        );
    }
    c.duration(
        r.per_try_timeout.as_deref(),
        path.field("perTryTimeout"),
        Min::Millisecond,
    );
    c.duration(
        r.backoff.as_deref(),
        path.field("backoff"),
        Min::Millisecond,
    );
    if let Some(on) = &r.retry_on {
        for token in on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let status = token.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s));
            if !status && !RETRY_ON.contains(&token) {
                c.error(
                    path.field("retryOn"),
                    format!(
                        "{token:?} is neither a retry condition ({}) nor an HTTP status code",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

/// Which `defaultProviders` list a provider kind can serve.
fn serves(p: &Provider<'_>, list: &str) -> bool {
    match list {
        "tracing" => matches!(
            p,
            Provider::Zipkin(_)
                | Provider::Lightstep(_)
                | Provider::Datadog(_)
                | Provider::Stackdriver(_)
                | Provider::OpenCensus(_)
                | Provider::SkyWalking(_)
                | Provider::OpenTelemetry(_)
        ),
        "metrics" => matches!(
            p,
            Provider::Prometheus(_) | Provider::Stackdriver(_) | Provider::Statsd(_)
        ),
        _ => matches!(
            p,
            Provider::EnvoyFileAccessLog(_)
                | Provider::EnvoyHttpAls(_)
                | Provider::EnvoyTcpAls(_)
                | Provider::EnvoyOtelAls(_)
                | Provider::Stackdriver(_)
        ),
    }
}

fn check_providers(c: &mut Checker, mesh: &MeshConfig, path: &FieldPath) {
    let base = path.field("extensionProviders");
    let mut names = BTreeSet::new();
    for (i, ep) in mesh.extension_providers.iter().enumerate() {
        let pp = base.index(i);
        if ep.name.is_empty() {
            c.error(pp.field("name"), "required");
        } else if !names.insert(ep.name.as_str()) {
            c.error(
                pp.field("name"),
                format!("duplicate extension provider name {:?}", ep.name),
            );
        }
        check_provider(c, ep, &pp);
    }
    let Some(dp) = &mesh.default_providers else {
        return;
    };
    for (list_name, list) in [
        ("tracing", &dp.tracing),
        ("metrics", &dp.metrics),
        ("accessLogging", &dp.access_logging),
    ] {
        for (i, name) in list.iter().enumerate() {
            let lp = path.field("defaultProviders").field(list_name).index(i);
            let defined = mesh.extension_providers.iter().find(|p| &p.name == name);
            match defined.and_then(ExtensionProvider::provider) {
                Some(prov) if !serves(&prov, list_name) => c.warn(
                    lp,
                    format!("extension provider {name:?} cannot serve {list_name} (it is a {} provider)", ep_kind(defined)),
                ),
                Some(_) => {}
                // Badly formed providers were reported above.
                None if defined.is_some() => {}
                None if BUILTIN_PROVIDERS.contains(&name.as_str()) => {}
                None => c.warn(
                    lp,
                    format!(
                        "no extension provider named {name:?} (defined: {})",
                        mesh.extension_providers
                            .iter()
                            .map(|p| p.name.as_str())
                            .chain(BUILTIN_PROVIDERS)
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
    }
}

fn ep_kind(ep: Option<&ExtensionProvider>) -> &'static str {
    ep.and_then(|e| e.providers().first().map(|(k, _)| *k))
        .unwrap_or("unknown")
}

fn check_provider(c: &mut Checker, ep: &ExtensionProvider, path: &FieldPath) {
    let set = ep.providers();
    let (kind, prov) = match set.as_slice() {
        [] => {
            c.error(path.clone(), "exactly one provider (envoyExtAuthzHttp, zipkin, prometheus, ...) must be set; none is");
            return;
        }
        [one] => *one,
        many => {
            let kinds: Vec<_> = many.iter().map(|(k, _)| *k).collect();
            c.error(
                path.clone(),
                format!(
                    "exactly one provider must be set; found {}",
                    kinds.join(", ")
                ),
            );
            return;
        }
    };
    let pp = path.field(kind);
    if let Some((service, port)) = prov.endpoint() {
        if service.is_empty() {
            c.error(pp.field("service"), "required");
        } else if let Err(e) = check_namespaced_host(service, false, false) {
            c.error(pp.field("service"), e);
        }
        let port_optional = matches!(prov, Provider::Statsd(_));
        match port {
            None | Some(0) if !port_optional => c.error(pp.field("port"), "required"),
            _ => c.port(port.map(i64::from), pp.field("port"), port_optional),
        }
    }
    match prov {
        Provider::EnvoyExtAuthzHttp(h) => {
            c.duration(h.timeout.as_deref(), pp.field("timeout"), Min::Millisecond);
            check_status(c, h.status_on_error.as_deref(), pp.field("statusOnError"));
            if let Some(prefix) = h.path_prefix.as_deref().filter(|p| !p.starts_with('/')) {
                c.error(
                    pp.field("pathPrefix"),
                    format!("{prefix:?} must start with '/'"),
                );
            }
        }
        Provider::EnvoyExtAuthzGrpc(g) => {
            c.duration(g.timeout.as_deref(), pp.field("timeout"), Min::Millisecond);
            check_status(c, g.status_on_error.as_deref(), pp.field("statusOnError"));
        }
        Provider::Zipkin(z) => {
            c.duration(z.timeout.as_deref(), pp.field("timeout"), Min::Millisecond)
        }
        Provider::OpenTelemetry(o) => {
            if let Some(h) = &o.http {
                c.duration(
                    h.timeout.as_deref(),
                    pp.field("http").field("timeout"),
                    Min::Millisecond,
                );
            }
            if let Some(g) = &o.grpc {
                c.duration(
                    g.timeout.as_deref(),
                    pp.field("grpc").field("timeout"),
                    Min::Millisecond,
                );
            }
        }
        Provider::EnvoyFileAccessLog(f) => {
            check_log_format(c, f.log_format.as_ref(), pp.field("logFormat"))
        }
        Provider::EnvoyOtelAls(o) => {
            check_log_format(c, o.log_format.as_ref(), pp.field("logFormat"))
        }
        _ => {}
    }
}

fn check_status(c: &mut Checker, status: Option<&str>, path: FieldPath) {
    let Some(s) = status.filter(|s| !s.is_empty()) else {
        return;
    };
    if !s
        .parse::<u16>()
        .is_ok_and(|code| (100..=599).contains(&code))
    {
        c.error(path, format!("{s:?} is not an HTTP status code (100..599)"));
    }
}

fn check_log_format(c: &mut Checker, f: Option<&LogFormat>, path: FieldPath) {
    if let Some(f) = f {
        if f.text.is_some() && f.labels.is_some() {
            c.error(path, "`text` and `labels` cannot both be set");
        }
    }
}

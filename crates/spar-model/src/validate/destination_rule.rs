//! Webhook rules for `DestinationRule`: host, subsets, `exportTo`, and the traffic
//! policy (load balancing, locality, outlier detection, connection pool, TLS), which
//! may appear at the top, per subset and per port.

use std::collections::BTreeSet;

use super::common::{
    check_connection_pool, check_duration_ms, check_export_to, check_labels, check_port,
    check_selector, check_subset_name, error, fqdn, warn, wildcard_domain, Diags,
};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{
    ClientTLSMode, ClientTLSSettings, ConnectionPoolSettings, ConsistentHashLB, DestinationRule,
    LoadBalancerSettings, LocalityFailover, LocalityLoadBalancerSetting, OutlierDetection,
    PortTrafficPolicy, TrafficPolicy, TunnelSettings, ZoneAwareLoadBalancerSetting,
};
use crate::names;
use crate::FieldPath;

/// Maglev tables must be prime and below this (Envoy's limit).
const MAGLEV_MAX_TABLE: u64 = 5_000_011;

/// Topology labels that `failover` already orders by.
const TOPOLOGY_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

pub fn check(spec: &DestinationRule, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    if let Some(host) = &spec.host {
        if let Err(e) = wildcard_domain(host) {
            error(&mut out, root.field("host"), e);
        }
    }
    if let Some(tp) = &spec.traffic_policy {
        check_policy(&mut out, &root.field("trafficPolicy"), tp, ctx.namespace);
    }
    let mut subset_names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let p = root.field("subsets").index(i);
        if let Some(name) = &subset.name {
            if !subset_names.insert(name.as_str()) {
                error(
                    &mut out,
                    p.field("name"),
                    format!("duplicate subset name {name:?}"),
                );
            }
            check_subset_name(&mut out, p.field("name"), name);
        }
        check_labels(&mut out, &p.field("labels"), &subset.labels);
        if let Some(tp) = &subset.traffic_policy {
            check_policy(&mut out, &p.field("trafficPolicy"), tp, ctx.namespace);
        }
    }
    let export = check_export_to(
        &mut out,
        &root.field("exportTo"),
        ctx.namespace,
        &spec.export_to,
        false,
    );
    if let Some(sel) = &spec.workload_selector {
        // A selector picks client workloads in this namespace; exporting the rule
        // elsewhere would apply it to workloads it was never meant for.
        if !export.is_empty() && (!export.contains(ctx.namespace) || export.len() > 1) {
            error(
                &mut out,
                root.field("exportTo"),
                "a DestinationRule with workloadSelector can only be exported to its own namespace: use exportTo: [\".\"] or remove exportTo",
            );
        }
        check_selector(
            &mut out,
            &root.field("workloadSelector").field("matchLabels"),
            &sel.match_labels,
            "DestinationRule",
        );
    }
    out
}

fn check_policy(out: &mut Diags, path: &FieldPath, tp: &TrafficPolicy, namespace: &str) {
    let empty = tp.connection_pool.is_none()
        && tp.load_balancer.is_none()
        && tp.outlier_detection.is_none()
        && tp.port_level_settings.is_empty()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
        && tp.tls.is_none()
        && tp.tunnel.is_none();
    if empty {
        error(
            out,
            path.clone(),
            "trafficPolicy must set at least one field: remove it if there is nothing to configure",
        );
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        error(
            out,
            path.clone(),
            "tunnel and proxyProtocol cannot be set together",
        );
        return;
    }
    check_policy_parts(
        out,
        path,
        tp.outlier_detection.as_ref(),
        tp.connection_pool.as_ref(),
        tp.load_balancer.as_ref(),
        tp.tls.as_ref(),
        namespace,
    );
    check_port_policies(
        out,
        &path.field("portLevelSettings"),
        &tp.port_level_settings,
        namespace,
    );
    if let Some(t) = &tp.tunnel {
        check_tunnel(out, &path.field("tunnel"), t);
    }
}

fn check_policy_parts(
    out: &mut Diags,
    path: &FieldPath,
    outlier: Option<&OutlierDetection>,
    pool: Option<&ConnectionPoolSettings>,
    lb: Option<&LoadBalancerSettings>,
    tls: Option<&ClientTLSSettings>,
    namespace: &str,
) {
    if let Some(o) = outlier {
        check_outlier(out, &path.field("outlierDetection"), o);
    }
    if let Some(c) = pool {
        check_connection_pool(out, &path.field("connectionPool"), c);
    }
    if let Some(lb) = lb {
        check_load_balancer(out, &path.field("loadBalancer"), lb, outlier.is_some());
    }
    if let Some(t) = tls {
        check_tls(out, &path.field("tls"), t, namespace);
    }
}

fn check_port_policies(
    out: &mut Diags,
    path: &FieldPath,
    policies: &[PortTrafficPolicy],
    namespace: &str,
) {
    let mut ports = BTreeSet::new();
    for (i, pp) in policies.iter().enumerate() {
        let p = path.index(i);
        match pp.port.as_ref() {
            None => error(
                out,
                p.field("port"),
                "each portLevelSettings entry needs a port, e.g. port: {number: 8080}",
            ),
            Some(port) => {
                let n = port.number.unwrap_or(0);
                check_port(out, p.field("port").field("number"), n);
                if !ports.insert(n) {
                    error(out, p.field("port").field("number"), format!("port {n} already has settings earlier in portLevelSettings: merge them"));
                }
            }
        }
        if pp.connection_pool.is_none()
            && pp.load_balancer.is_none()
            && pp.outlier_detection.is_none()
            && pp.tls.is_none()
        {
            error(out, p, "a portLevelSettings entry must set at least one of connectionPool, loadBalancer, outlierDetection or tls");
            continue;
        }
        check_policy_parts(
            out,
            &p,
            pp.outlier_detection.as_ref(),
            pp.connection_pool.as_ref(),
            pp.load_balancer.as_ref(),
            pp.tls.as_ref(),
            namespace,
        );
    }
}

fn check_tunnel(out: &mut Diags, path: &FieldPath, t: &TunnelSettings) {
    if let Some(proto) = t.protocol.as_deref().filter(|p| !p.is_empty()) {
        if proto != "CONNECT" && proto != "POST" {
            error(
                out,
                path.field("protocol"),
                format!("tunnel protocol {proto:?} is not supported: use CONNECT or POST"),
            );
        }
    }
    let host = t.target_host.as_deref().unwrap_or("");
    if fqdn(host).is_err() && !names::is_ip(host) {
        error(
            out,
            path.field("targetHost"),
            format!(
                "tunnel targetHost {host:?} must be a fully qualified domain name or an IP address"
            ),
        );
    }
    check_port(out, path.field("targetPort"), t.target_port.unwrap_or(0));
}

fn check_outlier(out: &mut Diags, path: &FieldPath, o: &OutlierDetection) {
    check_duration_ms(
        out,
        path.field("baseEjectionTime"),
        o.base_ejection_time.as_ref(),
    );
    check_duration_ms(out, path.field("interval"), o.interval.as_ref());
    if o.consecutive_errors.is_some_and(|e| e != 0) {
        warn(
            out,
            path.field("consecutiveErrors"),
            "consecutiveErrors is deprecated: use consecutiveGatewayErrors or consecutive5xxErrors",
        );
    }
    if o.consecutive_local_origin_failures.is_some_and(|n| n > 0)
        && o.split_external_local_origin_errors != Some(true)
    {
        error(
            out,
            path.field("consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures only counts when splitExternalLocalOriginErrors is true: set it, or remove this field",
        );
    }
    for (field, v) in [
        ("maxEjectionPercent", o.max_ejection_percent),
        ("minHealthPercent", o.min_health_percent),
    ] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            error(
                out,
                path.field(field),
                format!("percentage {v} is not in range 0..100"),
            );
        }
    }
}

fn check_load_balancer(
    out: &mut Diags,
    path: &FieldPath,
    lb: &LoadBalancerSettings,
    has_outlier: bool,
) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        error(
            out,
            path.clone(),
            "set only one of simple or consistentHash",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        check_consistent_hash(out, &path.field("consistentHash"), ch);
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        error(
            out,
            path.clone(),
            "set only one of localityLbSetting or zoneAwareLbSetting",
        );
    }
    if let Some(l) = &lb.locality_lb_setting {
        check_locality_lb(out, &path.field("localityLbSetting"), l, has_outlier);
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        check_zone_aware_lb(out, &path.field("zoneAwareLbSetting"), z, has_outlier);
    }
    if let Some(w) = &lb.warmup {
        let p = path.field("warmup");
        check_duration_ms(out, p.field("duration"), w.duration.as_ref());
        // Negative values are the schema's; 0 passes it but would stall the warmup.
        if w.aggression.is_some_and(|a| a == 0.0) {
            error(
                out,
                p.field("aggression"),
                "aggression must be greater than 0 (1.0 ramps up linearly)",
            );
        }
    }
    check_duration_ms(
        out,
        path.field("warmupDurationSecs"),
        lb.warmup_duration_secs.as_ref(),
    );
}

fn check_consistent_hash(out: &mut Diags, path: &FieldPath, ch: &ConsistentHashLB) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    match keys.iter().filter(|k| **k).count() {
        0 => warn(
            out,
            path.clone(),
            "consistentHash has no hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName), so requests are not pinned to endpoints",
        ),
        1 => {}
        _ => error(out, path.clone(), "set only one hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName"),
    }
    if let Some(cookie) = &ch.http_cookie {
        let p = path.field("httpCookie");
        if cookie.name.as_deref().unwrap_or("").is_empty() {
            error(out, p.field("name"), "httpCookie needs a name");
        }
        let mut seen = BTreeSet::new();
        for (i, attr) in cookie.attributes.iter().enumerate() {
            let name = attr.name.as_deref().unwrap_or("");
            if name.is_empty() {
                error(
                    out,
                    p.field("attributes").index(i).field("name"),
                    "cookie attribute name cannot be empty",
                );
            } else if !seen.insert(name) {
                error(
                    out,
                    p.field("attributes").index(i).field("name"),
                    format!("duplicate cookie attribute {name:?}"),
                );
            }
        }
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        error(out, path.clone(), "set only one of ringHash or maglev");
    }
    if ch.minimum_ring_size.is_some_and(|n| n != 0) {
        warn(
            out,
            path.field("minimumRingSize"),
            "minimumRingSize is deprecated: use ringHash.minimumRingSize",
        );
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            error(
                out,
                path.field("minimumRingSize"),
                "minimumRingSize cannot be combined with ringHash or maglev: move it into ringHash",
            );
        }
    }
    if let Some(m) = &ch.maglev {
        let p = path.field("maglev").field("tableSize");
        match m.table_size.unwrap_or(0) {
            0 => error(
                out,
                p,
                "maglev needs a tableSize, a prime number such as 65537",
            ),
            n if n >= MAGLEV_MAX_TABLE => error(
                out,
                p,
                format!("maglev tableSize {n} must be less than {MAGLEV_MAX_TABLE}"),
            ),
            n if !is_prime(n) => error(
                out,
                p,
                format!("maglev tableSize {n} must be a prime number (e.g. 65537)"),
            ),
            _ => {}
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut f = 3;
    while f * f <= n {
        if n.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

fn check_locality_lb(
    out: &mut Diags,
    path: &FieldPath,
    l: &LocalityLoadBalancerSetting,
    has_outlier: bool,
) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        error(out, path.clone(), "set only one of distribute or failover");
        return;
    }
    if !l.failover.is_empty() {
        if let Some((i, label)) = l
            .failover_priority
            .iter()
            .enumerate()
            .find(|(_, p)| TOPOLOGY_LABELS.contains(&p.as_str()))
        {
            error(
                out,
                path.field("failoverPriority").index(i),
                format!("failoverPriority cannot use the topology label {label:?} together with failover: failover already orders by region"),
            );
            return;
        }
    }
    let mut sources = Vec::new();
    for (i, d) in l.distribute.iter().enumerate() {
        let p = path.field("distribute").index(i);
        sources.push(d.from.clone().unwrap_or_default());
        let mut total: u64 = 0;
        for (loc, w) in &d.to {
            if !(1..=100).contains(w) {
                error(
                    out,
                    p.field("to").key(loc),
                    format!("locality weight {w} must be in range 1..100"),
                );
                return;
            }
            total += u64::from(*w);
        }
        if total != 100 {
            error(
                out,
                p.field("to"),
                format!("locality weights must add up to 100 (they add up to {total})"),
            );
            return;
        }
        if let Err(e) = check_localities(d.to.keys().map(String::as_str)) {
            error(out, p.field("to"), e);
        }
    }
    if let Err(e) = check_localities(sources.iter().map(String::as_str)) {
        error(out, path.field("distribute"), e);
    }
    check_failover(
        out,
        path,
        &l.failover,
        !l.failover_priority.is_empty(),
        has_outlier,
        "locality lb",
    );
}

fn check_zone_aware_lb(
    out: &mut Diags,
    path: &FieldPath,
    z: &ZoneAwareLoadBalancerSetting,
    has_outlier: bool,
) {
    for (i, label) in z.failover_priority.iter().enumerate() {
        if TOPOLOGY_LABELS.contains(&label.as_str()) {
            error(
                out,
                path.field("failoverPriority").index(i),
                format!("zone-aware failoverPriority must not use the topology label {label:?}: region and zone routing are automatic"),
            );
        }
    }
    check_failover(
        out,
        path,
        &z.failover,
        !z.failover_priority.is_empty(),
        has_outlier,
        "zone-aware lb",
    );
}

fn check_failover(
    out: &mut Diags,
    path: &FieldPath,
    failover: &[LocalityFailover],
    has_priority: bool,
    has_outlier: bool,
    what: &str,
) {
    if (!failover.is_empty() || has_priority) && !has_outlier {
        warn(
            out,
            path.clone(),
            "failover only happens when endpoints are ejected: add outlierDetection to this traffic policy",
        );
    }
    for (i, f) in failover.iter().enumerate() {
        let p = path.field("failover").index(i);
        let from = f.from.as_deref().unwrap_or("");
        let to = f.to.as_deref().unwrap_or("");
        if from == to {
            error(out, p.clone(), format!("{what} failover must go from one region to a different one (from and to are both {from:?})"));
        }
        if from.contains('/') || to.contains('/') {
            error(
                out,
                p.clone(),
                format!("{what} failover takes regions only, not region/zone"),
            );
        }
        if from.contains('*') || to.contains('*') {
            error(
                out,
                p,
                format!("{what} failover regions cannot contain the * wildcard"),
            );
        }
    }
}

/// Localities (`region/zone/subzone`, `*` only as the last character) that do not
/// overlap: `us-east` and `us-east/zone1` together would be ambiguous.
fn check_localities<'a>(localities: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen: Vec<Vec<&str>> = Vec::new();
    for loc in localities {
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(format!(
                "locality {loc:?}: the * wildcard may appear once, at the end"
            ));
        }
        let parts: Vec<&str> = loc.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "locality {loc:?} must not have an empty region, zone or subzone"
            ));
        }
        // A trailing `*` label covers everything below it, like a shorter locality.
        let key: Vec<&str> = match parts.last() {
            Some(&"*") => parts[..parts.len() - 1].to_vec(),
            _ => parts,
        };
        let covers =
            |a: &[&str], b: &[&str]| a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y);
        if seen.iter().any(|s| covers(s, &key) || covers(&key, s)) {
            return Err(format!(
                "locality {loc:?} overlaps with one listed before it"
            ));
        }
        seen.push(key);
    }
    Ok(())
}

fn check_tls(out: &mut Diags, path: &FieldPath, t: &ClientTLSSettings, namespace: &str) {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if let Some(cred) = t.credential_name.as_deref() {
        if let Some(rest) = cred.strip_prefix("configmap://") {
            match rest.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    if ns != namespace {
                        error(
                            out,
                            path.field("credentialName"),
                            format!("configmap:// credentialName must be in the DestinationRule's namespace: write configmap://{namespace}/{name}"),
                        );
                    }
                }
                _ => error(
                    out,
                    path.field("credentialName"),
                    format!(
                        "invalid credentialName {cred:?}: write configmap://<namespace>/<name>"
                    ),
                ),
            }
        }
    }
    let mode = t.mode.unwrap_or(ClientTLSMode::Disable);
    if t.insecure_skip_verify == Some(true) {
        let conflict = match mode {
            ClientTLSMode::Simple => {
                set(&t.ca_certificates)
                    || set(&t.credential_name)
                    || !t.subject_alt_names.is_empty()
            }
            ClientTLSMode::Mutual => set(&t.ca_certificates) || !t.subject_alt_names.is_empty(),
            _ => false,
        };
        if conflict {
            error(
                out,
                path.field("insecureSkipVerify"),
                "insecureSkipVerify cannot be combined with caCertificates, subjectAltNames (or, for SIMPLE, credentialName): either verify the server or don't",
            );
        }
    }
    let file_fields = [
        ("clientCertificate", &t.client_certificate),
        ("privateKey", &t.private_key),
        ("caCertificates", &t.ca_certificates),
        ("caCrl", &t.ca_crl),
    ];
    match mode {
        ClientTLSMode::Simple | ClientTLSMode::Mutual if set(&t.credential_name) => {
            for (field, v) in file_fields {
                if set(v) {
                    error(
                        out,
                        path.field(field),
                        format!("{field} cannot be set together with credentialName: the certificates come from the credential"),
                    );
                }
            }
        }
        ClientTLSMode::Mutual => {
            for (field, v) in [
                ("clientCertificate", &t.client_certificate),
                ("privateKey", &t.private_key),
            ] {
                if !set(v) {
                    error(
                        out,
                        path.field(field),
                        format!("MUTUAL TLS requires {field} (or credentialName)"),
                    );
                }
            }
        }
        ClientTLSMode::Disable | ClientTLSMode::IstioMutual => {
            let ignored: Vec<&str> = file_fields
                .iter()
                .map(|(f, v)| (*f, set(v)))
                .chain([("credentialName", set(&t.credential_name))])
                .filter_map(|(f, is_set)| is_set.then_some(f))
                .collect();
            if !ignored.is_empty() {
                let why = if mode == ClientTLSMode::Disable {
                    "TLS is disabled"
                } else {
                    "ISTIO_MUTUAL uses the mesh's own certificates"
                };
                warn(
                    out,
                    path.clone(),
                    format!("{} ignored: {why}", ignored.join(", ")),
                );
            }
        }
        ClientTLSMode::Simple => {}
    }
}

#[cfg(test)]
#[path = "destination_rule_tests.rs"]
mod tests;

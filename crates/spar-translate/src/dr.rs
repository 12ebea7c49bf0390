//! Which DestinationRule applies to a service for a proxy, and the traffic policy in
//! force for one (port, subset) after Istio's merging: a subset's policy overrides the
//! rule's top-level fields, and `portLevelSettings` for the port override both.

use spar_model::istio::types::{
    ClientTLSSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings,
    OutlierDetection, ProxyProtocol, RetryBudget, TrafficPolicy,
};
use std::collections::BTreeMap;

use spar_model::{Kind, Resource};

use crate::Ctx;

/// A DestinationRule that applies.
#[derive(Clone, Copy)]
pub struct Rule<'a> {
    pub spec: &'a DestinationRule,
}

/// The traffic policy for one cluster, each part from the most specific level that sets it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy<'a> {
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    pub outlier_detection: Option<&'a OutlierDetection>,
    pub tls: Option<&'a ClientTLSSettings>,
    /// Whole-rule or subset level only (port-level settings have none of these).
    pub retry_budget: Option<&'a RetryBudget>,
    pub proxy_protocol: Option<&'a ProxyProtocol>,
}

impl<'a> Policy<'a> {
    fn apply(&mut self, tp: &'a TrafficPolicy, port: u32) {
        self.connection_pool = tp.connection_pool.as_ref().or(self.connection_pool);
        self.load_balancer = tp.load_balancer.as_ref().or(self.load_balancer);
        self.outlier_detection = tp.outlier_detection.as_ref().or(self.outlier_detection);
        self.tls = tp.tls.as_ref().or(self.tls);
        self.retry_budget = tp.retry_budget.as_ref().or(self.retry_budget);
        self.proxy_protocol = tp.proxy_protocol.as_ref().or(self.proxy_protocol);
        let level = tp
            .port_level_settings
            .iter()
            .find(|p| p.port.as_ref().and_then(|s| s.number) == Some(port));
        if let Some(p) = level {
            self.connection_pool = p.connection_pool.as_ref().or(self.connection_pool);
            self.load_balancer = p.load_balancer.as_ref().or(self.load_balancer);
            self.outlier_detection = p.outlier_detection.as_ref().or(self.outlier_detection);
            self.tls = p.tls.as_ref().or(self.tls);
        }
    }
}

impl<'a> Rule<'a> {
    /// The policy for `port` and `subset` (empty: the service's default cluster).
    pub fn policy(&self, port: u32, subset: &str) -> Policy<'a> {
        let mut p = Policy::default();
        if let Some(tp) = &self.spec.traffic_policy {
            p.apply(tp, port);
        }
        if let Some(s) = self
            .spec
            .subsets
            .iter()
            .find(|s| !subset.is_empty() && s.name.as_deref() == Some(subset))
        {
            if let Some(tp) = &s.traffic_policy {
                p.apply(tp, port);
            }
        }
        p
    }
}

/// A host as written in a rule of namespace `ns`, as the FQDN of a registry service when
/// it names one in any form, else as written (short names get the namespace, like Istio).
pub fn resolve_host(ctx: &Ctx<'_>, host: &str, ns: &str) -> String {
    if let Some(s) = ctx.registry.lookup(host, ns) {
        return s.hostname.clone();
    }
    if host.contains('.') || host.contains('*') {
        host.to_string()
    } else {
        format!("{host}.{ns}.svc.{}", spar_registry::DEFAULT_DOMAIN_SUFFIX)
    }
}

/// Whether a (possibly wildcard) rule host covers `hostname`.
pub fn host_matches(rule_host: &str, hostname: &str) -> bool {
    match rule_host.strip_prefix('*') {
        Some(suffix) => hostname.ends_with(suffix),
        None => rule_host == hostname,
    }
}

fn exported_to(r: &Resource, spec: &DestinationRule, ns: &str) -> bool {
    if spec.export_to.is_empty() {
        return true;
    }
    spec.export_to
        .iter()
        .any(|e| e == "*" || e == ns || (e == "." && r.meta.namespace == ns))
}

/// A DestinationRule that may apply to the proxy, with its host resolved.
struct Entry<'a> {
    host: String,
    namespace: &'a str,
    spec: &'a DestinationRule,
}

/// The DestinationRules that apply to one proxy, indexed by host: built once per
/// translation so that finding a service's rule does not scan every rule.
#[derive(Default)]
pub struct Index<'a> {
    entries: Vec<Entry<'a>>,
    exact: BTreeMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

impl<'a> Index<'a> {
    pub fn build(ctx: &Ctx<'a>) -> Index<'a> {
        let node_ns = ctx.node.namespace.as_str();
        let mut idx = Index::default();
        for r in ctx.config.of_kind(Kind::DestinationRule) {
            let Some(spec) = r.body.destination_rule() else {
                continue;
            };
            let Some(host) = spec.host.as_deref() else {
                continue;
            };
            if let Some(sel) = &spec.workload_selector {
                let applies = r.meta.namespace == node_ns
                    && sel
                        .match_labels
                        .iter()
                        .all(|(k, v)| ctx.node.labels.get(k) == Some(v));
                if !applies {
                    continue;
                }
            }
            if !exported_to(r, spec, node_ns) {
                continue;
            }
            let full = resolve_host(ctx, host, &r.meta.namespace);
            let i = idx.entries.len();
            if full.starts_with('*') {
                idx.wildcard.push(i);
            } else {
                idx.exact.entry(full.clone()).or_default().push(i);
            }
            idx.entries.push(Entry {
                host: full,
                namespace: &r.meta.namespace,
                spec,
            });
        }
        idx
    }
}

/// The DestinationRule for `hostname` as seen by the proxy: Istio's precedence is the
/// proxy's namespace, then the service's, then the root namespace; an exact host beats
/// a wildcard; ties go to the oldest, which for files is the first read.
pub fn for_host<'a>(ctx: &Ctx<'a>, hostname: &str, service_ns: &str) -> Option<Rule<'a>> {
    let idx = &ctx.rules;
    let node_ns = ctx.node.namespace.as_str();
    let root = ctx.config.root_namespace();
    let candidates = idx
        .exact
        .get(hostname)
        .into_iter()
        .flatten()
        .chain(idx.wildcard.iter())
        .copied()
        .filter(|i| host_matches(&idx.entries[*i].host, hostname));
    let mut best: Option<((u8, u8, usize), Rule<'a>)> = None;
    for i in candidates {
        let e = &idx.entries[i];
        let ns_rank = if e.namespace == node_ns {
            0
        } else if e.namespace == service_ns {
            1
        } else if e.namespace == root {
            2
        } else {
            3
        };
        let rank = (ns_rank, u8::from(e.host != hostname), i);
        if best.as_ref().is_none_or(|(b, _)| rank < *b) {
            best = Some((rank, Rule { spec: e.spec }));
        }
    }
    best.map(|(_, r)| r)
}

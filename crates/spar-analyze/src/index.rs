//! What the analyzers look things up in: services, workloads, namespaces and service
//! accounts described by the input, with Istio's host resolution rules.

use std::collections::{BTreeMap, BTreeSet};

use spar_model::resource::{Body, Resource};
use spar_model::ConfigSet;

/// Kubernetes' default DNS domain; Spar's registry uses it for short names too.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

#[derive(Debug)]
pub struct Service<'a> {
    /// Fully qualified host (`reviews.default.svc.cluster.local`, or a ServiceEntry host).
    pub host: String,
    pub namespace: &'a str,
    pub ports: Vec<u32>,
    /// Labels selecting the service's workloads (Service selector, SE workloadSelector).
    pub selector: Option<&'a BTreeMap<String, String>>,
    pub addresses: Vec<String>,
    /// True for Kubernetes Services (workloads inside the mesh), false for ServiceEntries.
    pub in_mesh: bool,
    pub resource: &'a Resource,
}

#[derive(Debug)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

pub struct Index<'a> {
    pub services: Vec<Service<'a>>,
    pub workloads: Vec<Workload<'a>>,
    pub namespaces: BTreeSet<String>,
    /// `namespace/name` of every service account known to exist.
    pub service_accounts: BTreeSet<String>,
    pub set: &'a ConfigSet,
}

impl<'a> Index<'a> {
    pub fn build(set: &'a ConfigSet) -> Self {
        let mut idx = Index {
            services: Vec::new(),
            workloads: Vec::new(),
            namespaces: BTreeSet::new(),
            service_accounts: BTreeSet::new(),
            set,
        };
        for r in set.resources() {
            if !r.meta.namespace.is_empty() {
                idx.namespaces.insert(r.meta.namespace.clone());
            } else if r.kind == spar_model::Kind::Namespace {
                idx.namespaces.insert(r.meta.name.clone());
            }
            idx.add(r);
        }
        for ns in &idx.namespaces {
            idx.service_accounts.insert(format!("{ns}/default"));
        }
        idx
    }

    fn add(&mut self, r: &'a Resource) {
        let ns = r.meta.namespace.as_str();
        match &r.body {
            Body::Service(svc) => {
                let spec = &svc.spec;
                self.services.push(Service {
                    host: format!("{}.{ns}.{DOMAIN_SUFFIX}", r.meta.name),
                    namespace: ns,
                    ports: spec
                        .ports
                        .iter()
                        .filter_map(|p| u32::try_from(p.port).ok())
                        .collect(),
                    selector: (!spec.selector.is_empty()).then_some(&spec.selector),
                    addresses: spec
                        .cluster_ip
                        .iter()
                        .filter(|ip| ip.as_str() != "None")
                        .cloned()
                        .collect(),
                    in_mesh: true,
                    resource: r,
                });
            }
            Body::ServiceEntry(se) => {
                for host in &se.hosts {
                    self.services.push(Service {
                        host: host.clone(),
                        namespace: ns,
                        ports: se.ports.iter().filter_map(|p| p.number).collect(),
                        selector: se.workload_selector.as_ref().map(|s| &s.labels),
                        addresses: se.addresses.clone(),
                        in_mesh: false,
                        resource: r,
                    });
                }
            }
            Body::ServiceAccount(_) => {
                self.service_accounts
                    .insert(format!("{ns}/{}", r.meta.name));
            }
            Body::Deployment(d) => {
                let tpl = &d.spec.template;
                let sa = service_account_of(&tpl.spec);
                self.service_accounts.insert(format!("{ns}/{sa}"));
                self.workloads.push(Workload {
                    namespace: ns,
                    labels: &tpl.metadata.labels,
                });
            }
            Body::Pod(p) => {
                let sa = service_account_of(&p.spec);
                self.service_accounts.insert(format!("{ns}/{sa}"));
                self.workloads.push(Workload {
                    namespace: ns,
                    labels: &r.meta.labels,
                });
            }
            Body::WorkloadEntry(we) => {
                let sa = we.service_account.as_deref().unwrap_or("default");
                self.service_accounts.insert(format!("{ns}/{sa}"));
                self.workloads.push(Workload {
                    namespace: ns,
                    labels: &we.labels,
                });
            }
            _ => {}
        }
    }

    /// True when the input describes any workload at all; checks that need to know the
    /// workloads are skipped otherwise (a directory of routing rules alone says nothing
    /// about which pods exist).
    pub fn knows_workloads(&self) -> bool {
        !self.workloads.is_empty()
    }

    /// The services a host written in `namespace` refers to, with Istio's resolution:
    /// a short name is qualified with the namespace; `name.ns` is accepted as Spar's
    /// registry accepts it; wildcards match by suffix.
    pub fn services_for_host(&self, host: &str, namespace: &str) -> Vec<&Service<'a>> {
        let candidates = qualify(host, namespace);
        self.services
            .iter()
            .filter(|s| candidates.iter().any(|c| hosts_overlap(c, &s.host)))
            .collect()
    }

    /// Workloads in `namespace` whose labels include all of `selector`.
    pub fn workloads_matching<'s>(
        &'s self,
        namespace: Option<&'s str>,
        selector: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'s Workload<'a>> + 's {
        self.workloads
            .iter()
            .filter(move |w| namespace.is_none_or(|ns| w.namespace == ns))
            .filter(move |w| labels_match(selector, w.labels))
    }
}

fn service_account_of(spec: &spar_model::k8s::PodSpec) -> String {
    spec.service_account_name
        .clone()
        .or_else(|| spec.service_account.clone())
        .unwrap_or_else(|| "default".to_string())
}

/// The forms a host may stand for: itself and, for short names, the qualified name.
pub fn qualify(host: &str, namespace: &str) -> Vec<String> {
    if host == "*" || host.parse::<std::net::IpAddr>().is_ok() {
        return vec![host.to_string()];
    }
    match host.matches('.').count() {
        0 => vec![format!("{host}.{namespace}.{DOMAIN_SUFFIX}")],
        1 => vec![host.to_string(), format!("{host}.{DOMAIN_SUFFIX}")],
        _ => vec![host.to_string()],
    }
}

/// Whether two hosts, either possibly a wildcard (`*`, `*.example.com`), can name the same thing.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    if a == "*" || b == "*" || a.eq_ignore_ascii_case(b) {
        return true;
    }
    let suffix = |w: &str| w.strip_prefix('*').map(str::to_ascii_lowercase);
    let (la, lb) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    match (suffix(a), suffix(b)) {
        (Some(sa), Some(sb)) => sa.ends_with(&sb) || sb.ends_with(&sa),
        (Some(sa), None) => lb.ends_with(&sa),
        (None, Some(sb)) => la.ends_with(&sb),
        (None, None) => false,
    }
}

pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            qualify("reviews", "default"),
            ["reviews.default.svc.cluster.local"]
        );
        assert_eq!(
            qualify("reviews.prod", "default")[1],
            "reviews.prod.svc.cluster.local"
        );
        assert!(hosts_overlap("*.example.com", "a.example.com"));
        assert!(hosts_overlap("*.example.com", "*.b.example.com"));
        assert!(!hosts_overlap("*.example.com", "example.org"));
        assert!(hosts_overlap("*", "anything"));
    }
}

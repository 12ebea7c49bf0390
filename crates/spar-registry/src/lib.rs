//! The service registry: one immutable snapshot of services (Kubernetes Services,
//! ServiceEntries), their hostnames in every form Istio accepts, ports with protocols,
//! and endpoints with labels, locality, service account and whether they run a sidecar.
//!
//! [`Registry::build`] reads a [`spar_model::ConfigSet`]; nothing changes afterwards.
//! Everything is sorted (services by hostname then namespace, endpoints by address), so
//! code that walks the registry produces the same output for the same config.
//!
//! - Kubernetes services: see [`kube`] (endpoint sources, hostnames).
//! - ServiceEntries: see [`service_entry`].
//! - Workloads and synthetic addresses: see [`workload`].
//! - Port protocols: see [`protocol`].

pub mod kube;
pub mod model;
pub mod protocol;
pub mod service_entry;
pub mod workload;

#[cfg(test)]
mod tests;

pub use model::{
    Endpoint, Protocol, Resolution, Service, ServiceOrigin, ServicePort, TargetPort, Visibility,
};
pub use workload::Workload;

use std::collections::BTreeMap;

/// The DNS suffix of Kubernetes service names (`<name>.<ns>.svc.cluster.local`).
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// The registry snapshot (built by [`Registry::build`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    services: Vec<Service>,
    workloads: Vec<Workload>,
    /// Every alias → indexes into `services` (lookups are per request of a translation,
    /// so they must not scan every service).
    by_alias: BTreeMap<String, Vec<usize>>,
}

impl Registry {
    pub fn build(config: &spar_model::ConfigSet) -> Registry {
        let workloads = workload::collect(config);
        let ctx = kube::Ctx::new(config, &workloads, DEFAULT_DOMAIN_SUFFIX);
        let mut services = kube::services(&ctx);
        services.extend(service_entry::services(&ctx));
        services.sort_by(|a, b| {
            (&a.hostname, &a.namespace, &a.name).cmp(&(&b.hostname, &b.namespace, &b.name))
        });
        let mut by_alias: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in services.iter().enumerate() {
            for a in &s.aliases {
                by_alias.entry(a.clone()).or_default().push(i);
            }
        }
        Registry {
            services,
            workloads,
            by_alias,
        }
    }

    /// Every service, sorted by hostname then namespace.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Every workload (pods, Deployment replicas, WorkloadEntries), sorted.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// Services a proxy in `namespace` may see (`exportTo`).
    pub fn services_visible_to<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .iter()
            .filter(move |s| s.visibility.visible_to(namespace) || s.namespace == namespace)
    }

    /// The service `host` names from `namespace`, in any form (`reviews`,
    /// `reviews.default`, `reviews.default.svc`, FQDN, a ServiceEntry host). When several
    /// namespaces define the host, the caller's own namespace wins, then the first by
    /// namespace name.
    pub fn lookup<'a>(&'a self, host: &str, namespace: &'a str) -> Option<&'a Service> {
        let host = host.trim_end_matches('.');
        let mut found = self
            .by_alias
            .get(host)
            .into_iter()
            .flatten()
            .map(|i| &self.services[*i])
            .filter(|s| s.visibility.visible_to(namespace) || s.namespace == namespace)
            .filter(|s| s.aliases_from(namespace).contains(&host));
        let first = found.next()?;
        if first.namespace == namespace {
            return Some(first);
        }
        Some(found.find(|s| s.namespace == namespace).unwrap_or(first))
    }

    /// Kubernetes services in `namespace` whose selector matches `labels`: the services a
    /// workload with those labels serves (for its inbound listeners).
    pub fn services_of_workload<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| {
            s.namespace == namespace
                && s.origin == ServiceOrigin::Kubernetes
                && !s.selector.is_empty()
                && s.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }
}

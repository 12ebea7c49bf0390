//! The service registry: one immutable snapshot of services (Kubernetes Services,
//! ServiceEntries), their hostnames in every form Istio accepts, ports with protocols,
//! and endpoints with labels, locality, service account and whether they run a sidecar.
//!
//! [`Registry::build`] reads a [`spar_model::ConfigSet`]; nothing changes afterwards.
//! [`Registry::with_endpoints_of`] makes the next snapshot when only some services'
//! Endpoints/EndpointSlices changed: those services are read again and everything else is
//! shared with the previous snapshot (services sit behind `Arc`s), so an endpoint change
//! costs the changed services, not the mesh.
//! Everything is sorted (services by hostname then namespace, endpoints by address), so
//! code that walks the registry produces the same output for the same config.
//!
//! - Kubernetes services: see [`kube`] (endpoint sources, hostnames).
//! - ServiceEntries: see [`service_entry`].
//! - Workloads and synthetic addresses: see [`workload`].
//! - Port protocols: see [`protocol`].

pub mod kube;
pub mod model;
mod own_workload;
pub mod protocol;
pub mod service_entry;
pub mod workload;

#[cfg(test)]
mod tests;

pub use model::{
    Endpoint, Protocol, Resolution, Service, ServiceOrigin, ServicePort, TargetPort, Visibility,
};
pub use workload::Workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The DNS suffix of Kubernetes service names (`<name>.<ns>.svc.cluster.local`).
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// The registry snapshot (built by [`Registry::build`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    services: Vec<Arc<Service>>,
    workloads: Arc<Vec<Workload>>,
    /// Finds a proxy's own workload among `workloads` without a scan.
    own: Arc<own_workload::WorkloadIndex>,
    /// Every alias → indexes into `services` (lookups are per request of a translation,
    /// so they must not scan every service).
    by_alias: Arc<BTreeMap<String, Vec<usize>>>,
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
            services: services.into_iter().map(Arc::new).collect(),
            own: Arc::new(own_workload::WorkloadIndex::new(&workloads)),
            workloads: Arc::new(workloads),
            by_alias: Arc::new(by_alias),
        }
    }

    /// The registry `config` gives when it differs from the config this registry was built
    /// from only in the Endpoints and EndpointSlices of `services` (namespace, name): their
    /// endpoints are read again; every other service, the workloads and the alias index
    /// are shared with `self`. Equal to [`Registry::build`] of `config` under that premise.
    pub fn with_endpoints_of(
        &self,
        config: &spar_model::ConfigSet,
        services: &BTreeSet<(String, String)>,
    ) -> Registry {
        let ctx = kube::Ctx::new(config, &self.workloads, DEFAULT_DOMAIN_SUFFIX);
        let services = self
            .services
            .iter()
            .map(|s| {
                let read_again = s.origin == ServiceOrigin::Kubernetes
                    && s.resolution != Resolution::DnsLb
                    && services.contains(&(s.namespace.clone(), s.name.clone()));
                if !read_again {
                    return s.clone();
                }
                let mut next = (**s).clone();
                next.endpoints = kube::endpoints(&ctx, &next);
                next.endpoints.sort();
                next.endpoints.dedup();
                Arc::new(next)
            })
            .collect();
        Registry {
            services,
            workloads: self.workloads.clone(),
            own: self.own.clone(),
            by_alias: self.by_alias.clone(),
        }
    }

    /// The services of `self` and `newer` (the same services, in the same order) that
    /// differ, as (old, new) pairs; `None` when the two do not list the same services.
    /// Shared entries are skipped without comparing them.
    pub fn differing_services<'a>(
        &'a self,
        newer: &'a Registry,
    ) -> Option<Vec<(&'a Service, &'a Service)>> {
        if self.services.len() != newer.services.len() {
            return None;
        }
        let mut out = Vec::new();
        for (a, b) in self.services.iter().zip(&newer.services) {
            if Arc::ptr_eq(a, b) || a == b {
                continue;
            }
            if (&a.hostname, &a.namespace, &a.name) != (&b.hostname, &b.namespace, &b.name) {
                return None;
            }
            out.push((&**a, &**b));
        }
        Some(out)
    }

    /// Every service, sorted by hostname then namespace.
    pub fn services(&self) -> impl ExactSizeIterator<Item = &Service> + '_ {
        self.services.iter().map(|s| &**s)
    }

    /// Every workload (pods, Deployment replicas, WorkloadEntries), sorted.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The workload a proxy runs in: the first (in [`Registry::workloads`] order) of its
    /// namespace whose address is the proxy's IP or whose labels are the proxy's labels.
    /// Two hash lookups, whatever the number of workloads.
    pub fn own_workload(
        &self,
        namespace: &str,
        ip: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&Workload> {
        self.own
            .find(namespace, ip, labels)
            .map(|i| &self.workloads[i])
    }

    /// Services a proxy in `namespace` may see (`exportTo`).
    pub fn services_visible_to<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services()
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
            .map(|i| &*self.services[*i])
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
        self.services().filter(move |s| {
            s.namespace == namespace
                && s.origin == ServiceOrigin::Kubernetes
                && !s.selector.is_empty()
                && s.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }
}

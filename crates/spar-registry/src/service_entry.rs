//! `ServiceEntry`: one service per host, with inline endpoints, endpoints selected by
//! `workloadSelector` (WorkloadEntries and pods of the same namespace), or, for DNS
//! resolution without endpoints, the host itself.

use std::collections::BTreeMap;

use spar_model::istio::types::{Location, Resolution as SeResolution, ServiceEntry};
use spar_model::{Kind, Resource};

use crate::kube::{workload_endpoint, Ctx};
use crate::model::{
    Endpoint, Resolution, Service, ServiceOrigin, ServicePort, TargetPort, Visibility,
};
use crate::protocol;
use crate::workload::{from_workload_entry, Workload, TLS_MODE_LABEL};

pub(crate) fn services(ctx: &Ctx<'_>) -> Vec<Service> {
    let mut out = Vec::new();
    for r in ctx.config.of_kind(Kind::ServiceEntry) {
        if let Some(se) = r.body.service_entry() {
            for host in &se.hosts {
                out.push(service(ctx, r, se, host));
            }
        }
    }
    out
}

fn resolution(se: &ServiceEntry) -> Resolution {
    match se.resolution.unwrap_or(SeResolution::None) {
        SeResolution::None => Resolution::Passthrough,
        SeResolution::Static => Resolution::ClientSideLb,
        SeResolution::Dns | SeResolution::DynamicDns => Resolution::DnsLb,
        SeResolution::DnsRoundRobin => Resolution::DnsRoundRobin,
    }
}

fn service(ctx: &Ctx<'_>, r: &Resource, se: &ServiceEntry, host: &str) -> Service {
    let ns = r.meta.namespace.as_str();
    let mut ports: Vec<ServicePort> = se
        .ports
        .iter()
        .filter_map(|p| {
            Some(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port: p.number?,
                protocol: protocol::for_entry_port(p.name.as_deref(), p.protocol.as_deref()),
            })
        })
        .collect();
    ports.sort();
    let target_ports = se
        .ports
        .iter()
        .filter_map(|p| Some((p.number?, TargetPort::Number(p.target_port.or(p.number)?))))
        .collect();
    let export_to = if se.export_to.is_empty() {
        ctx.config.mesh().default_service_export_to.clone()
    } else {
        se.export_to.clone()
    };
    let selector = se
        .workload_selector
        .as_ref()
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    let mut addresses = se.addresses.clone();
    addresses.sort();
    let mut s = Service {
        hostname: host.to_string(),
        name: r.meta.name.clone(),
        namespace: ns.to_string(),
        aliases: vec![host.to_string()],
        ports,
        addresses,
        resolution: resolution(se),
        mesh_external: se.location != Some(Location::MeshInternal),
        subject_alt_names: se.subject_alt_names.clone(),
        visibility: Visibility::from_export_to(&export_to, ns),
        origin: ServiceOrigin::ServiceEntry,
        endpoints: Vec::new(),
        labels: r.meta.labels.clone(),
        selector,
        target_ports,
    };
    s.endpoints = endpoints(ctx, r, se, &s);
    s.endpoints.sort();
    s.endpoints.dedup();
    s
}

/// Service port → workload port: the workload's port of the same name, else the entry's
/// `targetPort`, else the port number.
fn entry_ports(s: &Service, named: &BTreeMap<String, u32>) -> BTreeMap<u32, u32> {
    s.ports
        .iter()
        .map(|p| {
            let fallback = match s.target_ports.get(&p.port) {
                Some(TargetPort::Number(n)) => *n,
                _ => p.port,
            };
            (p.port, named.get(&p.name).copied().unwrap_or(fallback))
        })
        .collect()
}

fn endpoints(ctx: &Ctx<'_>, r: &Resource, se: &ServiceEntry, s: &Service) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for we in &se.endpoints {
        let w = from_workload_entry(we, &r.meta, Kind::ServiceEntry);
        let mut e = workload_endpoint(s, &w, entry_ports(s, &w.named_ports));
        // Inline endpoints describe addresses, not mesh workloads: mTLS only when the
        // entry says the endpoint accepts it, as Istio reads `security.istio.io/tlsMode`.
        e.has_sidecar = we.labels.get(TLS_MODE_LABEL).is_some_and(|m| m == "istio");
        e.labels = we.labels.clone();
        out.push(e);
    }
    if !s.selector.is_empty() {
        let selected = ctx.in_namespace(&s.namespace).filter(|w: &&Workload| {
            matches!(w.kind, Kind::WorkloadEntry | Kind::Pod | Kind::Deployment)
                && s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        });
        for w in selected {
            out.push(workload_endpoint(s, w, entry_ports(s, &w.named_ports)));
        }
    }
    let dns = matches!(s.resolution, Resolution::DnsLb | Resolution::DnsRoundRobin);
    if out.is_empty() && dns && !s.hostname.starts_with('*') {
        out.push(Endpoint {
            address: s.hostname.clone(),
            ports: entry_ports(s, &BTreeMap::new()),
            labels: BTreeMap::new(),
            locality: String::new(),
            namespace: s.namespace.clone(),
            service_account: String::new(),
            workload: String::new(),
            has_sidecar: false,
            weight: 1,
            synthetic: false,
        });
    }
    out
}

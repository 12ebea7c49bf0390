//! Kubernetes `Service`s and their endpoints.
//!
//! Endpoints come from the first source that has any, in this order: `EndpointSlice`s
//! labelled `kubernetes.io/service-name: <name>`, the `Endpoints` object of the same
//! name, then the workloads the selector matches (`Pod`s if any match, else each replica
//! of matching `Deployment`s, with synthetic addresses; see [`crate::workload`]).

use std::collections::BTreeMap;

use spar_model::k8s::{EndpointPort, IntOrString};
use spar_model::{Kind, Resource};

use crate::model::{
    Endpoint, Resolution, Service, ServiceOrigin, ServicePort, TargetPort, Visibility,
};
use crate::protocol;
use crate::workload::Workload;

/// Istio's annotation for a Service's `exportTo`.
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
/// The EndpointSlice label naming its service.
pub const SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

pub(crate) struct Ctx<'a> {
    pub config: &'a spar_model::ConfigSet,
    pub workloads: &'a [Workload],
    pub domain: &'a str,
    /// Workloads by namespace, EndpointSlices and Endpoints by (namespace, service):
    /// built once so that each service does not scan the whole config.
    pub by_namespace: BTreeMap<&'a str, Vec<&'a Workload>>,
    pub slices: BTreeMap<(&'a str, &'a str), Vec<&'a spar_model::k8s::EndpointSlice>>,
    pub endpoints: BTreeMap<(&'a str, &'a str), Vec<&'a spar_model::k8s::Endpoints>>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        config: &'a spar_model::ConfigSet,
        workloads: &'a [Workload],
        domain: &'a str,
    ) -> Ctx<'a> {
        let mut by_namespace: BTreeMap<&str, Vec<&Workload>> = BTreeMap::new();
        for w in workloads {
            by_namespace
                .entry(w.namespace.as_str())
                .or_default()
                .push(w);
        }
        let mut slices: BTreeMap<(&str, &str), Vec<_>> = BTreeMap::new();
        let mut endpoints: BTreeMap<(&str, &str), Vec<_>> = BTreeMap::new();
        for r in config.resources() {
            if let Some(s) = r.body.endpoint_slice() {
                if let Some(svc) = r.meta.labels.get(SLICE_SERVICE_LABEL) {
                    slices
                        .entry((r.meta.namespace.as_str(), svc.as_str()))
                        .or_default()
                        .push(s);
                }
            } else if let Some(e) = r.body.endpoints() {
                endpoints
                    .entry((r.meta.namespace.as_str(), r.meta.name.as_str()))
                    .or_default()
                    .push(e);
            }
        }
        Ctx {
            config,
            workloads,
            domain,
            by_namespace,
            slices,
            endpoints,
        }
    }

    /// Workloads of one namespace, in the registry's sorted order.
    pub fn in_namespace(&self, ns: &str) -> impl Iterator<Item = &'a Workload> + '_ {
        self.by_namespace.get(ns).into_iter().flatten().copied()
    }
}

pub(crate) fn services(ctx: &Ctx<'_>) -> Vec<Service> {
    ctx.config
        .of_kind(Kind::Service)
        .filter_map(|r| service(ctx, r))
        .collect()
}

fn service(ctx: &Ctx<'_>, r: &Resource) -> Option<Service> {
    let svc = r.body.service()?;
    let (name, ns) = (r.meta.name.as_str(), r.meta.namespace.as_str());
    let spec = &svc.spec;
    let hostname = format!("{name}.{ns}.svc.{}", ctx.domain);
    let mut ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .filter_map(|p| {
            Some(ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port: u32::try_from(p.port).ok()?,
                protocol: protocol::for_kube_port(
                    p.name.as_deref(),
                    p.app_protocol.as_deref(),
                    p.protocol.as_deref(),
                ),
            })
        })
        .collect();
    ports.sort();
    let target_ports = spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = u32::try_from(p.port).ok()?;
            let t = match p.effective_target_port() {
                IntOrString::Int(n) => TargetPort::Number(u32::try_from(n).ok()?),
                IntOrString::String(s) => TargetPort::Named(s),
            };
            Some((port, t))
        })
        .collect();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut addresses: Vec<String> = spec
        .cluster_ip
        .iter()
        .chain(spec.cluster_ips.iter())
        .filter(|a| !a.is_empty() && a.as_str() != "None")
        .cloned()
        .collect();
    addresses.sort();
    addresses.dedup();
    let external_name = spec
        .external_name
        .clone()
        .filter(|_| spec.type_.as_deref() == Some("ExternalName"));
    let export_to: Vec<String> = match r.meta.annotations.get(EXPORT_TO_ANNOTATION) {
        Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        None => ctx.config.mesh().default_service_export_to.clone(),
    };
    let mut s = Service {
        hostname: hostname.clone(),
        name: name.to_string(),
        namespace: ns.to_string(),
        aliases: vec![
            hostname,
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}"),
            name.to_string(),
        ],
        ports,
        addresses,
        resolution: if external_name.is_some() {
            Resolution::DnsLb
        } else if headless {
            Resolution::Passthrough
        } else {
            Resolution::ClientSideLb
        },
        mesh_external: false,
        subject_alt_names: Vec::new(),
        visibility: Visibility::from_export_to(&export_to, ns),
        origin: ServiceOrigin::Kubernetes,
        endpoints: Vec::new(),
        labels: r.meta.labels.clone(),
        selector: spec.selector.clone(),
        target_ports,
    };
    s.endpoints = match external_name {
        Some(host) => vec![dns_endpoint(&s, &host)],
        None => endpoints(ctx, &s),
    };
    s.endpoints.sort();
    s.endpoints.dedup();
    Some(s)
}

/// An ExternalName service's one endpoint: the external host, on every port.
fn dns_endpoint(s: &Service, host: &str) -> Endpoint {
    Endpoint {
        address: host.to_string(),
        ports: s.ports.iter().map(|p| (p.port, p.port)).collect(),
        labels: BTreeMap::new(),
        locality: String::new(),
        namespace: s.namespace.clone(),
        service_account: String::new(),
        workload: String::new(),
        has_sidecar: false,
        weight: 1,
        synthetic: false,
    }
}

pub(crate) fn endpoints(ctx: &Ctx<'_>, s: &Service) -> Vec<Endpoint> {
    let from_slices = from_slices(ctx, s);
    if !from_slices.is_empty() {
        return from_slices;
    }
    let from_endpoints = from_endpoints_object(ctx, s);
    if !from_endpoints.is_empty() {
        return from_endpoints;
    }
    from_selector(ctx, s)
}

/// Service port → endpoint port, matching the discovered ports by name (the way
/// Kubernetes names them after the service port).
fn port_map(s: &Service, found: &[EndpointPort]) -> BTreeMap<u32, u32> {
    s.ports
        .iter()
        .filter_map(|sp| {
            let ep = found
                .iter()
                .find(|p| p.name.as_deref().unwrap_or_default() == sp.name || found.len() == 1)?;
            Some((sp.port, u32::try_from(ep.port?).ok()?))
        })
        .collect()
}

fn workload_at<'a>(
    ctx: &'a Ctx<'_>,
    ns: &str,
    ip: &str,
    pod: Option<&str>,
) -> Option<&'a Workload> {
    // The named pod first: several pods may share an address (host networking).
    let in_ns = || ctx.workloads.iter().filter(move |w| w.namespace == ns);
    pod.and_then(|p| in_ns().find(|w| w.kind == Kind::Pod && w.name == p))
        .or_else(|| in_ns().find(|w| w.address.as_deref() == Some(ip)))
}

/// An endpoint at a discovered address; labels and identity from the pod there when the
/// config has it, else the service's selector (so subsets by selector labels still work).
fn discovered(
    ctx: &Ctx<'_>,
    s: &Service,
    ip: &str,
    pod: Option<&str>,
    zone: Option<&str>,
    ports: BTreeMap<u32, u32>,
) -> Endpoint {
    let w = workload_at(ctx, &s.namespace, ip, pod);
    Endpoint {
        address: ip.to_string(),
        ports,
        labels: w
            .map(|w| w.labels.clone())
            .unwrap_or_else(|| s.selector.clone()),
        locality: w
            .map(|w| w.locality.clone())
            .filter(|l| !l.is_empty())
            .or_else(|| zone.map(|z| format!("/{z}/")))
            .unwrap_or_default(),
        namespace: s.namespace.clone(),
        service_account: w
            .map(|w| w.service_account.clone())
            .unwrap_or_else(|| "default".to_string()),
        workload: w
            .map(|w| w.name.clone())
            .or(pod.map(str::to_string))
            .unwrap_or_default(),
        // Only a known pod says whether it runs a proxy (Istio reads the pod's
        // `security.istio.io/tlsMode` label); an address with no pod gets plaintext.
        has_sidecar: w.is_some_and(|w| w.has_sidecar),
        weight: 1,
        synthetic: false,
    }
}

fn from_slices(ctx: &Ctx<'_>, s: &Service) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let key = (s.namespace.as_str(), s.name.as_str());
    for slice in ctx.slices.get(&key).into_iter().flatten() {
        if slice.address_type == "FQDN" {
            continue;
        }
        let ports = port_map(s, &slice.ports);
        for e in &slice.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            let pod = e
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.name.as_deref());
            for ip in &e.addresses {
                out.push(discovered(
                    ctx,
                    s,
                    ip,
                    pod,
                    e.zone.as_deref(),
                    ports.clone(),
                ));
            }
        }
    }
    out
}

fn from_endpoints_object(ctx: &Ctx<'_>, s: &Service) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let key = (s.namespace.as_str(), s.name.as_str());
    for eps in ctx.endpoints.get(&key).into_iter().flatten() {
        for subset in &eps.subsets {
            let ports = port_map(s, &subset.ports);
            for a in &subset.addresses {
                let pod = a
                    .target_ref
                    .as_ref()
                    .filter(|t| t.kind.as_deref() == Some("Pod"))
                    .and_then(|t| t.name.as_deref());
                out.push(discovered(ctx, s, &a.ip, pod, None, ports.clone()));
            }
        }
    }
    out
}

/// Resolves a service's target ports on one workload (named ports via container ports;
/// a name the workload lacks leaves that port out, as Kubernetes does).
pub(crate) fn workload_ports(s: &Service, w: &Workload) -> BTreeMap<u32, u32> {
    s.target_ports
        .iter()
        .filter_map(|(port, t)| match t {
            TargetPort::Number(n) => Some((*port, *n)),
            TargetPort::Named(name) => w.named_ports.get(name).map(|n| (*port, *n)),
        })
        .collect()
}

pub(crate) fn workload_endpoint(s: &Service, w: &Workload, ports: BTreeMap<u32, u32>) -> Endpoint {
    Endpoint {
        address: w.address.clone().unwrap_or_default(),
        ports,
        labels: w.labels.clone(),
        locality: w.locality.clone(),
        namespace: s.namespace.clone(),
        service_account: w.service_account.clone(),
        workload: w.name.clone(),
        has_sidecar: w.has_sidecar,
        weight: w.weight,
        synthetic: w.synthetic,
    }
}

fn from_selector(ctx: &Ctx<'_>, s: &Service) -> Vec<Endpoint> {
    if s.selector.is_empty() {
        return Vec::new();
    }
    let matching = |kind: Kind| {
        ctx.in_namespace(&s.namespace).filter(move |w| {
            w.kind == kind && s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        })
    };
    // Pods, when the config lists them, are the running replicas of the Deployments:
    // counting both would double every endpoint.
    let pods: Vec<&Workload> = matching(Kind::Pod).collect();
    let chosen: Vec<&Workload> = if pods.is_empty() {
        matching(Kind::Deployment).collect()
    } else {
        pods
    };
    chosen
        .into_iter()
        .map(|w| workload_endpoint(s, w, workload_ports(s, w)))
        .collect()
}

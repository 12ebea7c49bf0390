//! Workloads: the pods a mesh runs, from `Pod`s, `Deployment`s (one per replica) and
//! `WorkloadEntry`s, with the addresses they are reached at.
//!
//! **Synthetic addresses.** A manifest directory has Deployments but no running pods, so
//! no pod IPs. A workload with no real address (no `status.podIP`, no `Endpoints` /
//! `EndpointSlice` entry) gets one from the reserved block `240.0.0.0/4`, which no network
//! routes: `240.x.y.z` where `x.y.z` are the low 24 bits of the FNV-1a hash of
//! `<namespace>/<kind>/<name>/<replica>`. The same workload always gets the same address,
//! whatever else is in the config; on a collision the later one (in sorted order) takes
//! the next free address. Endpoints built this way have [`crate::Endpoint::synthetic`] set.

use std::collections::{BTreeMap, BTreeSet};

use spar_model::k8s::{ContainerPort, PodSpec};
use spar_model::{Kind, ObjectMeta};

/// Annotation (or label) that turns sidecar injection off for a workload.
pub const INJECT_KEY: &str = "sidecar.istio.io/inject";
/// Label a workload carries when it does (or does not) accept Istio mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// One running instance: a pod, a replica of a Deployment, or a WorkloadEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: Kind,
    pub name: String,
    pub namespace: String,
    /// Replica index for Deployments, 0 otherwise.
    pub replica: u32,
    /// Real address, if any (`status.podIP`, WorkloadEntry `address`).
    pub address: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub has_sidecar: bool,
    pub locality: String,
    pub weight: u32,
    /// Named container ports (for named `targetPort`s).
    pub named_ports: BTreeMap<String, u32>,
    /// The address was made up (see the module docs).
    pub synthetic: bool,
}

/// Whether annotations/labels turn injection off.
pub fn sidecar_disabled(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let off = |m: &BTreeMap<String, String>| {
        m.get(INJECT_KEY)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    };
    off(annotations) || off(labels) || labels.get(TLS_MODE_LABEL).is_some_and(|v| v == "disabled")
}

/// Locality from Kubernetes topology labels or Istio's `istio-locality` label
/// (`region.zone.subzone`), as `region/zone/subzone`.
pub fn locality_from_labels(labels: &BTreeMap<String, String>) -> String {
    if let Some(l) = labels.get("istio-locality") {
        return l.replace('.', "/");
    }
    let region = labels
        .get("topology.kubernetes.io/region")
        .cloned()
        .unwrap_or_default();
    let zone = labels
        .get("topology.kubernetes.io/zone")
        .cloned()
        .unwrap_or_default();
    let subzone = labels
        .get("topology.istio.io/subzone")
        .cloned()
        .unwrap_or_default();
    if region.is_empty() && zone.is_empty() && subzone.is_empty() {
        return String::new();
    }
    format!("{region}/{zone}/{subzone}")
}

fn named_ports(spec: &PodSpec) -> BTreeMap<String, u32> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p: &ContainerPort| {
            let n = p.name.clone()?;
            Some((n, u32::try_from(p.container_port).ok()?))
        })
        .collect()
}

fn service_account(spec: &PodSpec) -> String {
    spec.service_account_name
        .clone()
        .or_else(|| spec.service_account.clone())
        .unwrap_or_else(|| "default".to_string())
}

/// All workloads of the config, sorted by (namespace, kind, name, replica).
pub fn collect(config: &spar_model::ConfigSet) -> Vec<Workload> {
    let mut out = Vec::new();
    for r in config.resources() {
        if let Some(pod) = r.body.pod() {
            let address = pod
                .status
                .as_ref()
                .and_then(|s| {
                    s.pod_ip
                        .clone()
                        .or_else(|| s.pod_ips.first().map(|p| p.ip.clone()))
                })
                .filter(|ip| !ip.is_empty());
            out.push(Workload {
                kind: Kind::Pod,
                name: r.meta.name.clone(),
                namespace: r.meta.namespace.clone(),
                replica: 0,
                address,
                labels: r.meta.labels.clone(),
                service_account: service_account(&pod.spec),
                has_sidecar: !sidecar_disabled(&r.meta.annotations, &r.meta.labels),
                locality: locality_from_labels(&r.meta.labels),
                weight: 1,
                named_ports: named_ports(&pod.spec),
                synthetic: false,
            });
        } else if let Some(d) = r.body.deployment() {
            let t = &d.spec.template;
            let replicas = u32::try_from(d.spec.replicas.unwrap_or(1)).unwrap_or(0);
            for i in 0..replicas {
                out.push(Workload {
                    kind: Kind::Deployment,
                    name: r.meta.name.clone(),
                    namespace: r.meta.namespace.clone(),
                    replica: i,
                    address: None,
                    labels: t.metadata.labels.clone(),
                    service_account: service_account(&t.spec),
                    has_sidecar: !sidecar_disabled(&t.metadata.annotations, &t.metadata.labels),
                    locality: locality_from_labels(&t.metadata.labels),
                    weight: 1,
                    named_ports: named_ports(&t.spec),
                    synthetic: false,
                });
            }
        } else if let Some(we) = r.body.workload_entry() {
            out.push(from_workload_entry(we, &r.meta, Kind::WorkloadEntry));
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, a.kind.kind_name(), &a.name, a.replica).cmp(&(
            &b.namespace,
            b.kind.kind_name(),
            &b.name,
            b.replica,
        ))
    });
    assign_synthetic(&mut out);
    out
}

/// A WorkloadEntry (standalone or inline in a ServiceEntry) as a workload.
pub fn from_workload_entry(
    we: &spar_model::istio::types::WorkloadEntry,
    meta: &ObjectMeta,
    kind: Kind,
) -> Workload {
    let mut labels = meta.labels.clone();
    labels.extend(we.labels.clone());
    Workload {
        kind,
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        replica: 0,
        address: we.address.clone().filter(|a| !a.is_empty()),
        service_account: we
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        has_sidecar: !sidecar_disabled(&meta.annotations, &labels),
        locality: we
            .locality
            .clone()
            .unwrap_or_else(|| locality_from_labels(&labels)),
        weight: we.weight.filter(|w| *w > 0).unwrap_or(1),
        named_ports: we.ports.clone(),
        synthetic: false,
        labels,
    }
}

/// 32-bit FNV-1a: tiny, stable across releases and platforms (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The preferred synthetic address of a workload (see the module docs).
pub fn synthetic_ip(namespace: &str, kind: &str, name: &str, replica: u32) -> u32 {
    let h = fnv1a(format!("{namespace}/{kind}/{name}/{replica}").as_bytes()) & 0x00ff_ffff;
    (240 << 24) | h
}

fn ip_string(ip: u32) -> String {
    std::net::Ipv4Addr::from(ip).to_string()
}

/// Gives every workload without an address a synthetic one, probing past collisions
/// (with real addresses too) in the workloads' sorted order.
fn assign_synthetic(workloads: &mut [Workload]) {
    let mut taken: BTreeSet<String> = workloads.iter().filter_map(|w| w.address.clone()).collect();
    for w in workloads.iter_mut().filter(|w| w.address.is_none()) {
        let mut ip = synthetic_ip(&w.namespace, w.kind.kind_name(), &w.name, w.replica);
        while taken.contains(&ip_string(ip)) {
            ip = (240 << 24) | (ip.wrapping_add(1) & 0x00ff_ffff);
        }
        let s = ip_string(ip);
        taken.insert(s.clone());
        w.address = Some(s);
        w.synthetic = true;
    }
}

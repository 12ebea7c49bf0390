//! One simulated sidecar: who it is (an Istio node), what it has been sent, and the events
//! the bench collects from it (full config received, endpoint change seen). The wire side
//! lives in `sotw` and `delta`; this module is what both share.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::names::{IdSet, Interner};
use crate::scan;

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect to the control plane at {addr}: {source} (is `spar control-plane` running there?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the ADS stream failed: {0}")]
    Stream(String),
    #[error("the control plane closed the ADS stream")]
    Closed,
    #[error("cannot read a {type_url} resource: {detail}")]
    Decode { type_url: String, detail: String },
}

impl From<scan::ScanError> for ProxyError {
    fn from(e: scan::ScanError) -> Self {
        ProxyError::Decode {
            type_url: CLUSTER.into(),
            detail: e.to_string(),
        }
    }
}

impl From<prost::DecodeError> for ProxyError {
    fn from(e: prost::DecodeError) -> Self {
        ProxyError::Decode {
            type_url: "protobuf".into(),
            detail: e.to_string(),
        }
    }
}

/// An endpoint change the bench is about to write: which ClusterLoadAssignment will carry
/// which new address.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: u64,
    pub cluster: String,
    pub ip: String,
}

/// What a simulated proxy reports to the collector.
#[derive(Debug)]
pub enum Event {
    /// Every type received and ACKed (CDS, EDS for every EDS cluster, LDS, RDS for every
    /// route name); counts of clusters, assignments, listeners, routes.
    Full {
        at: Instant,
        counts: [usize; 4],
    },
    /// Whether the proxy subscribes to the target's cluster.
    Affected {
        change: u64,
        proxy: usize,
        affected: bool,
    },
    Failed {
        proxy: usize,
        error: String,
    },
}

/// Shared by every simulated proxy.
pub struct Shared {
    pub addr: String,
    pub events: mpsc::UnboundedSender<Event>,
    /// ACKs of the announced endpoint change (not sent as events: see [`Convergence`]).
    pub convergence: Arc<Convergence>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub connect_gate: tokio::sync::Semaphore,
    /// Every resource name seen, numbered.
    pub names: Interner,
    /// Distinct EDS subscriptions seen, so 2,000 proxies of 20 workloads hold 20 sets.
    interned: Mutex<Vec<Arc<Wanted>>>,
}

impl Shared {
    pub fn new(
        addr: String,
        events: mpsc::UnboundedSender<Event>,
        target: watch::Receiver<Option<Arc<Target>>>,
        connect_concurrency: usize,
    ) -> Shared {
        Shared {
            addr,
            events,
            convergence: Arc::default(),
            target,
            connect_gate: tokio::sync::Semaphore::new(connect_concurrency.max(1)),
            names: Interner::default(),
            interned: Mutex::new(Vec::new()),
        }
    }

    /// One shared copy of an equal set.
    pub fn intern(&self, set: IdSet) -> Arc<Wanted> {
        let mut all = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = all.iter().find(|w| w.set == set) {
            return found.clone();
        }
        let ids: Vec<_> = set.iter().collect();
        let names = self.names.sorted_names(&ids);
        let encoded = crate::wire::encode_names(&names);
        let wanted = Arc::new(Wanted { set, encoded });
        all.push(wanted.clone());
        wanted
    }
}

/// Names a proxy subscribes to, as numbers and as the sorted list its requests carry.
#[derive(Debug, Default)]
pub struct Wanted {
    pub set: IdSet,
    /// The names, sorted, as a SotW request's field 3 ([`crate::wire::encode_names`]).
    pub encoded: bytes::Bytes,
}

/// Who a simulated proxy is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub index: usize,
    pub workload: String,
    pub namespace: String,
}

impl Identity {
    /// Istio's sidecar node: `sidecar~IP~POD.NS~NS.svc.cluster.local`, with the metadata
    /// Istio's agent sends (labels, namespace, workload, service account).
    pub fn node(&self) -> Node {
        let i = self.index;
        let ip = format!("10.{}.{}.{}", 128 + (i >> 16) % 64, (i >> 8) & 255, i & 255);
        let s = |v: &str| Value {
            kind: Some(Kind::StringValue(v.to_string())),
        };
        let labels = Struct {
            fields: [("app", &self.workload), ("version", &"v1".to_string())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), s(v)))
                .collect(),
        };
        let mut fields: std::collections::BTreeMap<String, Value> = [
            ("NAMESPACE", self.namespace.as_str()),
            ("WORKLOAD_NAME", self.workload.as_str()),
            ("SERVICE_ACCOUNT", self.workload.as_str()),
            ("CLUSTER_ID", "Kubernetes"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), s(v)))
        .collect();
        fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        Node {
            id: format!(
                "sidecar~{ip}~{}-{i}.{ns}~{ns}.svc.cluster.local",
                self.workload,
                ns = self.namespace
            ),
            cluster: self.workload.clone(),
            metadata: Some(Struct {
                fields: fields.into_iter().collect(),
            }),
            ..Default::default()
        }
    }
}

/// What one proxy holds, type by type, and whether its first full config is complete.
#[derive(Default)]
pub struct Holdings {
    pub clusters: usize,
    /// EDS names the clusters call for (what the proxy subscribes to).
    pub eds_wanted: Arc<Wanted>,
    pub eds_held: IdSet,
    pub listeners: usize,
    pub rds_wanted: Vec<String>,
    pub rds_held: HashSet<String>,
    pub got_cds: bool,
    pub got_lds: bool,
    pub full_reported: bool,
    /// The change whose address this proxy already reported.
    pub converged: Option<u64>,
}

impl Holdings {
    fn complete(&self) -> bool {
        self.got_cds
            && self.got_lds
            && self.eds_wanted.set.is_subset(&self.eds_held)
            && self.rds_wanted.iter().all(|n| self.rds_held.contains(n))
    }

    /// Reports the first complete config once.
    pub fn check_full(&mut self, shared: &Shared) {
        if !self.full_reported && self.complete() {
            self.full_reported = true;
            let _ = shared.events.send(Event::Full {
                at: Instant::now(),
                counts: [
                    self.clusters,
                    self.eds_held.len(),
                    self.listeners,
                    self.rds_held.len(),
                ],
            });
        }
    }
}

/// The route configuration names a listener's HTTP connection managers ask for over RDS.
pub fn rds_names(listener: &[u8], out: &mut Vec<String>) -> Result<(), ProxyError> {
    let l = Listener::decode(listener)?;
    let chains = l.filter_chains.iter().chain(l.default_filter_chain.iter());
    for f in chains.flat_map(|c| c.filters.iter()) {
        let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
            any,
        )) = &f.config_type
        else {
            continue;
        };
        if !any.type_url.ends_with(".HttpConnectionManager") {
            continue;
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice())?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            out.push(rds.route_config_name);
        }
    }
    Ok(())
}

/// Whether an encoded ClusterLoadAssignment lists an endpoint at `ip`: read in place
/// (2,000 proxies check the changed assignment on every change), following
/// `endpoints[].lb_endpoints[].endpoint.address.socket_address.address` (field numbers
/// 2, 2, 1, 1, 1, 2).
pub fn assignment_has(cla: &[u8], ip: &str) -> Result<bool, ProxyError> {
    fn nested<'a>(msg: &'a [u8], number: u64, out: &mut Vec<&'a [u8]>) -> Result<(), ProxyError> {
        scan::fields(msg, |n, v| {
            if let (true, scan::Value::Bytes(b)) = (n == number, v) {
                out.push(b);
            }
        })?;
        Ok(())
    }
    let mut localities = Vec::new();
    nested(cla, 2, &mut localities)?;
    for locality in localities {
        let mut lb_endpoints = Vec::new();
        nested(locality, 2, &mut lb_endpoints)?;
        for lb in lb_endpoints {
            let endpoint = scan::bytes_field(lb, 1)?;
            let address = scan::bytes_field(endpoint, 1)?;
            let socket = scan::bytes_field(address, 1)?;
            if scan::bytes_field(socket, 2)? == ip.as_bytes() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Checks an EDS resource against the pending target; reports convergence once per change.
/// Call after the ACK went out.
pub fn check_target(
    shared: &Shared,
    held: &mut Holdings,
    proxy: usize,
    target: Option<&Target>,
    name: &[u8],
    cla: &[u8],
) -> Result<(), ProxyError> {
    let Some(t) = target else { return Ok(()) };
    if held.converged == Some(t.id) || name != t.cluster.as_bytes() || !assignment_has(cla, &t.ip)?
    {
        return Ok(());
    }
    held.converged = Some(t.id);
    shared.convergence.record(proxy, SystemTime::now());
    Ok(())
}

/// When each affected proxy ACKed the announced change. An event per proxy woke the
/// collector's thread 2,000 times per change (a futex wake and a context switch each, the
/// load client's largest cost while the control plane pushed); the collector is woken
/// once, by the ACK that completes the change.
#[derive(Default)]
pub struct Convergence {
    acks: Mutex<Vec<(usize, SystemTime)>>,
    goal: std::sync::atomic::AtomicUsize,
    reached: tokio::sync::Notify,
}

impl Convergence {
    /// Starts a change that `goal` proxies must ACK; before the change is written.
    pub fn arm(&self, goal: usize) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.clear();
        self.goal.store(goal, std::sync::atomic::Ordering::Release);
    }

    fn record(&self, proxy: usize, at: SystemTime) {
        let n = {
            let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
            acks.push((proxy, at));
            acks.len()
        };
        if n == self.goal.load(std::sync::atomic::Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// The ACKs so far, once the goal is reached or `deadline` passes.
    pub async fn wait(&self, deadline: tokio::time::Instant) -> Vec<(usize, SystemTime)> {
        loop {
            let reached = self.reached.notified();
            {
                let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
                if acks.len() >= self.goal.load(std::sync::atomic::Ordering::Acquire) {
                    return acks.clone();
                }
            }
            tokio::select! {
                () = reached => {}
                () = tokio::time::sleep_until(deadline) => {
                    return self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
                }
            }
        }
    }
}

/// Tells the collector whether this proxy is affected by a newly announced target.
pub fn announce(shared: &Shared, held: &Holdings, proxy: usize, target: Option<&Target>) {
    if let Some(t) = target {
        let _ = shared.events.send(Event::Affected {
            change: t.id,
            proxy,
            affected: held
                .eds_wanted
                .set
                .contains(shared.names.id(t.cluster.as_bytes())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    use envoy_types::pb::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
    };

    fn endpoint(ip: &str) -> LbEndpoint {
        LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: ip.into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value {
                value: 1,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn finds_an_address_in_any_locality() {
        let cla = ClusterLoadAssignment {
            cluster_name: "outbound|80||a".into(),
            endpoints: vec![
                LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint("10.0.0.1")],
                    ..Default::default()
                },
                LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint("10.0.0.2"), endpoint("10.64.0.7")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(assignment_has(&cla, "10.64.0.7").expect("reads"));
        assert!(assignment_has(&cla, "10.0.0.1").expect("reads"));
        assert!(!assignment_has(&cla, "10.64.0.70").expect("reads"));
        assert!(assignment_has(&cla[..cla.len() - 1], "10.64.0.7").is_err());
    }
}

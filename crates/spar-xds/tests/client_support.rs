//! For the xDS client tests: a control plane (the real `AdsServer` over a `StaticSource`) on
//! its own thread and runtime, so a test can kill it the way a crashed process goes away and
//! start it again on the same port; and a handler that keeps what it accepted, rejects
//! clusters with a zero connect timeout, and wants what its clusters and listeners name.
//! Included by the `client_*.rs` tests with `#[path]`; as its own test target it has no tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds,
};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use spar_translate::XdsResources;
use spar_xds::client::{ClientConfig, ClientStats, Mode, TypeUpdate, XdsClient, XdsHandler};
use spar_xds::{
    AdsServer, Metrics, ProxyStatus, ServeOptions, StaticSource, StatusRegistry, SyncState,
};

pub const NODE: &str = "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local";
pub const WAIT: Duration = Duration::from_secs(20);
pub const BAD_TIMEOUT: &str = "connect_timeout must be positive";

// === config builders ===

pub fn eds_cluster(name: &str, timeout_s: i64) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(PbDuration {
            seconds: timeout_s,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            service_name: format!("{name}-eds"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn http_listener(name: &str, route: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: route.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager".to_string(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Clusters (name, connect timeout) with their endpoints under `<name>-eds`, plus one
/// unused assignment; listeners (name → route); routes by name.
pub fn mesh(clusters: &[(&str, i64)], listeners: &[(&str, &str)], routes: &[&str]) -> XdsResources {
    let mut endpoints: Vec<ClusterLoadAssignment> = clusters
        .iter()
        .map(|(n, _)| ClusterLoadAssignment {
            cluster_name: format!("{n}-eds"),
            ..Default::default()
        })
        .collect();
    endpoints.push(ClusterLoadAssignment {
        cluster_name: "unused-eds".to_string(),
        ..Default::default()
    });
    XdsResources {
        clusters: clusters.iter().map(|(n, t)| eds_cluster(n, *t)).collect(),
        endpoints,
        listeners: listeners.iter().map(|(l, r)| http_listener(l, r)).collect(),
        routes: routes
            .iter()
            .map(|n| RouteConfiguration {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        secrets: Vec::new(),
    }
}

/// The usual starting point: two clusters, one listener using r1, and an unused route r2.
pub fn typical() -> XdsResources {
    mesh(&[("c1", 1), ("c2", 1)], &[("l1", "r1")], &["r1", "r2"])
}

// === the control plane ===

pub struct Server {
    pub addr: SocketAddr,
    pub source: Arc<StaticSource>,
    pub status: Arc<StatusRegistry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts on a free port.
    pub fn start(source: Arc<StaticSource>) -> Server {
        Server::start_at(source, "127.0.0.1:0".parse().unwrap(), false)
    }

    /// Starts on `addr` (a port a stopped server used); `sotw_only` refuses Delta.
    pub fn start_at(source: Arc<StaticSource>, addr: SocketAddr, sotw_only: bool) -> Server {
        // std sets SO_REUSEADDR, so the port of a stopped server can be bound again.
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(StatusRegistry::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (src, st) = (source.clone(), status.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let ads = AdsServer::new(src, st, Arc::new(Metrics::new()));
                let opts = ServeOptions {
                    refuse_delta: sotw_only,
                    ..ServeOptions::default()
                };
                ads.serve(listener, opts, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
            // Dropping the runtime drops every connection task: sockets close as if the
            // process had died.
            drop(rt);
        });
        Server {
            addr,
            source,
            status,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The authenticated ADS (as on the control plane's port 15012) over TLS with a
    /// certificate for `istiod.istio-system.svc`; callers must send `Bearer t0k`. Returns
    /// the server (at `https://`) and the root to trust.
    pub fn start_secure(source: Arc<StaticSource>) -> (Server, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![SECURE_NAME.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(StatusRegistry::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (src, st, pem) = (source.clone(), status.clone(), cert_pem.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let ads = AdsServer::new(src, st, Arc::new(Metrics::new()));
                let tls = tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(pem, key_pem));
                tonic::transport::Server::builder()
                    .tls_config(tls)
                    .unwrap()
                    .add_service(ads.secure_service(Arc::new(TokenT0k)))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .unwrap();
            });
            drop(rt);
        });
        let server = Server {
            addr,
            source,
            status,
            stop: Some(stop),
            thread: Some(thread),
        };
        (server, cert_pem)
    }

    /// Kills the server and its connections.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Polls the status until `pred` holds for our proxy.
    pub async fn status_until(
        &self,
        what: &str,
        pred: impl Fn(&ProxyStatus) -> bool,
    ) -> ProxyStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = self
                .status
                .all()
                .into_iter()
                .find(|p| p.proxy == NODE && pred(p))
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.status.all()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every type in `types` is SYNCED at the latest version sent.
    pub async fn synced(&self, types: &[&str]) -> ProxyStatus {
        self.status_until(&format!("{types:?} synced"), |p| {
            types.iter().all(|t| {
                p.types.get(t).is_some_and(|s| {
                    s.state == SyncState::Synced && s.acked_version == s.sent_version
                })
            })
        })
        .await
    }
}

/// The name on the secure test server's certificate.
pub const SECURE_NAME: &str = "istiod.istio-system.svc";

/// Knows one token, `t0k`, for the test node's identity; issues placeholder certificates.
struct TokenT0k;

impl spar_xds::WorkloadIdentity for TokenT0k {
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        _extensions: &http::Extensions,
    ) -> Result<String, tonic::Status> {
        match headers.get("authorization").map(|v| v.as_bytes()) {
            Some(b"Bearer t0k") => Ok("spiffe://cluster.local/ns/default/sa/reviews".into()),
            _ => Err(tonic::Status::unauthenticated("send Bearer t0k")),
        }
    }

    fn issue(&self, identity: &str) -> Result<spar_xds::Issued, tonic::Status> {
        Ok(spar_xds::Issued {
            chain_pem: format!("chain for {identity}"),
            key_pem: "key".into(),
            roots_pem: "root".into(),
            lifetime: Duration::from_secs(3600),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// === the proxy side ===

#[derive(Default)]
struct Held {
    /// type url → name → resource bytes.
    types: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Every accepted update: (type url, names in it, names removed).
    log: Vec<(String, Vec<String>, Vec<String>)>,
    connected: bool,
}

/// Keeps what it accepted; rejects a whole update if any cluster has a zero timeout.
#[derive(Default)]
pub struct Recorder {
    held: Mutex<Held>,
    secrets: Mutex<BTreeSet<String>>,
}

impl Recorder {
    /// A handler that wants these SDS secrets.
    pub fn wanting_secrets(names: &[&str]) -> Recorder {
        Recorder {
            secrets: Mutex::new(names.iter().map(|n| n.to_string()).collect()),
            ..Recorder::default()
        }
    }

    pub fn names(&self, type_url: &str) -> Vec<String> {
        let held = self.held.lock().unwrap();
        held.types
            .get(type_url)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The bytes of a held resource.
    pub fn resource(&self, type_url: &str, name: &str) -> Option<Vec<u8>> {
        let held = self.held.lock().unwrap();
        held.types.get(type_url).and_then(|m| m.get(name)).cloned()
    }

    pub fn cluster(&self, name: &str) -> Option<Cluster> {
        let held = self.held.lock().unwrap();
        held.types
            .get(CLUSTER)
            .and_then(|m| m.get(name))
            .map(|b| Cluster::decode(b.as_slice()).unwrap())
    }

    /// The accepted updates in order: (type url, names, removed).
    pub fn log(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        self.held.lock().unwrap().log.clone()
    }

    pub fn connected(&self) -> bool {
        self.held.lock().unwrap().connected
    }

    /// Polls until `pred` holds.
    pub async fn until(&self, what: &str, pred: impl Fn(&Recorder) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !pred(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {:#?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn route_names(listener: &[u8]) -> Vec<String> {
        let l = Listener::decode(listener).unwrap();
        l.filter_chains
            .iter()
            .flat_map(|c| &c.filters)
            .filter_map(|f| match &f.config_type {
                Some(ConfigType::TypedConfig(a)) => {
                    HttpConnectionManager::decode(a.value.as_slice()).ok()
                }
                _ => None,
            })
            .filter_map(|h| match h.route_specifier {
                Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
                _ => None,
            })
            .collect()
    }
}

impl XdsHandler for Recorder {
    fn apply(&self, update: &TypeUpdate) -> Result<(), String> {
        if update.type_url == CLUSTER {
            for r in &update.resources {
                let c = Cluster::decode(r.resource.value.as_slice()).map_err(|e| e.to_string())?;
                if c.connect_timeout
                    .is_none_or(|t| t.seconds == 0 && t.nanos == 0)
                {
                    return Err(format!("cluster {}: {BAD_TIMEOUT}", c.name));
                }
            }
        }
        let mut held = self.held.lock().unwrap();
        let m = held.types.entry(update.type_url.clone()).or_default();
        if update.full_state {
            m.clear();
        }
        for n in &update.removed {
            m.remove(n);
        }
        for r in &update.resources {
            m.insert(r.name.clone(), r.resource.value.clone());
        }
        let names = update.resources.iter().map(|r| r.name.clone()).collect();
        held.log
            .push((update.type_url.clone(), names, update.removed.clone()));
        Ok(())
    }

    fn wanted(&self, type_url: &str) -> Option<BTreeSet<String>> {
        let held = self.held.lock().unwrap();
        let of = |t: &str| held.types.get(t).cloned().unwrap_or_default();
        Some(match type_url {
            ENDPOINT => of(CLUSTER)
                .values()
                .filter_map(|b| Cluster::decode(b.as_slice()).ok())
                .filter(|c| {
                    c.cluster_discovery_type
                        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
                })
                // Envoy's rule: the EDS name is service_name, or else the cluster's name.
                .map(|c| match c.eds_cluster_config {
                    Some(e) if !e.service_name.is_empty() => e.service_name,
                    _ => c.name,
                })
                .collect(),
            ROUTE => of(LISTENER)
                .values()
                .flat_map(|b| Recorder::route_names(b))
                .collect(),
            SECRET => self.secrets.lock().unwrap().clone(),
            _ => return None,
        })
    }

    fn on_connected(&self, connected: bool) {
        self.held.lock().unwrap().connected = connected;
    }
}

pub fn config(server: String, mode: Mode) -> ClientConfig {
    ClientConfig {
        server,
        node: Node {
            id: NODE.to_string(),
            ..Default::default()
        },
        mode,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..ClientConfig::default()
    }
}

/// A running client: its handler, counters and the switch that stops it.
pub struct Running {
    pub handler: Arc<Recorder>,
    pub stats: Arc<ClientStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn start(server: String, mode: Mode) -> Running {
        Running::with(server, mode, Recorder::default())
    }

    pub fn with(server: String, mode: Mode, handler: Recorder) -> Running {
        Running::with_config(config(server, mode), handler)
    }

    pub fn with_config(cfg: ClientConfig, handler: Recorder) -> Running {
        let handler = Arc::new(handler);
        let client = XdsClient::new(cfg, handler.clone());
        let stats = client.stats();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            client
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            handler,
            stats,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the client and waits for `run` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task.take().unwrap())
            .await
            .expect("run returns after shutdown")
            .unwrap();
    }
}

/// The order in which types were first accepted.
pub fn first_seen(log: &[(String, Vec<String>, Vec<String>)]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (t, _, _) in log {
        let short = spar_xds::resources::short_name(t);
        if !out.contains(&short) {
            out.push(short);
        }
    }
    out
}

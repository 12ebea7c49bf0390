//! An ADS server on a free port over fixed resources, and a client that speaks to it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use spar_translate::XdsResources;
use spar_xds::{AdsServer, Metrics, ProxyStatus, ServeOptions, StaticSource, StatusRegistry};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub const NODE: &str = "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local";
const WAIT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub source: Arc<StaticSource>,
    pub status: Arc<StatusRegistry>,
    pub metrics: Arc<Metrics>,
    pub client: AggregatedDiscoveryServiceClient<Channel>,
}

pub fn cluster(name: &str, timeout_s: i64) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: timeout_s,
            nanos: 0,
        }),
        ..Default::default()
    }
}

pub fn resources(clusters: &[(&str, i64)], listeners: &[&str], routes: &[&str]) -> XdsResources {
    XdsResources {
        clusters: clusters.iter().map(|(n, t)| cluster(n, *t)).collect(),
        listeners: listeners
            .iter()
            .map(|n| Listener {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        routes: routes
            .iter()
            .map(|n| RouteConfiguration {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn start(initial: XdsResources) -> Harness {
    let source = Arc::new(StaticSource::new(&initial));
    let status = Arc::new(StatusRegistry::default());
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ads = AdsServer::new(source.clone(), status.clone(), metrics.clone());
    tokio::spawn(ads.serve(listener, ServeOptions::default(), std::future::pending()));
    let client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Harness {
        source,
        status,
        metrics,
        client,
    }
}

pub fn node() -> Option<Node> {
    Some(Node {
        id: NODE.to_string(),
        ..Default::default()
    })
}

pub struct Sotw {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    pub rx: Streaming<DiscoveryResponse>,
}

impl Harness {
    pub async fn sotw(&mut self) -> Sotw {
        let (tx, rx) = mpsc::channel(16);
        let rx = self
            .client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Sotw { tx, rx }
    }

    pub async fn delta(&mut self) -> Delta {
        let (tx, rx) = mpsc::channel(16);
        let rx = self
            .client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Delta { tx, rx }
    }

    /// Polls the status registry until `pred` holds for the proxy, or panics at the deadline.
    pub async fn status_until(
        &self,
        what: &str,
        pred: impl Fn(&ProxyStatus) -> bool,
    ) -> ProxyStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = self.status.all().into_iter().find(|p| pred(p)) {
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
}

impl Sotw {
    pub async fn send(&self, req: DiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("stream open")
    }
}

pub struct Delta {
    pub tx: mpsc::Sender<DeltaDiscoveryRequest>,
    pub rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    pub async fn send(&self, req: DeltaDiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("stream open")
    }
}

pub fn names_of(resp: &DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    resp.resources
        .iter()
        .map(|a| match a.type_url.as_str() {
            spar_translate::type_url::CLUSTER => Cluster::decode(a.value.as_slice()).unwrap().name,
            spar_translate::type_url::LISTENER => {
                Listener::decode(a.value.as_slice()).unwrap().name
            }
            _ => RouteConfiguration::decode(a.value.as_slice()).unwrap().name,
        })
        .collect()
}

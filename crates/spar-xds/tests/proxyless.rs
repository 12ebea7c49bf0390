//! Proxyless gRPC clients (node metadata `GENERATOR: grpc`) name their listeners; the server
//! asks the source for exactly those, and no type is a wildcard for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use prost::Message;
use spar_translate::type_url::{CLUSTER, LISTENER};
use spar_translate::ProxyNode;
use spar_xds::{AdsServer, Encoded, Metrics, ResourceSource, ServeOptions, StatusRegistry};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

/// One listener per requested target and one cluster `c-<target>` each; remembers what
/// was asked.
struct Recording {
    tx: watch::Sender<u64>,
    asked: Mutex<Vec<BTreeSet<String>>>,
}

impl ResourceSource for Recording {
    fn changes(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn resources(&self, _node: &ProxyNode) -> Arc<Encoded> {
        panic!("a proxyless client must be served by grpc_resources");
    }

    fn grpc_resources(&self, _node: &ProxyNode, listeners: &BTreeSet<String>) -> Arc<Encoded> {
        self.asked.lock().unwrap().push(listeners.clone());
        let mut enc = Encoded::default();
        for l in listeners {
            let listener = Listener {
                name: l.clone(),
                ..Default::default()
            };
            enc.insert(LISTENER, l, &listener);
            let c = format!("c-{l}");
            let cluster = Cluster {
                name: c.clone(),
                ..Default::default()
            };
            enc.insert(CLUSTER, &c, &cluster);
        }
        Arc::new(enc)
    }
}

fn grpc_node() -> Option<Node> {
    let mut meta = Struct::default();
    meta.fields.insert(
        "GENERATOR".to_string(),
        Value {
            kind: Some(Kind::StringValue("grpc".to_string())),
        },
    );
    Some(Node {
        id: "sidecar~10.0.0.7~client-1.default~default.svc.cluster.local".to_string(),
        metadata: Some(meta),
        ..Default::default()
    })
}

fn req(t: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: grpc_node(),
        type_url: t.to_string(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn listeners_are_translated_by_name() {
    let (tx, _) = watch::channel(1);
    let source = Arc::new(Recording {
        tx,
        asked: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ads = AdsServer::new(
        source.clone(),
        Arc::new(StatusRegistry::default()),
        Arc::new(Metrics::new()),
    );
    tokio::spawn(ads.serve(listener, ServeOptions::default(), std::future::pending()));
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (rtx, rrx) = tokio::sync::mpsc::channel(8);
    let mut rx = client
        .stream_aggregated_resources(ReceiverStream::new(rrx))
        .await
        .unwrap()
        .into_inner();
    let target = "xds:///echo.default.svc.cluster.local:7070";
    rtx.send(req(LISTENER, &[target], "")).await.unwrap();
    let lds = recv(&mut rx).await;
    let names: Vec<String> = lds
        .resources
        .iter()
        .map(|a| Listener::decode(a.value.as_slice()).unwrap().name)
        .collect();
    assert_eq!(names, [target]);
    // An empty CDS request is not a wildcard for a gRPC client.
    rtx.send(req(CLUSTER, &[], "")).await.unwrap();
    let cds = recv(&mut rx).await;
    assert!(cds.resources.is_empty());
    let c = format!("c-{target}");
    rtx.send(req(CLUSTER, &[&c], &cds.nonce)).await.unwrap();
    let cds = recv(&mut rx).await;
    assert_eq!(cds.resources.len(), 1);
    let asked = source.asked.lock().unwrap().clone();
    assert!(asked.iter().any(|a| a.contains(target)), "{asked:?}");
}

async fn recv(
    rx: &mut tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open")
}

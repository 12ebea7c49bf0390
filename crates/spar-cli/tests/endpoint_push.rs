//! Endpoint-only changes: when an `Endpoints` file changes and nothing else, a connected
//! proxy gets EDS alone (CDS, LDS and RDS bytes are unchanged, so they are not resent).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use support::*;
use tokio_stream::wrappers::ReceiverStream;

const NODE: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";
const EDS_NAME: &str = "outbound|9080||reviews.default.svc.cluster.local";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

fn endpoints(ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Endpoints
metadata: {{name: reviews, namespace: default}}
subsets:
- addresses: [{{ip: {ip}}}]
  ports: [{{name: http, port: 9080}}]
"
    )
}

fn request(t: &str, names: &[&str], ack: Option<&DiscoveryResponse>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: NODE.to_string(),
            ..Default::default()
        }),
        type_url: t.to_string(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: ack.map(|r| r.version_info.clone()).unwrap_or_default(),
        response_nonce: ack.map(|r| r.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

async fn next(responses: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_only_change_pushes_eds_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.yaml"), SERVICE).unwrap();
    std::fs::write(dir.path().join("ep.yaml"), endpoints("10.0.0.1")).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.xds))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for (t, names) in [
        (CLUSTER, vec![]),
        (ENDPOINT, vec![EDS_NAME]),
        (LISTENER, vec![]),
        (ROUTE, vec!["9080"]),
    ] {
        tx.send(request(t, &names, None)).await.unwrap();
        let r = next(&mut responses).await;
        assert_eq!(r.type_url, t);
        tx.send(request(t, &names, Some(&r))).await.unwrap();
    }
    std::fs::write(dir.path().join("ep.yaml"), endpoints("10.0.0.2")).unwrap();
    let eds = next(&mut responses).await;
    assert_eq!(
        eds.type_url, ENDPOINT,
        "the first push after the change is EDS"
    );
    assert!(
        eds.resources
            .iter()
            .any(|a| a.value.windows(8).any(|w| w == b"10.0.0.2")),
        "EDS carries the new address"
    );
    tx.send(request(ENDPOINT, &[EDS_NAME], Some(&eds)))
        .await
        .unwrap();
    // Nothing else follows: CDS, LDS and RDS did not change.
    let more = tokio::time::timeout(Duration::from_millis(1500), responses.message()).await;
    assert!(more.is_err(), "only EDS was pushed, then {more:?}");
}

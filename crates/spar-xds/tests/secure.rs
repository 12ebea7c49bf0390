//! ADS on the secure port: a caller that proves nothing is refused; an authenticated one
//! gets its own `default` and `ROOTCA` secrets, renewed at half the certificate's lifetime
//! and pushed; the plaintext port never sends them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::Message;
use spar_translate::type_url::SECRET;
use spar_xds::WorkloadIdentity;
use spar_xds::{AdsServer, Issued, Metrics, ServeOptions, StaticSource, StatusRegistry};
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

const ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";
/// An identity of another namespace than the node's (`default`).
const OTHER: &str = "spiffe://cluster.local/ns/other/sa/reviews";

/// Accepts `Bearer good`; each certificate names how many were issued before it.
#[derive(Default)]
struct FakeCa {
    issued: AtomicUsize,
}

impl WorkloadIdentity for FakeCa {
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        _extensions: &http::Extensions,
    ) -> Result<String, Status> {
        match headers.get("authorization").map(|v| v.as_bytes()) {
            Some(b"Bearer good") => Ok(ID.to_string()),
            Some(b"Bearer other") => Ok(OTHER.to_string()),
            _ => Err(Status::unauthenticated("no good token")),
        }
    }

    fn issue(&self, identity: &str) -> Result<Issued, Status> {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        Ok(Issued {
            chain_pem: format!("chain {n} for {identity}"),
            key_pem: format!("key {n}"),
            roots_pem: "the root".into(),
            lifetime: Duration::from_secs(2),
        })
    }
}

struct Ports {
    plain: String,
    secure: String,
    ca: Arc<FakeCa>,
}

async fn serve() -> Ports {
    let mut initial = resources(&[("a", 1)], &[], &[]);
    // A gateway certificate (credentialName) of the node's namespace.
    initial.secrets.push(Secret {
        name: "gw-cert".into(),
        ..Default::default()
    });
    let source = Arc::new(StaticSource::new(&initial));
    let ads = AdsServer::new(
        source,
        Arc::new(StatusRegistry::default()),
        Arc::new(Metrics::new()),
    );
    let ca = Arc::new(FakeCa::default());
    let secure = ads.secure_service(ca.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure_addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(secure)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = l.local_addr().unwrap();
    tokio::spawn(ads.serve(l, ServeOptions::default(), std::future::pending()));
    Ports {
        plain: format!("http://{plain_addr}"),
        secure: format!("http://{secure_addr}"),
        ca,
    }
}

fn secrets_request() -> DiscoveryRequest {
    DiscoveryRequest {
        node: node(),
        type_url: SECRET.to_string(),
        resource_names: vec!["default".into(), "ROOTCA".into()],
        ..Default::default()
    }
}

fn chain_of(s: &Secret) -> String {
    match &s.r#type {
        Some(secret::Type::TlsCertificate(c)) => match c
            .certificate_chain
            .as_ref()
            .and_then(|d| d.specifier.clone())
        {
            Some(
                envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b),
            ) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_caller_without_credentials_is_refused() {
    let p = serve().await;
    let mut c = AggregatedDiscoveryServiceClient::connect(p.secure)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(secrets_request()).await.unwrap();
    let err = match c.stream_aggregated_resources(ReceiverStream::new(rx)).await {
        Err(e) => e,
        Ok(s) => s.into_inner().message().await.expect_err("refused"),
    };
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert_eq!(p.ca.issued.load(Ordering::SeqCst), 0, "nothing issued");
}

#[tokio::test]
async fn an_authenticated_proxy_gets_its_own_secrets_and_renewals() {
    let p = serve().await;
    let mut c = AggregatedDiscoveryServiceClient::connect(p.secure)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(secrets_request()).await.unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    let mut stream = c
        .stream_aggregated_resources(req)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let secrets: Vec<Secret> = first
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap())
        .collect();
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ROOTCA", "default"]);
    assert_eq!(chain_of(&secrets[1]), format!("chain 0 for {ID}"));
    tx.send(DiscoveryRequest {
        type_url: SECRET.into(),
        resource_names: vec!["default".into(), "ROOTCA".into()],
        version_info: first.version_info.clone(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Renewed at half the 2 s lifetime, and pushed without being asked.
    let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a renewal push")
        .unwrap()
        .unwrap();
    let renewed: Vec<Secret> = next
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap())
        .collect();
    assert_eq!(renewed.len(), 1, "only the changed secret: {renewed:?}");
    assert_eq!(chain_of(&renewed[0]), format!("chain 1 for {ID}"));
}

#[tokio::test]
async fn the_plaintext_port_never_sends_workload_secrets() {
    let p = serve().await;
    let mut c = AggregatedDiscoveryServiceClient::connect(p.plain)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        node: node(),
        type_url: SECRET.into(),
        resource_names_subscribe: vec!["default".into(), "ROOTCA".into(), "gw-cert".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = c
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = stream.message().await.unwrap().unwrap();
    assert!(r.resources.is_empty(), "{:?}", r.resources);
    let mut removed = r.removed_resources.clone();
    removed.sort();
    assert_eq!(removed, ["ROOTCA", "default", "gw-cert"]);
    assert_eq!(p.ca.issued.load(Ordering::SeqCst), 0);
}

/// The names of the secrets a SotW stream with `token` is first sent.
async fn secrets_sent_to(token: &str) -> Vec<String> {
    let p = serve().await;
    let mut c = AggregatedDiscoveryServiceClient::connect(p.secure)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let mut req = secrets_request();
    req.resource_names.push("gw-cert".into());
    tx.send(req).await.unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut stream = c
        .stream_aggregated_resources(req)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    first
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap().name)
        .collect()
}

#[tokio::test]
async fn gateway_secrets_go_only_to_an_identity_of_their_namespace() {
    assert_eq!(
        secrets_sent_to("good").await,
        ["ROOTCA", "default", "gw-cert"]
    );
    assert_eq!(
        secrets_sent_to("other").await,
        ["ROOTCA", "default"],
        "another namespace's identity gets its own certificate but not the gateway's"
    );
}

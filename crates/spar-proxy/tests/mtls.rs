//! Mesh mutual TLS between two sidecars, from Istio config alone: `productpage`'s sidecar
//! calls `reviews` under a DestinationRule `ISTIO_MUTUAL`, and `reviews`' sidecar accepts
//! only mTLS under a `PeerAuthentication` STRICT. Each proxy holds an SVID from one mesh CA
//! (spar-ca) as its own `default`/`ROOTCA` secrets. The call succeeds over mTLS; a plaintext
//! client is refused by `reviews`' sidecar; PERMISSIVE then lets it in; a peer from another
//! CA is refused. On a gRPC port the hop between the sidecars is HTTP/2 over that mTLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spar_ca::{Ca, SpiffeId};
use spar_proxy::config::tls::{CertKey, SecretData, Validation};
use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "cluster.local";
const SERVER_IP: &str = "127.0.0.7";
const VIP: &str = "127.0.0.8";

fn mesh(port: u16, backend: SocketAddr, mode: &str) -> String {
    mesh_with(port, backend, mode, "http", "HTTP")
}

/// The mesh with reviews' port named `port_name` and its Sidecar ingress `protocol`.
fn mesh_with(
    port: u16,
    backend: SocketAddr,
    mode: &str,
    port_name: &str,
    protocol: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  clusterIP: {VIP}
  selector: {{app: reviews}}
  ports: [{{name: {port_name}, port: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: reviews-1, namespace: default, labels: {{kubernetes.io/service-name: reviews}}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {port}}}]
endpoints: [{{addresses: [{SERVER_IP}], targetRef: {{kind: Pod, name: reviews-1}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: reviews-1, namespace: default, labels: {{app: reviews}}}}
spec: {{containers: [{{name: reviews}}], serviceAccountName: reviews}}
status: {{podIP: {SERVER_IP}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: reviews}}}}
  ingress:
  - port: {{number: {port}, protocol: {protocol}, name: {port_name}}}
    defaultEndpoint: 127.0.0.1:{backend_port}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  mtls: {{mode: {mode}}}
"#,
        backend_port = backend.port()
    )
}

fn resources(yaml: &str, id: &str, app: &str) -> spar_translate::XdsResources {
    let set = spar_model::ConfigSet::load([("t.yaml", yaml)], &Default::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = spar_registry::Registry::build(&set);
    let mut node = spar_translate::ProxyNode::parse_id(id).unwrap();
    node.labels.insert("app".into(), app.into());
    spar_translate::translate(&set, &reg, &node)
}

/// An SVID for `sa` from `ca`, as the proxy's own secrets.
fn identity(ca: &Ca, sa: &str) -> Vec<(String, SecretData)> {
    let id = SpiffeId::new(TD, "default", sa).unwrap();
    let (csr, key) = spar_ca::client::generate_csr(&id).unwrap();
    let chain = ca
        .sign_csr(&csr, &id, Duration::from_secs(3600))
        .unwrap()
        .pem;
    let root = chain.last().unwrap().clone();
    vec![
        (
            "default".into(),
            SecretData {
                cert: Some(Arc::new(CertKey {
                    chain: chain[..chain.len() - 1].concat().into_bytes(),
                    key: key.into_bytes(),
                })),
                validation: None,
            },
        ),
        (
            "ROOTCA".into(),
            SecretData {
                cert: None,
                validation: Some(Arc::new(Validation {
                    trusted_ca: root.into_bytes(),
                    sans: Vec::new(),
                })),
            },
        ),
    ]
}

async fn sidecar(
    x: &spar_translate::XdsResources,
    outbound: SocketAddr,
    inbound: SocketAddr,
    secrets: Vec<(String, SecretData)>,
) -> (Proxy, Arc<Store>) {
    let store = Arc::new(Store::new(Snapshot::from_xds(x).unwrap()));
    store.set_local_secrets(secrets);
    let mut bind = BTreeMap::new();
    bind.insert("virtualOutbound".to_string(), outbound);
    bind.insert("virtualInbound".to_string(), inbound);
    let p = Proxy::start(
        store.clone(),
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (p, store)
}

/// A plaintext HTTP GET straight to reviews' sidecar: the status, or 0 when refused.
async fn plaintext(port: u16) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect((SERVER_IP, port)).await else {
        return 0;
    };
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_to_a_strict_sidecar() {
    let backend = Backend::start("reviews").await;
    let port = free_port();
    let ca = Ca::generate(TD).unwrap();
    let any = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);

    let strict = mesh(port, backend.addr, "STRICT");
    let server_x = resources(
        &strict,
        &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
        "reviews",
    );
    let (_server, server_store) = sidecar(
        &server_x,
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    assert!(
        server_store.load().is_ready(),
        "the inbound TLS chain has its secrets"
    );
    let client_x = resources(
        &strict,
        "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local",
        "productpage",
    );
    let (_client, _) = sidecar(
        &client_x,
        SocketAddr::new(VIP.parse().unwrap(), port),
        any("127.0.0.1"),
        identity(&ca, "productpage"),
    )
    .await;

    // productpage → its sidecar (captured at the VIP) → mTLS → reviews' sidecar → reviews.
    let c = client(false);
    let req = http::Request::builder()
        .uri(format!("http://{VIP}:{port}/ratings"))
        .header("host", "reviews")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // STRICT: a plaintext client is refused.
    assert_eq!(
        plaintext(port).await,
        0,
        "plaintext must not reach reviews under STRICT"
    );
    drop(_server);

    // PERMISSIVE: the same plaintext request is let in.
    let permissive = mesh(port, backend.addr, "PERMISSIVE");
    let server_x = resources(
        &permissive,
        &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
        "reviews",
    );
    let (_server, _) = sidecar(
        &server_x,
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    assert_eq!(plaintext(port).await, 200, "PERMISSIVE accepts plaintext");
    let req = http::Request::builder()
        .uri(format!("http://{VIP}:{port}/ratings"))
        .header("host", "reviews")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "and mTLS");
    drop(_server);

    // A client whose SVID comes from another mesh's CA: refused (503 from its own sidecar).
    let (_server, _) = sidecar(
        &resources(
            &strict,
            &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
            "reviews",
        ),
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    let other = Ca::generate(TD).unwrap();
    let port2 = port;
    let (_stranger, _) = sidecar(
        &client_x,
        SocketAddr::new("127.0.0.9".parse().unwrap(), port2),
        any("127.0.0.1"),
        identity(&other, "productpage"),
    )
    .await;
    let req = http::Request::builder()
        .uri(format!("http://127.0.0.9:{port2}/ratings"))
        .header("host", "reviews")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client(false).request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 503, "a peer from another CA is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_over_http2_on_a_grpc_port() {
    let backend = Backend::start("reviews").await;
    let port = free_port();
    let ca = Ca::generate(TD).unwrap();
    let any = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
    let yaml = mesh_with(port, backend.addr, "STRICT", "grpc", "GRPC");
    let server_x = resources(
        &yaml,
        &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
        "reviews",
    );
    let (_server, _) = sidecar(
        &server_x,
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    let client_x = resources(
        &yaml,
        "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local",
        "productpage",
    );
    let (_client, client_store) = sidecar(
        &client_x,
        SocketAddr::new(VIP.parse().unwrap(), port),
        any("127.0.0.1"),
        identity(&ca, "productpage"),
    )
    .await;
    let cluster_name = format!("outbound|{port}||reviews.default.svc.cluster.local");
    let snap = client_store.load();
    let cluster = snap
        .clusters
        .get(&cluster_name)
        .expect("the outbound cluster");
    assert!(cluster.http2, "a gRPC port's cluster speaks HTTP/2");

    // Many concurrent streams, on the one multiplexed mTLS connection between the sidecars.
    let c = client(true);
    let mut calls = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        calls.push(tokio::spawn(async move {
            let req = http::Request::builder()
                .method("POST")
                .uri(format!("http://{VIP}:{port}/reviews.Reviews/Get{i}"))
                .header("host", "reviews")
                .header("content-type", "application/grpc")
                .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                    b'x';
                    5000
                ])))
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
                .await
                .unwrap()
                .unwrap();
            let status = resp.status();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("path=/reviews.Reviews/Get{i}")),
            "{body}"
        );
        assert!(body.contains("version=HTTP/2.0"), "{body}");
        assert!(
            body.contains(&"x".repeat(5000)),
            "the request body arrived whole"
        );
    }
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "reviews' sidecar multiplexes the streams on one HTTP/2 connection to reviews"
    );
    // STRICT still refuses plaintext on that port.
    assert_eq!(plaintext(port).await, 0);
}

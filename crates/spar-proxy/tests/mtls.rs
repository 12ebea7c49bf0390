//! Mesh mutual TLS between two sidecars, from Istio config alone: `productpage`'s sidecar
//! calls `reviews` under a DestinationRule `ISTIO_MUTUAL`, and `reviews`' sidecar accepts
//! only mTLS under a `PeerAuthentication` STRICT. Each proxy holds an SVID from one mesh CA
//! (spar-ca) as its own `default`/`ROOTCA` secrets. The call succeeds over mTLS; a plaintext
//! client is refused by `reviews`' sidecar; PERMISSIVE then lets it in; a peer from another
//! CA is refused. On a gRPC port the hop between the sidecars is HTTP/2 over that mTLS. The
//! book's `MeshPolicy`/`Policy` (authentication.istio.io/v1alpha1) shape the same ports.

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
    // A previous sidecar on the same port may still be closing it: the proxy binds it
    // as soon as it is free; wait for that.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ["virtualOutbound", "virtualInbound"]
        .iter()
        .any(|l| p.listener_addr(l).is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "listeners never bound: {:?}",
            p.shared.bound()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (p, store)
}

/// `GET /ratings` for reviews through the sidecar listening on `ip:port`: the status.
async fn ratings(c: &TestClient, ip: &str, port: u16) -> http::StatusCode {
    let req = http::Request::builder()
        .uri(format!("http://{ip}:{port}/ratings"))
        .header("host", "reviews")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("an answer within 10 s")
        .expect("an HTTP answer")
        .status()
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
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
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
    // The application's own XFCC is dropped on the way out (SANITIZE); reviews' sidecar
    // tells reviews who called (APPEND_FORWARD), as Istio's inbound does.
    let c = client(false);
    let req = http::Request::builder()
        .uri(format!("http://{VIP}:{port}/ratings"))
        .header("host", "reviews")
        .header("x-forwarded-client-cert", "By=forged;URI=spiffe://forged")
        .header("x-echo", "x-forwarded-client-cert")
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
    let text = String::from_utf8_lossy(&body);
    let xfcc = text
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert="))
        .unwrap_or_default();
    let (head, tail) = xfcc.split_once(";Hash=").expect("a Hash");
    assert_eq!(head, "By=spiffe://cluster.local/ns/default/sa/reviews");
    let (hash, rest) = tail.split_once(';').unwrap();
    assert_eq!(hash.len(), 64, "SHA-256 in hex: {hash}");
    assert_eq!(
        rest,
        "Subject=\"\";URI=spiffe://cluster.local/ns/default/sa/productpage"
    );
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
    assert_eq!(ratings(&c, VIP, port).await, 200, "and mTLS");
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
    assert_eq!(
        ratings(&c, VIP, port).await,
        200,
        "a peer from the mesh's CA is let in"
    );
    let other = Ca::generate(TD).unwrap();
    let port2 = port;
    let (_stranger, _) = sidecar(
        &client_x,
        SocketAddr::new("127.0.0.9".parse().unwrap(), port2),
        any("127.0.0.1"),
        identity(&other, "productpage"),
    )
    .await;
    assert_eq!(
        ratings(&client(false), "127.0.0.9", port2).await,
        503,
        "a peer from another CA is refused"
    );
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

/// Runs the CA's CSR API in process (TLS on a free port) with a token per identity and
/// `ttl` as the workload lifetime; returns its `https://` address.
async fn serve_ca(ca: Arc<Ca>, ttl: Duration, tokens: &[(&str, &str)]) -> String {
    let mut known = spar_ca::StaticTokens::new();
    for (token, sa) in tokens {
        known.insert(token, SpiffeId::new(TD, "default", sa).unwrap());
    }
    let svc = spar_ca::CaService::new(
        ca.clone(),
        Box::new(known),
        spar_ca::TtlPolicy {
            default: ttl,
            max: Duration::from_secs(3600),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = spar_ca::server::tls_config(&ca).unwrap();
    tokio::spawn(spar_ca::server::serve(
        listener,
        tls,
        svc,
        std::future::pending(),
    ));
    format!("https://localhost:{}", addr.port())
}

/// The serial of the certificate `addr` presents to a mesh client (an SVID of `ca`),
/// checked as an SVID of reviews; `None` when the handshake fails.
async fn server_serial(ca: &Ca, addr: SocketAddr) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let id = SpiffeId::new(TD, "default", "prober").unwrap();
    let (csr, key) = spar_ca::client::generate_csr(&id).unwrap();
    let chain = ca
        .sign_csr(&csr, &id, Duration::from_secs(600))
        .unwrap()
        .pem;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(chain.concat().as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let verifier = spar_ca::tls::SvidServerVerifier::new(vec![ca.root().clone()], TD)
        .allow([SpiffeId::new(TD, "default", "reviews").unwrap()]);
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"istio".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let der = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(x.raw_serial_as_string())
}

/// Seconds from the environment, or `default` (the issue's figures).
fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Certificate rotation under load: both sidecars take 2-minute SVIDs from the CA (renewed
/// at about half-life) while 4 clients send requests through them without pause for 5
/// minutes, with a burst of 16 concurrent requests every 10 s so that new mTLS connections
/// are made throughout (the idle ones stay up: rotation drops nothing). Not one request may
/// fail, and the certificate reviews' sidecar presents to new peers changes serial.
/// `SPAR_ROTATION_TTL_S` and `SPAR_ROTATION_RUN_S` shorten it for a quick local run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_with_no_failed_request() {
    let ttl = env_secs("SPAR_ROTATION_TTL_S", 120);
    let run = env_secs("SPAR_ROTATION_RUN_S", 300);
    let backend = Backend::start("reviews").await;
    let port = free_port();
    let ca = Arc::new(Ca::generate(TD).unwrap());
    let ca_addr = serve_ca(ca.clone(), ttl, &[("rv", "reviews"), ("pp", "productpage")]).await;
    let any = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
    let strict = mesh(port, backend.addr, "STRICT");
    let server_addr = SocketAddr::new(SERVER_IP.parse().unwrap(), port);
    let (_server, server_store) = sidecar(
        &resources(
            &strict,
            &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
            "reviews",
        ),
        any("127.0.0.1"),
        server_addr,
        Vec::new(),
    )
    .await;
    let (_client, client_store) = sidecar(
        &resources(
            &strict,
            "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local",
            "productpage",
        ),
        SocketAddr::new(VIP.parse().unwrap(), port),
        any("127.0.0.1"),
        Vec::new(),
    )
    .await;
    let mut identities = Vec::new();
    for (store, token, sa) in [
        (&server_store, "rv", "reviews"),
        (&client_store, "pp", "productpage"),
    ] {
        identities.push(tokio::spawn(spar_proxy::identity::run(
            store.clone(),
            spar_proxy::identity::IdentityOptions {
                ca_addr: ca_addr.clone(),
                ca_root_pem: ca.root_pem(),
                ca_server_name: "localhost".into(),
                token: Some(token.into()),
                id: SpiffeId::new(TD, "default", sa).unwrap(),
                ttl: Duration::ZERO,
            },
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server_serial(&ca, server_addr).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no SVID installed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let one = move |c: TestClient| async move {
        let req = http::Request::builder()
            .uri(format!("http://{VIP}:{port}/ratings"))
            .header("host", "reviews")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), c.request(req)).await {
            Ok(Ok(r)) if r.status() == 200 => http_body_util::BodyExt::collect(r.into_body())
                .await
                .is_ok(),
            _ => false,
        }
    };
    let end = tokio::time::Instant::now() + run;
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (ok, failed) = (ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = client(false);
            while tokio::time::Instant::now() < end {
                let counter = if one(c.clone()).await { &ok } else { &failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let mut serials = Vec::new();
    while tokio::time::Instant::now() < end {
        let burst: Vec<_> = (0..16).map(|_| tokio::spawn(one(client(false)))).collect();
        for b in burst {
            let counter = if b.await.unwrap() { &ok } else { &failed };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(s) = server_serial(&ca, server_addr).await {
            if serials.last() != Some(&s) {
                serials.push(s);
            }
        }
        tokio::time::sleep(Duration::from_secs(10).min(run / 10)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (
        ok.load(std::sync::atomic::Ordering::Relaxed),
        failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!("rotation: {ok} requests, {failed} failed, serials seen {serials:?}");
    assert_eq!(
        failed, 0,
        "requests failed during rotation ({ok} succeeded)"
    );
    assert!(ok > 100, "too little traffic: {ok}");
    assert!(
        serials.len() >= 2,
        "the serial reviews presents never changed: {serials:?}"
    );
    for i in identities {
        i.abort();
    }
}

/// The book's 2019 policies, converted as Istio 1.5 converted them: a `MeshPolicy`
/// `default` with `peers: [{mtls: {}}]` makes reviews' port STRICT (mTLS in, plaintext
/// refused); a namespace `Policy` with `mode: PERMISSIVE` then lets plaintext in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_mesh_policy_and_namespace_policy_shape_mtls() {
    let backend = Backend::start("reviews").await;
    let port = free_port();
    let ca = Ca::generate(TD).unwrap();
    let any = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
    let base = mesh(port, backend.addr, "UNSET");
    let base = &base[..base.find("apiVersion: security.istio.io/v1").unwrap()];
    let mesh_policy = "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default}\nspec:\n  peers:\n  - mtls: {}\n";
    let ns_policy = "---\napiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: default}\nspec:\n  peers:\n  - mtls: {mode: PERMISSIVE}\n";
    let server_id = format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local");
    let client_id = "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local";

    let strict = format!("{base}{mesh_policy}");
    let (_server, _) = sidecar(
        &resources(&strict, &server_id, "reviews"),
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    let (_client, _) = sidecar(
        &resources(&strict, client_id, "productpage"),
        SocketAddr::new(VIP.parse().unwrap(), port),
        any("127.0.0.1"),
        identity(&ca, "productpage"),
    )
    .await;
    let c = client(false);
    let get = || {
        http::Request::builder()
            .uri(format!("http://{VIP}:{port}/ratings"))
            .header("host", "reviews")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(get()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "mTLS under the MeshPolicy");
    assert_eq!(plaintext(port).await, 0, "MeshPolicy mtls: {{}} is STRICT");
    drop(_server);

    // A port of its own: the STRICT sidecar's listener may still be closing on `port`.
    let port2 = free_port();
    let base2 = mesh(port2, backend.addr, "UNSET");
    let base2 = &base2[..base2.find("apiVersion: security.istio.io/v1").unwrap()];
    let permissive = format!("{base2}{mesh_policy}{ns_policy}");
    let (_server, _) = sidecar(
        &resources(&permissive, &server_id, "reviews"),
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port2),
        identity(&ca, "reviews"),
    )
    .await;
    assert_eq!(
        plaintext(port2).await,
        200,
        "the namespace Policy's PERMISSIVE wins over the MeshPolicy"
    );
}

/// AuthorizationPolicy enforced by reviews' sidecar on what mTLS proved: productpage may
/// GET /ratings*, nothing else; another workload of the same mesh gets 403 with Envoy's
/// body; under PERMISSIVE a plaintext caller (no principal) gets 403 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_policy_is_enforced_on_the_proven_identity() {
    let policy = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/default/sa/productpage\"]}}]\n    to: [{operation: {methods: [\"GET\"], paths: [\"/ratings*\"]}}]\n";
    only_productpage_may_get_ratings(policy).await;
}

/// The book's 2019 RBAC (`rbac.istio.io/v1alpha1`): RBAC switched on for the namespace, a
/// ServiceRole allowing GET /ratings* on reviews, bound to productpage's principal by
/// `source.principal` — converted by the control plane and enforced by the sidecar with
/// the same outcomes as the AuthorizationPolicy above.
#[tokio::test]
async fn the_books_service_role_binding_is_enforced_on_the_proven_identity() {
    let legacy = r#"---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ClusterRbacConfig
metadata: {name: default}
spec:
  mode: ON_WITH_INCLUSION
  inclusion: {namespaces: [default]}
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata: {name: ratings-viewer, namespace: default}
spec:
  rules:
  - services: ["reviews.default.svc.cluster.local"]
    methods: ["GET"]
    paths: ["/ratings*"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata: {name: productpage-ratings, namespace: default}
spec:
  subjects:
  - properties: {source.principal: "cluster.local/ns/default/sa/productpage"}
  roleRef: {kind: ServiceRole, name: ratings-viewer}
"#;
    only_productpage_may_get_ratings(legacy).await;
}

async fn only_productpage_may_get_ratings(policy: &str) {
    let backend = Backend::start("reviews").await;
    let port = free_port();
    let ca = Ca::generate(TD).unwrap();
    let any = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
    let config = format!("{}{policy}", mesh(port, backend.addr, "PERMISSIVE"));
    let server_id = format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local");
    let client_id = "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local";
    let (_server, _) = sidecar(
        &resources(&config, &server_id, "reviews"),
        any("127.0.0.1"),
        SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        identity(&ca, "reviews"),
    )
    .await;
    let client_x = resources(&config, client_id, "productpage");
    let (_pp, _) = sidecar(
        &client_x,
        SocketAddr::new(VIP.parse().unwrap(), port),
        any("127.0.0.1"),
        identity(&ca, "productpage"),
    )
    .await;
    let (_other, _) = sidecar(
        &client_x,
        SocketAddr::new("127.0.0.9".parse().unwrap(), port),
        any("127.0.0.1"),
        identity(&ca, "details"),
    )
    .await;
    let c = client(false);
    let call = |ip: &'static str, method: &'static str, path: &'static str| {
        let c = c.clone();
        async move {
            let req = http::Request::builder()
                .method(method)
                .uri(format!("http://{ip}:{port}{path}"))
                .header("host", "reviews")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
                .await
                .unwrap()
                .unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(call(VIP, "GET", "/ratings/1").await.0, 200);
    assert_eq!(
        call(VIP, "GET", "/admin").await,
        (403, "RBAC: access denied".to_string())
    );
    assert_eq!(call(VIP, "POST", "/ratings/1").await.0, 403);
    assert_eq!(
        call("127.0.0.9", "GET", "/ratings/1").await,
        (403, "RBAC: access denied".to_string()),
        "details is not productpage"
    );
    assert_eq!(plaintext(port).await, 403, "plaintext has no principal");
}

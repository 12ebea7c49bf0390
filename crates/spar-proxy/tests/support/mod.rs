//! Shared by the proxy's in-process tests: echo backends on free ports, a client, and
//! config from Istio YAML through the real translator.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources};

/// An echo backend: answers `backend=<name> version=<HTTP version> path=<path>` and the
/// request headers it was asked to echo (`x-echo: a,b`). `/slow*` answers after a second;
/// `/flaky*` answers 503 the first time it sees an `x-test-id`; `/status/<n>` answers n.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub failures: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, f, accepted) = (requests.clone(), failures.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (r, f, seen) = (r.clone(), f.clone(), seen.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, f, seen) = (r.clone(), f.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(echo(name, req, &r, &f, &seen).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            requests,
            failures,
            connections,
        }
    }
}

async fn echo(
    name: &'static str,
    req: Request<Incoming>,
    requests: &AtomicUsize,
    failures: &AtomicUsize,
    seen: &Mutex<HashSet<String>>,
) -> Response<Full<Bytes>> {
    requests.fetch_add(1, Ordering::SeqCst);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let mut text = format!("backend={name} version={version} path={path}\n");
    let wanted: Vec<String> = req
        .headers()
        .get("x-echo")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    for h in wanted {
        let v = req
            .headers()
            .get(&h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        text.push_str(&format!("{h}={v}\n"));
    }
    let id = req
        .headers()
        .get("x-test-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if !body.is_empty() {
        text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
    }
    let mut status = 200;
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if path.starts_with("/flaky") && seen.lock().unwrap().insert(id) {
        failures.fetch_add(1, Ordering::SeqCst);
        status = 503;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        status = code.parse().unwrap_or(500);
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("x-backend", http::HeaderValue::from_static(name));
    r
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn backend(&self) -> Option<&str> {
        self.body
            .strip_prefix("backend=")
            .and_then(|b| b.split_whitespace().next())
    }

    /// `name=value` lines the backend echoed.
    pub fn echoed(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client(http2: bool) -> TestClient {
    let mut b = Client::builder(TokioExecutor::new());
    if http2 {
        b.http2_only(true);
    }
    b.build(HttpConnector::new())
}

pub async fn send(
    c: &TestClient,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(c: &TestClient, port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(c, port, "GET", path, headers, "").await
}

/// A port that is free now and outside the kernel's ephemeral range (32768-60999 by default), so
/// an outgoing connection of some other test cannot take it before the listener that the config
/// names binds it. Ports are handed out from a per-process start so test binaries run side by
/// side do not walk the same sequence.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        // The wildcard bind fails if anything holds the port on any address.
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// What a gateway proxy (`istio: ingressgateway`) is sent for `yaml`.
pub fn gateway_resources(yaml: &str) -> XdsResources {
    let set = ConfigSet::load([("test.yaml", yaml)], &LoadOptions::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = Registry::build(&set);
    let mut node =
        ProxyNode::parse_id("router~127.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local")
            .unwrap();
    node.labels.insert("istio".into(), "ingressgateway".into());
    translate(&set, &reg, &node)
}

/// A Service `name` in `default` on `port` with one pod per (version, address), found
/// through EndpointSlices and Pods as in Kubernetes.
pub fn service(name: &str, port: u16, port_name: &str, pods: &[(&str, SocketAddr)]) -> String {
    let mut y = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: {port_name}, port: {port}}}]
"#
    );
    for (v, addr) in pods {
        y.push_str(&format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{v}
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {p}}}]
endpoints:
- addresses: [{ip}]
  targetRef: {{kind: Pod, name: {name}-{v}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}-{v}
  namespace: default
  labels: {{app: {name}, version: {v}}}
  annotations: {{sidecar.istio.io/inject: "false"}}
spec:
  containers: [{{name: {name}}}]
status: {{podIP: {ip}}}
"#,
            p = addr.port(),
            ip = addr.ip()
        ));
    }
    y
}

/// The `echo` Service (port 8080) on `backend`, and a gateway on `gw` routing every host
/// and path to it.
pub fn echo_gateway(gw: u16, backend: SocketAddr) -> String {
    let mut y = service("echo", 8080, "http", &[("v1", backend)]);
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {gw}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: echo, port: {{number: 8080}}}}}}]}}]
"#
    ));
    y
}

/// A test CA: its certificate (PEM) and what signs with it.
pub struct TestCa {
    pub pem: String,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A self-signed CA named `name`.
pub fn test_ca(name: &str) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// A leaf for DNS names `dns` (and a URI SAN) signed by `ca`: (certificate PEM, key PEM).
pub fn test_leaf(ca: &TestCa, dns: &[&str], uri: Option<&str>) -> (String, String) {
    let mut p =
        rcgen::CertificateParams::new(dns.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(u) = uri {
        p.subject_alt_names
            .push(rcgen::SanType::URI(u.try_into().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

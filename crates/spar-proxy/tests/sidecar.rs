//! The sidecar role in process: `virtualOutbound` hands each connection to the listener
//! of its original destination (HTTP routes by the `Host` header, TCP by address), and
//! plain TCP and TLS passthrough (by SNI, on a gateway) reach their backends. Without
//! iptables, a connection's original destination is the address it reached, so each
//! "capture" here is a `virtualOutbound` bound at a service's own address (loopback
//! aliases 127.0.0.x and free ports).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that answers every read with `<name>:` and the bytes it read.
async fn tcp_echo(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn sidecar_resources(yaml: &str) -> spar_translate::XdsResources {
    let set = spar_model::ConfigSet::load([("t.yaml", yaml)], &Default::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = spar_registry::Registry::build(&set);
    let mut node = spar_translate::ProxyNode::parse_id(
        "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local",
    )
    .unwrap();
    node.labels.insert("app".into(), "client".into());
    spar_translate::translate(&set, &reg, &node)
}

fn with_vip(svc_yaml: String, vip: &str) -> String {
    svc_yaml.replacen("spec:\n", &format!("spec:\n  clusterIP: {vip}\n"), 1)
}

/// A proxy over `store` whose `virtualOutbound` listens at `at`.
async fn capture_at(store: &Arc<Store>, at: SocketAddr) -> Proxy {
    let mut bind = BTreeMap::new();
    bind.insert("virtualOutbound".to_string(), at);
    bind.insert(
        "virtualInbound".to_string(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    let p = Proxy::start(
        store.clone(),
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(p.listener_addr("virtualOutbound"), Some(at));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_tcp_and_passthrough() {
    let web = Backend::start("web").await;
    let db = tcp_echo("db").await;
    let (web_port, db_port) = (free_port(), free_port());
    let mut y = with_vip(
        service("web", web_port, "http", &[("v1", web.addr)]),
        "127.0.0.3",
    );
    y.push_str("---\n");
    y.push_str(&with_vip(
        service("db", db_port, "tcp", &[("v1", db)]),
        "127.0.0.2",
    ));
    // A port that names no protocol: sniffed (HTTP inspector), as in Istio.
    let auto_port = free_port();
    y.push_str("---\n");
    y.push_str(&with_vip(
        service("auto", auto_port, "app", &[("v1", web.addr)]),
        "127.0.0.5",
    ));
    let x = sidecar_resources(&y);
    let names: Vec<&str> = x.listeners.iter().map(|l| l.name.as_str()).collect();
    assert!(
        names.contains(&format!("0.0.0.0_{web_port}").as_str()),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("127.0.0.2_{db_port}").as_str()),
        "{names:?}"
    );
    let store = Arc::new(Store::new(Snapshot::from_xds(&x).unwrap()));
    // Listeners other than the virtual ones are not bound (bind_to_port: false).
    let web_capture = capture_at(&store, SocketAddr::from(([127, 0, 0, 3], web_port))).await;
    assert_eq!(
        web_capture.shared.bound().len(),
        2,
        "{:?}",
        web_capture.shared.bound()
    );
    let _db_capture = capture_at(&store, SocketAddr::from(([127, 0, 0, 2], db_port))).await;

    // HTTP: handed to 0.0.0.0_<port>, routed by Host to the web cluster.
    let c = client(false);
    let r = send_to(
        &c,
        "127.0.0.3",
        web_port,
        "/hello",
        "web.default.svc.cluster.local",
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.starts_with("backend=web"), "{}", r.1);
    let r = send_to(&c, "127.0.0.3", web_port, "/hello", "web").await;
    assert_eq!(r.0, 200, "short names route too: {}", r.1);

    // Protocol detection on a sniffed port, counted with Envoy's names: HTTP/1.1 twice, h2c
    // once, bytes that are not HTTP once, and a connection that sends nothing times out and
    // goes on as what is known.
    let auto_capture = capture_at(&store, SocketAddr::from(([127, 0, 0, 5], auto_port))).await;
    for c in [client(false), client(false), client(true)] {
        let r = send_to(&c, "127.0.0.5", auto_port, "/hello", "auto").await;
        assert_eq!(r.0, 200, "sniffed HTTP: {}", r.1);
    }
    let mut raw = TcpStream::connect(("127.0.0.5", auto_port)).await.unwrap();
    raw.write_all(b"\x00\x01 not http\r\n").await.unwrap();
    let silent = TcpStream::connect(("127.0.0.5", auto_port)).await.unwrap();
    let stats = &auto_capture.shared.stats;
    let text = || stats.prometheus();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !text().contains("envoy_listener_downstream_pre_cx_timeout 1") {
        assert!(std::time::Instant::now() < deadline, "{}", text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((silent, raw));
    for line in [
        "envoy_http_inspector_http11_found 2",
        "envoy_http_inspector_http2_found 1",
        "envoy_http_inspector_http_not_found 1",
    ] {
        assert!(text().contains(line), "{line} in\n{}", text());
    }

    // TCP: handed to 127.0.0.2_<port>, proxied to the db endpoint.
    let mut s = TcpStream::connect(("127.0.0.2", db_port)).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"db:ping");

    // A destination no listener claims goes to PassthroughCluster; here that is the
    // capture address itself, which must be refused rather than looped.
    let other = free_port();
    let loopback = capture_at(&store, SocketAddr::from(([127, 0, 0, 4], other))).await;
    let mut s = TcpStream::connect(("127.0.0.4", other)).await.unwrap();
    let _ = s.write_all(b"x").await;
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the proxy closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(loopback);
}

async fn send_to(c: &TestClient, ip: &str, port: u16, path: &str, host: &str) -> (u16, String) {
    let req = http::Request::builder()
        .uri(format!("http://{ip}:{port}{path}"))
        .header("host", host)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A TLS ClientHello with `sni` (enough for the TLS inspector; no handshake follows).
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend(((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend((name.len() as u16).to_be_bytes());
    sni_ext.extend(name);
    let mut ext = Vec::new();
    ext.extend(0u16.to_be_bytes());
    ext.extend((sni_ext.len() as u16).to_be_bytes());
    ext.extend(sni_ext);
    let mut hs = vec![3, 3];
    hs.extend([9u8; 32]);
    hs.push(0);
    hs.extend(2u16.to_be_bytes());
    hs.extend([0x13, 0x01]);
    hs.extend([1, 0]);
    hs.extend((ext.len() as u16).to_be_bytes());
    hs.extend(ext);
    let mut msg = vec![1];
    msg.extend(&(hs.len() as u32).to_be_bytes()[1..]);
    msg.extend(hs);
    let mut rec = vec![0x16, 3, 1];
    rec.extend((msg.len() as u16).to_be_bytes());
    rec.extend(msg);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tls_passthrough_by_sni() {
    let a = tcp_echo("a").await;
    let b = tcp_echo("b").await;
    let gw = free_port();
    let mut y = service("svc-a", 443, "tls", &[("v1", a)]);
    y.push_str("---\n");
    y.push_str(&service("svc-b", 443, "tls", &[("v1", b)]));
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: tls, protocol: TLS}}
    hosts: ["*.example.com"]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: sni, namespace: default}}
spec:
  hosts: ["*.example.com"]
  gateways: [istio-system/gw]
  tls:
  - match: [{{sniHosts: [a.example.com]}}]
    route: [{{destination: {{host: svc-a, port: {{number: 443}}}}}}]
  - match: [{{sniHosts: [b.example.com]}}]
    route: [{{destination: {{host: svc-b, port: {{number: 443}}}}}}]
"#
    ));
    let snap = Snapshot::from_xds(&gateway_resources(&y)).unwrap();
    let store = Arc::new(Store::new(snap));
    let mut bind = BTreeMap::new();
    bind.insert(
        format!("0.0.0.0_{gw}"),
        SocketAddr::from(([127, 0, 0, 1], gw)),
    );
    let _p = Proxy::start(
        store,
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for (sni, want) in [("a.example.com", "a:"), ("B.example.com", "b:")] {
        let hello = client_hello(sni);
        let mut s = TcpStream::connect(("127.0.0.1", gw)).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < want.len() + hello.len() {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early for {sni}");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(want.as_bytes()),
            "{sni} went to the wrong backend"
        );
        assert_eq!(
            &got[want.len()..],
            &hello[..],
            "the ClientHello passes through untouched"
        );
    }
    // An SNI no chain names: no filter chain matches, the connection is closed.
    let mut s = TcpStream::connect(("127.0.0.1", gw)).await.unwrap();
    s.write_all(&client_hello("c.example.com")).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_http_and_tcp_to_the_local_workload() {
    let app = Backend::start("app").await;
    let db = tcp_echo("db").await;
    let (http_port, tcp_port) = (free_port(), free_port());
    let y = format!(
        r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  ingress:
  - port: {{number: {http_port}, protocol: HTTP, name: http}}
    defaultEndpoint: {app}
  - port: {{number: {tcp_port}, protocol: TCP, name: tcp}}
    defaultEndpoint: {db}
"#,
        app = app.addr
    );
    let x = sidecar_resources(&y);
    let store = Arc::new(Store::new(Snapshot::from_xds(&x).unwrap()));
    // The inbound "capture": virtualInbound at the workload's ports on another loopback
    // address, so that the connection's destination port selects the chain.
    let mut bind = BTreeMap::new();
    bind.insert(
        "virtualOutbound".to_string(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    bind.insert(
        "virtualInbound".to_string(),
        SocketAddr::from(([127, 0, 0, 6], http_port)),
    );
    let _http = Proxy::start(
        store.clone(),
        ProxyOptions {
            bind: bind.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    bind.insert(
        "virtualInbound".to_string(),
        SocketAddr::from(([127, 0, 0, 6], tcp_port)),
    );
    let _tcp = Proxy::start(
        store,
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let c = client(false);
    let r = send_to(&c, "127.0.0.6", http_port, "/in", "anything.example").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.starts_with("backend=app"), "{}", r.1);

    let mut s = TcpStream::connect(("127.0.0.6", tcp_port)).await.unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 32];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"db:hi");
}

/// A Sidecar egress listener with `captureMode: NONE` and `bind` is a real socket the proxy
/// binds (no iptables): the application calls it directly and the route table of that
/// listener (`<bind>:<port>`) routes by Host as for captured traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_egress_bind_listener_is_bound_and_routes() {
    let web = Backend::start("web").await;
    let port = free_port();
    let mut y = service("web", port, "http", &[("v1", web.addr)]);
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - port: {{number: {port}, protocol: HTTP, name: egress-http}}
    bind: 127.0.0.6
    captureMode: NONE
    hosts: ["./*"]
"#
    ));
    let x = sidecar_resources(&y);
    let name = format!("127.0.0.6_{port}");
    assert!(
        x.listeners.iter().any(|l| l.name == name),
        "{:?}",
        x.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
    );
    let store = Arc::new(Store::new(Snapshot::from_xds(&x).unwrap()));
    let mut bind = BTreeMap::new();
    for l in ["virtualOutbound", "virtualInbound"] {
        bind.insert(l.to_string(), SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let proxy = Proxy::start(
        store,
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        proxy.listener_addr(&name),
        Some(SocketAddr::from(([127, 0, 0, 6], port)))
    );
    let r = send_to(&client(false), "127.0.0.6", port, "/direct", "web").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.starts_with("backend=web"), "{}", r.1);
}

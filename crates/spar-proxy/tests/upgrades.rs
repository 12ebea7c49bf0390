//! WebSocket upgrades through the gateway (only where the connection manager allows them,
//! else 403 as in Envoy), request mirroring (`-shadow` host, answer ignored) and CORS
//! preflight and response headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A server that answers an upgrade with 101 and then echoes bytes prefixed by `ws:`.
async fn ws_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                let mut upgrade = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    upgrade |= l == "upgrade: websocket";
                }
                let mut s = r.into_inner();
                if !upgrade {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut out = b"ws:".to_vec();
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

fn config(gw: u16, ws: SocketAddr, v1: SocketAddr, v2: SocketAddr) -> String {
    let mut y = service("ws", 8000, "http", &[("v1", ws)]);
    y.push_str("---\n");
    y.push_str(&service("echo", 8080, "http", &[("v1", v1), ("v2", v2)]));
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: echo
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
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
  http:
  - match: [{{uri: {{prefix: /ws}}}}]
    route: [{{destination: {{host: ws, port: {{number: 8000}}}}}}]
  - match: [{{uri: {{prefix: /mirrored}}}}]
    mirror: {{host: echo, subset: v2, port: {{number: 8080}}}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy:
      allowOrigins: [{{exact: "https://app.example"}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-backend]
      maxAge: 60s
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
"#
    ));
    y
}

/// Removes every connection manager's upgrade list (the translator allows `websocket`, as
/// istiod does).
fn deny_websocket(x: &mut spar_translate::XdsResources) {
    edit_connection_managers(x, |hcm| hcm.upgrade_configs = Vec::new());
}

/// Applies `edit` to every HTTP connection manager of `x`'s listeners.
fn edit_connection_managers(
    x: &mut spar_translate::XdsResources,
    mut edit: impl FnMut(&mut HttpConnectionManager),
) {
    for l in &mut x.listeners {
        for c in &mut l.filter_chains {
            for f in &mut c.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                    continue;
                };
                if any.type_url != HttpConnectionManager::type_url() {
                    continue;
                }
                let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
                edit(&mut hcm);
                *any = Any {
                    type_url: HttpConnectionManager::type_url(),
                    value: hcm.encode_to_vec(),
                };
            }
        }
    }
}

async fn start(x: &spar_translate::XdsResources, gw: u16) -> Proxy {
    let store = Arc::new(Store::new(Snapshot::from_xds(x).unwrap()));
    let mut bind = BTreeMap::new();
    bind.insert(
        format!("0.0.0.0_{gw}"),
        SocketAddr::from(([127, 0, 0, 1], gw)),
    );
    Proxy::start(
        store,
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn ws_handshake(port: u16) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: echo.example\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), s)
}

/// Sets every connection manager's `common_http_protocol_options.idle_timeout`.
fn set_idle_timeout(x: &mut spar_translate::XdsResources, d: Duration) {
    use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions;
    edit_connection_managers(x, |hcm| {
        hcm.common_http_protocol_options = Some(HttpProtocolOptions {
            idle_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }),
            ..Default::default()
        });
    });
}

/// One request on `s`, its whole response read (`content-length` framed).
async fn one_request(s: &mut TcpStream) -> String {
    s.write_all(b"GET /cors HTTP/1.1\r\nhost: echo.example\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Envoy's `idle_timeout`: a keep-alive connection without a request for that long is
/// closed; without one configured (Envoy's default is an hour) it stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let ws = ws_server().await;
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);

    let gw = free_port();
    let mut x = gateway_resources(&config(gw, ws, v1.addr, v2.addr));
    set_idle_timeout(&mut x, Duration::from_millis(500));
    let _short = start(&x, gw).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw)).await.unwrap();
    assert!(one_request(&mut s).await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle connection is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // The default: still open after the same idle time, and serving.
    let gw = free_port();
    let x = gateway_resources(&config(gw, ws, v1.addr, v2.addr));
    let _default = start(&x, gw).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw)).await.unwrap();
    assert!(one_request(&mut s).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(one_request(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_mirror_and_cors() {
    let ws = ws_server().await;
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let gw = free_port();
    let mut x = gateway_resources(&config(gw, ws, v1.addr, v2.addr));

    // Without upgrade_configs an upgrade is refused with 403.
    deny_websocket(&mut x);
    let plain = start(&x, gw).await;
    let (head, _) = ws_handshake(gw).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    drop(plain);

    // Allowed (as translated): a fresh proxy on another port.
    let gw = free_port();
    x = gateway_resources(&config(gw, ws, v1.addr, v2.addr));
    let _p = start(&x, gw).await;
    let (head, mut s) = ws_handshake(gw).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in ["hello", "again"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], format!("ws:{msg}").as_bytes());
    }

    // Mirroring: v1 answers, v2 gets a copy.
    let c = client(false);
    let before = v2.requests.load(Ordering::SeqCst);
    let r = get(&c, gw, "/mirrored", &[]).await;
    assert_eq!(r.backend(), Some("v1"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while v2.requests.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "the mirror never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // CORS: a preflight from an allowed origin is answered here; others pass through.
    let r = send(
        &c,
        gw,
        "OPTIONS",
        "/cors",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers["access-control-allow-methods"], "GET,POST");
    assert_eq!(r.headers["access-control-max-age"], "60");
    assert!(r.body.is_empty());
    let r = get(&c, gw, "/cors", &[("origin", "https://app.example")]).await;
    assert_eq!(r.backend(), Some("v1"));
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers["access-control-expose-headers"], "x-backend");
    let r = get(&c, gw, "/cors", &[("origin", "https://evil.example")]).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

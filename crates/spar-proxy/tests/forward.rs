//! The explicit forward proxy, with curl as the application: `-x http://…` (absolute-form
//! requests), `-p -x` (a CONNECT tunnel) and `--socks5-hostname` reach mesh services by name
//! and meet the same VirtualService routes as captured traffic; a TCP service is reached
//! through SOCKS5 at its VIP's listener; an address outside the mesh passes through under
//! ALLOW_ANY, and a name nobody knows is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use spar_proxy::config::Snapshot;
use spar_proxy::proxy::FORWARD_LISTENER;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REVIEWS_PORT: u16 = 9080;
const DB_PORT: u16 = 3306;

fn mesh(v1: SocketAddr, v2: SocketAddr, db: SocketAddr) -> String {
    let mut y = service("reviews", REVIEWS_PORT, "http", &[("v1", v1), ("v2", v2)]);
    y.push_str("---\n");
    y.push_str(&service("db", DB_PORT, "tcp", &[("v1", db)]).replacen(
        "spec:\n",
        "spec:\n  clusterIP: 10.96.0.20\n",
        1,
    ));
    y.push_str(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    y
}

fn sidecar_snapshot(yaml: &str) -> Snapshot {
    let set = spar_model::ConfigSet::load([("t.yaml", yaml)], &Default::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = spar_registry::Registry::build(&set);
    let mut node = spar_translate::ProxyNode::parse_id(
        "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local",
    )
    .unwrap();
    node.labels.insert("app".into(), "client".into());
    Snapshot::from_xds(&spar_translate::translate(&set, &reg, &node)).unwrap()
}

async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&[b"db:", &buf[..n]].concat()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// curl's body and status (`-w`), run off the async runtime.
async fn curl(args: Vec<String>) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (
            body.to_string(),
            format!("{code}{}", String::from_utf8_lossy(&out.stderr)),
        )
    })
    .await
    .unwrap()
}

fn curl_or_skip() -> bool {
    if Command::new("curl").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
        "curl is required (SPAR_REQUIRE_PEERS is set)"
    );
    eprintln!("skipped: curl is not installed");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_mesh_names_through_every_forward_mode() {
    if !curl_or_skip() {
        return;
    }
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let outside = Backend::start("outside").await;
    let db = tcp_echo().await;
    let store = Arc::new(Store::new(sidecar_snapshot(&mesh(v1.addr, v2.addr, db))));
    let mut bind = BTreeMap::new();
    for l in ["virtualOutbound", "virtualInbound"] {
        bind.insert(l.to_string(), SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let proxy = Proxy::start(
        store,
        ProxyOptions {
            bind,
            forward: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            namespace: "default".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fwd = proxy.listener_addr(FORWARD_LISTENER).unwrap();
    let http_proxy = format!("http://{fwd}");
    let url = |host: &str| format!("http://{host}:{REVIEWS_PORT}/ratings");
    let jason = "end-user: jason".to_string();

    for (mode, extra) in [
        ("absolute-form", vec!["-x".to_string(), http_proxy.clone()]),
        (
            "CONNECT",
            vec!["-p".into(), "-x".into(), http_proxy.clone()],
        ),
        ("SOCKS5", vec!["--socks5-hostname".into(), fwd.to_string()]),
    ] {
        for host in [
            "reviews",
            "reviews.default",
            "reviews.default.svc.cluster.local",
        ] {
            let (body, code) = curl([extra.clone(), vec![url(host)]].concat()).await;
            assert!(
                body.starts_with("backend=v1"),
                "{mode} {host}: {code} {body}"
            );
            let args = [extra.clone(), vec!["-H".into(), jason.clone(), url(host)]].concat();
            let (body, code) = curl(args).await;
            assert!(
                body.starts_with("backend=v2"),
                "{mode} {host} as jason: {code} {body}"
            );
        }
    }
    // One keep-alive connection, two services' worth of requests: each routed on its own.
    let (body, code) = curl(vec![
        "-x".into(),
        http_proxy.clone(),
        url("reviews"),
        "-H".into(),
        jason.clone(),
        format!("http://{}/direct", outside.addr),
    ])
    .await;
    assert!(
        body.contains("backend=v2") && body.contains("backend=outside"),
        "{code} {body}"
    );
    // Outside the mesh under ALLOW_ANY: passed through.
    let (body, _) = curl(vec![
        "-x".into(),
        http_proxy.clone(),
        format!("http://{}/x", outside.addr),
    ])
    .await;
    assert!(
        body.starts_with("backend=outside path=/x") || body.contains("path=/x"),
        "{body}"
    );
    // A name nobody knows.
    let (_, code) = curl(vec![
        "-x".into(),
        http_proxy.clone(),
        "http://no-such-service.invalid/".into(),
    ])
    .await;
    assert!(code.starts_with("502"), "{code}");

    // A TCP service by name through SOCKS5: the tunnel lands on the VIP's listener.
    let mut s = TcpStream::connect(fwd).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0]);
    let name = b"db";
    let mut req = vec![5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name);
    req.extend_from_slice(&DB_PORT.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 reply {reply:?}");
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 7];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"db:ping");
}

//! The gateway role end to end, in process: Istio YAML → spar-translate → snapshot →
//! `spar proxy` listeners on free ports → echo backends, with real HTTP/1.1 and HTTP/2
//! requests. Covers weighted and header routing, 404 NR, 503 UH/UF, 504 UT, faults,
//! retries, rewrites, header edits, redirects, direct responses, request ids and
//! forwarding headers, HTTP/2 both ways, and a live route change with no failed request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;

struct World {
    v1: Backend,
    v2: Backend,
    h2: Backend,
    port: u16,
    dead: SocketAddr,
}

fn config(w: &World, live: &str) -> String {
    let mut y = service(
        "echo",
        8080,
        "http",
        &[("v1", w.v1.addr), ("v2", w.v2.addr)],
    );
    y.push_str("---\n");
    y.push_str(&service("grpc-echo", 9090, "grpc", &[("v1", w.h2.addr)]));
    y.push_str("---\n");
    y.push_str(&service("dead", 7070, "http", &[("v1", w.dead)]));
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: echo.default.svc.cluster.local
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{{uri: {{prefix: /live}}}}]
    route: [{{destination: {{host: echo, subset: {live}, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /split}}}}]
    route:
    - {{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}, weight: 80}}
    - {{destination: {{host: echo, subset: v2, port: {{number: 8080}}}}, weight: 20}}
  - match: [{{uri: {{prefix: /user}}, headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: echo, subset: v2, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /user}}}}]
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /delay}}}}]
    fault: {{delay: {{fixedDelay: 300ms, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /slow}}}}]
    timeout: 300ms
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /flaky}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /status}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /old}}}}]
    rewrite: {{uri: /new, authority: rewritten.example}}
    headers:
      request: {{set: {{x-added: yes}}, remove: [x-secret]}}
      response: {{add: {{x-resp: added}}, remove: [x-backend]}}
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /moved}}}}]
    redirect: {{uri: /elsewhere, authority: other.example, redirectCode: 302}}
  - match: [{{uri: {{exact: /teapot}}}}]
    directResponse: {{status: 418, body: {{string: "short and stout"}}}}
  - match: [{{uri: {{prefix: /empty}}}}]
    route: [{{destination: {{host: echo, subset: v3, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /dead}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: dead, port: {{number: 7070}}}}}}]
  - match: [{{uri: {{prefix: /grpc}}}}]
    route: [{{destination: {{host: grpc-echo, port: {{number: 9090}}}}}}]
  - match: [{{uri: {{prefix: /echo}}}}]
    route: [{{destination: {{host: echo, subset: v1, port: {{number: 8080}}}}}}]
"#,
        port = w.port
    ));
    y
}

async fn world() -> World {
    let dead = {
        // A port that was free a moment ago: connecting to it is refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    World {
        v1: Backend::start("v1").await,
        v2: Backend::start("v2").await,
        h2: Backend::start("h2").await,
        port: free_port(),
        dead,
    }
}

async fn proxy_for(w: &World, live: &str) -> (Proxy, Arc<Store>) {
    let snap = Snapshot::from_xds(&gateway_resources(&config(w, live))).unwrap();
    let store = Arc::new(Store::new(snap));
    let mut bind = BTreeMap::new();
    bind.insert(
        format!("0.0.0.0_{}", w.port),
        SocketAddr::from(([127, 0, 0, 1], w.port)),
    );
    let proxy = Proxy::start(
        store.clone(),
        ProxyOptions {
            bind,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(proxy
        .listener_addr(&format!("0.0.0.0_{}", w.port))
        .is_some());
    (proxy, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_splits_and_matches_headers() {
    let w = world().await;
    let (_proxy, _) = proxy_for(&w, "v1").await;
    let c = client(false);
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..400 {
        let r = get(&c, w.port, "/split", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        *per.entry(r.backend().unwrap().to_string()).or_default() += 1;
    }
    let v1 = per.get("v1").copied().unwrap_or(0);
    assert!((280..=360).contains(&v1), "80/20 split, got {per:?}");
    assert_eq!(
        get(&c, w.port, "/user", &[("end-user", "jason")])
            .await
            .backend(),
        Some("v2")
    );
    assert_eq!(
        get(&c, w.port, "/user", &[("end-user", "paul")])
            .await
            .backend(),
        Some("v1")
    );
    let nr = get(&c, w.port, "/nowhere", &[]).await;
    assert_eq!((nr.status, nr.body.as_str()), (404, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_http1_connections_are_reused() {
    let w = world().await;
    let (_proxy, _) = proxy_for(&w, "v1").await;
    let c = client(false);
    for i in 0..50 {
        let r = get(&c, w.port, "/user", &[("end-user", "paul")]).await;
        assert_eq!((r.status, r.backend()), (200, Some("v1")), "request {i}");
    }
    let opened = w.v1.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.v1.requests.load(std::sync::atomic::Ordering::SeqCst), 50);
    assert!(
        opened <= 2,
        "50 sequential requests opened {opened} upstream connections; each should reuse the last"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_rewrites_and_local_replies() {
    let w = world().await;
    let (_proxy, _) = proxy_for(&w, "v1").await;
    let c = client(false);
    let echo = "x-request-id,x-forwarded-proto,host,x-added,x-secret";
    let r = get(&c, w.port, "/echo", &[("x-echo", echo)]).await;
    assert_eq!(r.status, 200);
    let id = r.echoed("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(r.echoed("x-forwarded-proto"), Some("http"));
    assert_eq!(
        r.echoed("host"),
        Some(format!("127.0.0.1:{}", w.port).as_str())
    );
    let kept = get(
        &c,
        w.port,
        "/echo",
        &[("x-echo", echo), ("x-request-id", "abc")],
    )
    .await;
    assert_eq!(kept.echoed("x-request-id"), Some("abc"));

    let r = get(
        &c,
        w.port,
        "/old/x?q=1",
        &[("x-echo", echo), ("x-secret", "s")],
    )
    .await;
    assert!(r.body.contains("path=/new/x?q=1"), "{}", r.body);
    assert_eq!(r.echoed("host"), Some("rewritten.example"));
    assert_eq!(r.echoed("x-added"), Some("yes"));
    assert_eq!(r.echoed("x-secret"), Some("-"));
    assert_eq!(r.headers.get("x-resp").unwrap(), "added");
    assert!(r.headers.get("x-backend").is_none());

    let r = get(&c, w.port, "/moved?a=b", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "http://other.example/elsewhere?a=b"
    );
    let r = get(&c, w.port, "/teapot", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (418, "short and stout"));

    let r = get(&c, w.port, "/empty", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (503, "no healthy upstream"));
    let r = get(&c, w.port, "/dead", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("connection failure"), "{}", r.body);

    let body = "x".repeat(100_000);
    let r = send(&c, w.port, "POST", "/echo", &[], &body).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&body), "a large body streams through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_timeouts_and_retries() {
    let w = world().await;
    let (proxy, _) = proxy_for(&w, "v1").await;
    let c = client(false);
    let before = w.v1.requests.load(Ordering::SeqCst);
    let r = get(&c, w.port, "/abort", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (418, "fault filter abort"));
    assert_eq!(
        w.v1.requests.load(Ordering::SeqCst),
        before,
        "an abort never reaches the backend"
    );

    let start = Instant::now();
    let r = get(&c, w.port, "/delay", &[]).await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    let start = Instant::now();
    let r = get(&c, w.port, "/slow", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, "upstream request timeout")
    );
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    let failures = w.v1.failures.load(Ordering::SeqCst);
    let r = get(&c, w.port, "/flaky", &[("x-test-id", "one")]).await;
    assert_eq!(r.status, 200, "retried after a 503: {}", r.body);
    assert_eq!(w.v1.failures.load(Ordering::SeqCst), failures + 1);
    // With retries off, the 503 comes back; a 404 is never retried either way.
    let r = get(&c, w.port, "/status/503", &[]).await;
    assert_eq!(r.status, 503);
    let stats = proxy.shared.stats.prometheus();
    assert!(
        stats.contains("spar_response_flags_total{flag=\"UT\"} 1"),
        "{stats}"
    );
    assert!(
        stats.contains("spar_response_flags_total{flag=\"FI\"} 1"),
        "{stats}"
    );
    assert!(
        stats.contains("envoy_cluster_upstream_rq_retry 1"),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_downstream_and_upstream() {
    let w = world().await;
    let (_proxy, _) = proxy_for(&w, "v1").await;
    let h2 = client(true);
    let r = get(&h2, w.port, "/echo", &[("x-echo", "host")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), Some("v1"));
    assert!(
        r.body.contains("version=HTTP/1.1"),
        "h2 in, h1 out: {}",
        r.body
    );
    assert_eq!(
        r.echoed("host"),
        Some(format!("127.0.0.1:{}", w.port).as_str())
    );
    // A `grpc` port makes an HTTP/2 cluster.
    let r = get(&client(false), w.port, "/grpc", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("backend=h2 version=HTTP/2.0"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_route_change_loses_no_request() {
    let w = world().await;
    let (_proxy, store) = proxy_for(&w, "v1").await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let seen_v2 = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, failed, seen_v2, port) = (stop.clone(), failed.clone(), seen_v2.clone(), w.port);
        tasks.push(tokio::spawn(async move {
            let c = client(false);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = get(&c, port, "/live", &[]).await;
                if r.status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                if r.backend() == Some("v2") {
                    seen_v2.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = Snapshot::from_xds(&gateway_resources(&config(&w, "v2"))).unwrap();
    let changed_at = Instant::now();
    let version = next.version;
    store.publish(Snapshot {
        version: version + 100,
        ..next
    });
    // Poll until traffic lands on v2, then let it flow a little longer.
    while seen_v2.load(Ordering::SeqCst) == 0 && changed_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(seen_v2.load(Ordering::SeqCst) > 0, "the change took effect");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no failed request out of {total}"
    );
}

//! `spar ctl explain`: which listener, route, VirtualService rule, cluster and endpoints a
//! request takes, offline from a config directory and online from what a connected proxy
//! was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use support::*;

const PRODUCTPAGE: &str = "sidecar~10.1.0.9~productpage-v1-1.default~default.svc.cluster.local";

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: default}
subsets:
- addresses: [{ip: 10.0.0.1}]
  ports: [{name: http, port: 9080}]
---
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
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: split
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
"#;

fn explain(args: &[&str]) -> (i32, String) {
    let mut all = vec!["ctl", "explain"];
    all.extend_from_slice(args);
    let out = spar(&all);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

#[test]
fn bookinfo_productpage_to_reviews_goes_to_v1_by_virtual_service_all_v1() {
    let (code, text) = explain(&[
        "--config-dir",
        "../../examples/bookinfo",
        "--from",
        PRODUCTPAGE,
        "http://reviews:9080/reviews/1",
    ]);
    assert_eq!(code, 0, "{text}");
    for want in [
        "listener:  0.0.0.0_9080",
        "routes:    9080",
        "vhost:     reviews.default.svc.cluster.local:9080",
        "source:    VirtualService default/reviews",
        "cluster:   outbound|9080|v1|reviews.default.svc.cluster.local",
        "endpoints: ",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn header_match_and_weighted_split_name_their_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), CONFIG).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, text) = explain(&[
        "--config-dir",
        d,
        "--from",
        PRODUCTPAGE,
        "http://reviews:9080/",
        "-H",
        "end-user: jason",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("route:     #0 \"jason\""), "{text}");
    assert!(
        text.contains("cluster:   outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{text}"
    );
    let (_, text) = explain(&[
        "--config-dir",
        d,
        "--from",
        PRODUCTPAGE,
        "http://reviews:9080/",
    ]);
    assert!(text.contains("route:     #1 \"split\""), "{text}");
    assert!(text.contains("outbound|9080|v1|reviews.default.svc.cluster.local  weight 80"));
    assert!(text.contains("outbound|9080|v2|reviews.default.svc.cluster.local  weight 20"));
    // A port nothing listens on is said so, with exit code 1.
    let (code, text) = explain(&[
        "--config-dir",
        d,
        "--from",
        PRODUCTPAGE,
        "http://reviews:7777/",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("listener:  none on port 7777"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_explains_what_a_connected_proxy_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), CONFIG).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut ads = AdsStream::connect(&cp.xds, PRODUCTPAGE).await;
    ads.subscribe(CLUSTER, &[]).await;
    ads.subscribe(
        ENDPOINT,
        &[
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
        ],
    )
    .await;
    ads.subscribe(LISTENER, &[]).await;
    ads.subscribe(ROUTE, &["9080"]).await;
    cp.get_until("/debug/syncz", "the proxy to show", |b| {
        b.contains(PRODUCTPAGE)
    });
    let out = cp.spar(&[
        "ctl",
        "explain",
        "--from",
        "productpage-v1-1.default",
        "--cp",
        &cp.monitoring,
        "http://reviews.default:9080/x",
        "-H",
        "end-user: jason",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("source:    VirtualService default/reviews"),
        "{text}"
    );
    assert!(
        text.contains("cluster:   outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{text}"
    );
}

//! The xDS client against the control plane's real source: Bookinfo translated for a
//! productpage sidecar by `SnapshotStore`, then a VirtualService change published. The
//! client must end up with Istio's resource names (EDS by cluster, RDS by port) and follow
//! the change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "client_support.rs"]
mod support;

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use prost::Message;
use spar_model::{ConfigSet, LoadOptions};
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use spar_xds::client::Mode;
use spar_xds::{AdsServer, Metrics, ServeOptions, SnapshotStore, StatusRegistry, SyncState};
use support::{Recorder, Running, NODE, WAIT};

const BOOKINFO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bookinfo");

fn bookinfo(vs: &str) -> ConfigSet {
    let files: Vec<(String, String)> = ["bookinfo.yaml", "destination-rule-all.yaml"]
        .iter()
        .map(|f| {
            let path = format!("{BOOKINFO}/{f}");
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .chain(std::iter::once(("vs.yaml".to_string(), vs.to_string())))
        .collect();
    let set = ConfigSet::load(
        files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
        &LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    set
}

fn reviews_to(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"
    )
}

/// The handler's route configuration "9080", as debug text (cluster names appear in it).
fn route_9080(h: &Recorder) -> String {
    h.resource(ROUTE, "9080")
        .map(|b| format!("{:?}", RouteConfiguration::decode(b.as_slice()).unwrap()))
        .unwrap_or_default()
}

async fn wait_status(
    status: &StatusRegistry,
    what: &str,
    pred: &impl Fn(&spar_xds::ProxyStatus) -> bool,
) {
    let deadline = std::time::Instant::now() + WAIT;
    while !status.all().iter().any(|p| p.proxy == NODE && pred(p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            status.all()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn follows_bookinfo(mode: Mode) {
    let store = Arc::new(SnapshotStore::new(bookinfo(&reviews_to("v1"))));
    let status = Arc::new(StatusRegistry::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ads = AdsServer::new(store.clone(), status.clone(), Arc::new(Metrics::new()));
    tokio::spawn(ads.serve(listener, ServeOptions::default(), std::future::pending()));
    let client = Running::start(format!("http://{addr}"), mode);
    let h = client.handler.clone();
    let synced = |p: &spar_xds::ProxyStatus| {
        ["cds", "eds", "lds", "rds"].iter().all(|t| {
            p.types
                .get(t)
                .is_some_and(|s| s.state == SyncState::Synced && s.acked_version == s.sent_version)
        })
    };
    wait_status(&status, "bookinfo synced", &synced).await;

    let clusters = h.names(CLUSTER);
    let reviews_v1 = "outbound|9080|v1|reviews.default.svc.cluster.local";
    assert!(clusters.iter().any(|c| c == reviews_v1), "{clusters:#?}");
    let eds = h.names(ENDPOINT);
    assert!(
        eds.iter().any(|c| c == reviews_v1),
        "EDS follows the clusters: {eds:#?}"
    );
    assert!(!h.names(LISTENER).is_empty());
    let routes = h.names(ROUTE);
    assert!(
        routes.iter().any(|r| r == "9080"),
        "RDS by port: {routes:#?}"
    );
    assert!(route_9080(&h).contains(reviews_v1));

    // Shift reviews to v2: the route for port 9080 changes, nothing is lost meanwhile.
    store.publish(bookinfo(&reviews_to("v2")));
    let reviews_v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";
    let deadline = std::time::Instant::now() + WAIT;
    while !route_9080(&h).contains(reviews_v2) {
        assert!(
            std::time::Instant::now() < deadline,
            "route 9080 never moved to v2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    wait_status(&status, "synced after the change", &synced).await;
    assert_eq!(h.names(CLUSTER), clusters, "the cluster set is unchanged");
    assert_eq!(client.stats.nacks(ROUTE), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn delta_follows_bookinfo() {
    follows_bookinfo(Mode::Delta).await;
}

#[tokio::test]
async fn sotw_follows_bookinfo() {
    follows_bookinfo(Mode::Sotw).await;
}

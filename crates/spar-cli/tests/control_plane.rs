//! `spar control-plane`, `spar ctl proxy-status` and `spar bootstrap envoy` as processes:
//! an ADS client connects and ACKs, status and metrics show it, a broken config file is
//! counted and the good ones keep being served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use spar_translate::type_url::{CLUSTER, LISTENER};
use support::*;

const NODE: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";

const GOOD: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_connects_acks_and_shows_synced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vs.yaml"), GOOD).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut ads = AdsStream::connect(&cp.xds, NODE).await;
    for t in [CLUSTER, LISTENER] {
        ads.subscribe_and_ack(t, &[]).await;
    }
    cp.get_until("/debug/syncz", "CDS and LDS synced", |b| {
        b.contains(NODE) && b.matches("\"SYNCED\"").count() >= 2
    });
    let out = cp.spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let row = table.lines().find(|l| l.starts_with(NODE)).expect(&table);
    assert!(row.contains("SOTW"), "{table}");
    assert_eq!(row.matches("SYNCED").count(), 2, "{table}");
    let (code, metrics) = cp.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("pilot_xds 1"), "{metrics}");
    assert!(
        metrics.contains("pilot_xds_pushes{type=\"cds\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pilot_proxy_convergence_time"),
        "{metrics}"
    );
    let (code, dump) = cp.get(&format!("/debug/config_dump?proxyID={NODE}"));
    assert_eq!(code, 200, "{dump}");
    assert!(dump.contains("\"connections\""), "{dump}");

    // A file that turns bad is counted; the good config stays.
    std::fs::write(
        dir.path().join("bad.yaml"),
        GOOD.replace("reviews\n", "reviews\n      weight: -5\n"),
    )
    .unwrap();
    cp.get_until("/metrics", "the config error counted", |m| {
        m.contains("spar_config_errors 1")
    });
    let out = cp.spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("bad.yaml: invalid, its last good version (if any) stays in force"),
        "{table}"
    );
    assert!(table.contains("bad.yaml:5: YAML syntax error"), "{table}");
    std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
    cp.get_until("/metrics", "the config error cleared", |m| {
        m.contains("spar_config_errors 0")
    });
}

#[test]
fn proxy_status_says_where_it_looked_when_nothing_listens() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = spar(&["ctl", "proxy-status", "--cp", &port.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is `spar control-plane` running"), "{err}");
}

#[test]
fn bootstrap_points_envoy_at_the_control_plane() {
    let out = spar(&[
        "bootstrap",
        "envoy",
        "--node-id",
        "app-1.shop",
        "--xds-addr",
        "127.0.0.1:15999",
        "--label",
        "app=web",
        "--admin-port",
        "0",
    ]);
    assert!(out.status.success(), "{out:?}");
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        b["node"]["id"],
        "sidecar~127.0.0.1~app-1.shop~shop.svc.cluster.local"
    );
    assert_eq!(b["node"]["metadata"]["NAMESPACE"], "shop");
    assert_eq!(b["node"]["metadata"]["LABELS"]["app"], "web");
    let ads = &b["dynamic_resources"]["ads_config"];
    assert_eq!(ads["api_type"], "GRPC");
    assert_eq!(
        ads["grpc_services"][0]["envoy_grpc"]["cluster_name"],
        "xds-grpc"
    );
    assert_eq!(
        b["dynamic_resources"]["cds_config"]["resource_api_version"],
        "V3"
    );
    let xds = &b["static_resources"]["clusters"][0];
    assert_eq!(xds["name"], "xds-grpc");
    assert_eq!(
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        15999
    );
    let gw = spar(&[
        "bootstrap",
        "envoy",
        "--node-id",
        "gw-1.istio-system",
        "--role",
        "gateway",
    ]);
    let b: serde_json::Value = serde_json::from_slice(&gw.stdout).unwrap();
    assert!(b["node"]["id"].as_str().unwrap().starts_with("router~"));
}

#[test]
fn grpc_bootstrap_marks_the_client_proxyless() {
    let out = spar(&[
        "bootstrap",
        "grpc",
        "--node-id",
        "client-1.default",
        "--xds-addr",
        "127.0.0.1:15999",
    ]);
    assert!(out.status.success(), "{out:?}");
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["xds_servers"][0]["server_uri"], "127.0.0.1:15999");
    assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
    assert_eq!(b["node"]["metadata"]["GENERATOR"], "grpc");
    assert_eq!(
        b["node"]["id"],
        "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local"
    );
}

//! `spar ctl proxy-config`: a tonic client connects as a proxy and takes CDS; the command
//! prints the clusters it was sent, as a summary and as JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use spar_translate::type_url::CLUSTER;
use support::*;

const NODE: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";
const CLUSTER_NAME: &str = "outbound|9080||reviews.default.svc.cluster.local";

const CONFIG: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_prints_the_clusters_a_proxy_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.yaml"), CONFIG).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut ads = AdsStream::connect(&cp.xds, NODE).await;
    let cds = ads.subscribe(CLUSTER, &[]).await;
    assert_eq!(cds.type_url, CLUSTER);
    cp.get_until("/debug/syncz", "the proxy to show", |b| b.contains(NODE));

    // By `<pod>.<namespace>`, default output: the summary.
    let out = cp.spar(&[
        "ctl",
        "proxy-config",
        "app-1.default",
        "clusters",
        "--cp",
        &cp.monitoring,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("clusters:\n"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(CLUSTER_NAME))
        .unwrap_or_else(|| panic!("no {CLUSTER_NAME} in\n{text}"));
    assert!(line.starts_with("  "), "{text}");
    assert!(
        !text.contains("listeners:"),
        "only clusters asked for:\n{text}"
    );

    // By full id, JSON: one object per resource with the encoded bytes.
    let out = cp.spar(&[
        "ctl",
        "proxy-config",
        NODE,
        "clusters",
        "-o",
        "json",
        "--cp",
        &cp.monitoring,
    ]);
    assert!(out.status.success(), "{out:?}");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let c = all
        .iter()
        .find(|r| r["name"] == CLUSTER_NAME)
        .expect("the cluster in JSON");
    assert_eq!(c["type_url"], CLUSTER);
    assert!(!c["base64"].as_str().unwrap().is_empty());
    assert_eq!(
        all.len(),
        cds.resources.len(),
        "every cluster sent, nothing else"
    );

    // YAML: the same objects.
    let out = cp.spar(&[
        "ctl",
        "proxy-config",
        NODE,
        "clusters",
        "-o",
        "yaml",
        "--cp",
        &cp.monitoring,
    ]);
    assert!(out.status.success(), "{out:?}");
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains(&format!("name: {CLUSTER_NAME}")), "{yaml}");
    let from_yaml: Vec<serde_json::Value> = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, all);

    // A proxy that is not connected is an error that says so.
    let out = cp.spar(&[
        "ctl",
        "proxy-config",
        "nope.default",
        "all",
        "--cp",
        &cp.monitoring,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connected proxy"));
}

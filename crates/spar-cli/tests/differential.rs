//! Differential test: one config directory served by one `spar control-plane` to a real
//! Envoy gateway and to `spar proxy --role gateway`, selected by the same labels so both
//! are sent the same listeners, routes, clusters and endpoints (checked with
//! `spar ctl proxy-config <id> all -o json`: every resource's version is the same). The
//! two cannot share the Gateway's port, so they run one after the other on it: Envoy
//! answers the corpus, is stopped, then spar proxy answers the same corpus. Each answer's
//! status, answering backend, the path and headers the backend saw, the compared response
//! headers, and direct-response bodies must match. Without Envoy the test says why and
//! passes, unless `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "differential/backends.rs"]
mod backends;
#[path = "differential/config.rs"]
mod config;
#[path = "differential/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use backends::Kind;
use corpus::{Entry, Outcome, KNOWN_DIFFERENCES};
use support::*;

const LABEL: &str = "istio=diff-gw";
const ENVOY_NODE: &str = "router~127.0.0.1~envoy-gw-1.istio-system~istio-system.svc.cluster.local";

struct SparProxy {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for SparProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is waited for by `SparProxy`'s Drop.
#[allow(clippy::zombie_processes)]
fn spar_proxy(xds: &str) -> SparProxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spar"))
        .args(["proxy", "--role", "gateway", "--workload", "spar-gw-1"])
        .args(["--namespace", "istio-system", "--labels", LABEL])
        .args(["--xds-addr", xds, "--admin-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spar proxy");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    SparProxy { child, log: rx }
}

/// A readiness probe: path, headers, the backend that must answer.
type Probe = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Polls until `what` routes to every echo backend, the hash service and (through a retry)
/// the flaky one, so the corpus does not start while endpoints are still arriving.
fn until_served(gw: u16, what: &str) {
    let probes: [Probe; 6] = [
        ("/", &[], "s0"),
        ("/exact", &[], "s1"),
        ("/x", &[("x-t-v", "2")], "s2"),
        ("/re/1", &[], "s3"),
        ("/hash", &[("x-t-user", "warmup")], ""),
        ("/retry/warmup", &[], "flaky"),
    ];
    let deadline = Instant::now() + WAIT;
    for (n, (path, headers, backend)) in probes.iter().enumerate() {
        loop {
            let mut h: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            h.push((
                "x-t-n".to_string(),
                format!("warmup-{n}-{:?}", Instant::now()),
            ));
            let r = backends::send(gw, "GET", "a.example", path, &h);
            if r.status == 200 && r.body.contains(&format!("\"backend\":\"{backend}")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never served {path}: {} {}",
                r.status,
                r.body
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every resource the control plane sent to `proxy` (`<pod>.<namespace>`): (type, name) →
/// version (the hash of its bytes).
fn sent_versions(cp: &ControlPlane, proxy: &str) -> BTreeMap<(String, String), String> {
    let out = cp.spar(&[
        "ctl",
        "proxy-config",
        proxy,
        "all",
        "-o",
        "json",
        "--cp",
        &cp.monitoring,
    ]);
    assert!(out.status.success(), "proxy-config {proxy}: {out:?}");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            ((s("type_url"), s("name")), s("version"))
        })
        .collect()
}

/// Polls until the control plane has sent `proxy` every type (listener, route, cluster,
/// endpoint), then returns what it sent.
fn settled_versions(cp: &ControlPlane, proxy: &str) -> BTreeMap<(String, String), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = sent_versions(cp, proxy);
        let types: std::collections::BTreeSet<&str> = v
            .keys()
            .map(|(t, _)| t.rsplit('.').next().unwrap_or(""))
            .collect();
        if [
            "Listener",
            "RouteConfiguration",
            "Cluster",
            "ClusterLoadAssignment",
        ]
        .iter()
        .all(|t| types.contains(t))
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{proxy} was never sent every type: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_corpus(gw: u16, corpus: &[Entry]) -> Vec<Outcome> {
    corpus
        .iter()
        .map(|e| {
            let host = e.host.replace("{port}", &gw.to_string());
            let t = Instant::now();
            let r = backends::send(gw, e.method, &host, e.path, &e.headers);
            if t.elapsed() > Duration::from_millis(800) {
                eprintln!("slow: {} took {:?}", e.key(), t.elapsed());
            }
            Outcome::of(e, &r)
        })
        .collect()
}

/// Checks on Envoy's answers that the corpus really exercises what it claims: a retry
/// after the flaky backend's 503, the timeout, the 100/0 split, hashing spread over the
/// backends, header operations, redirects and CORS.
fn exercised(corpus: &[Entry], envoy: &[Outcome]) {
    let find = |method: &str, host: &str, path: &str| {
        corpus
            .iter()
            .zip(envoy)
            .find(|(e, _)| e.method == method && e.host == host && e.path == path)
            .map(|(_, o)| o)
            .unwrap_or_else(|| panic!("{method} {host}{path} not in the corpus"))
    };
    let a = "a.example";
    let retry = find("GET", a, "/retry/x");
    assert_eq!(
        (retry.status, retry.backend.as_str()),
        (200, "flaky"),
        "a retry after 503"
    );
    assert_eq!(
        find("GET", a, "/noretry/x").status,
        503,
        "attempts: 0 gives the 503"
    );
    assert_eq!(find("GET", a, "/slow").status, 504, "route timeout");
    assert_eq!(find("GET", a, "/weighted").backend, "s1", "100/0 split");
    assert_eq!(find("GET", a, "/api/list?x=1").seen_path, "/v2/list?x=1");
    assert_eq!(find("GET", a, "/rx/abc/def/g").seen_path, "/new/def/g/abc");
    assert_eq!(find("GET", a, "/fault").status, 418);
    let redirect = find("GET", a, "/redirect?keep=1");
    assert_eq!(redirect.status, 302);
    assert!(
        !redirect.response_headers.is_empty(),
        "Location on a redirect"
    );
    let ops = find("GET", a, "/hdrops/q");
    assert_eq!(
        ops.seen_headers.get("x-t-set").map(Vec::as_slice),
        Some(&["set-by-vs".to_string()][..])
    );
    assert!(!ops.seen_headers.contains_key("x-t-remove"));
    assert!(!ops.response_headers.contains_key("x-t-bresp"));
    let hashed: std::collections::BTreeSet<&str> = corpus
        .iter()
        .zip(envoy)
        .filter(|(e, _)| e.path == "/hash")
        .map(|(_, o)| o.backend.as_str())
        .collect();
    assert!(hashed.len() >= 3, "hash keys spread over {hashed:?}");
    let preflight = corpus
        .iter()
        .zip(envoy)
        .find(|(e, _)| e.method == "OPTIONS" && e.path == "/cors")
        .map(|(_, o)| o)
        .unwrap();
    assert!(
        preflight
            .response_headers
            .contains_key("access-control-allow-origin"),
        "a CORS preflight answer: {preflight:?}"
    );
}

#[test]
fn envoy_and_spar_proxy_answer_the_corpus_alike() {
    let Some(envoy_bin) = envoy_or_skip("envoy_and_spar_proxy_answer_the_corpus_alike") else {
        return;
    };
    let started = Instant::now();
    let echo = ["s0", "s1", "s2", "s3"].map(|n| backends::start(n, Kind::Echo));
    let ports = config::Ports {
        echo,
        flaky: backends::start("flaky", Kind::Flaky),
        slow: backends::start("slow", Kind::Slow(Duration::from_millis(1500))),
    };
    let gw = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cfg.yaml"), config::yaml(&ports, gw)).unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let corpus = corpus::corpus();
    assert!(corpus.len() >= 200, "corpus has {}", corpus.len());

    // Envoy first.
    let work = tempfile::tempdir().unwrap();
    let envoy = Envoy::start(
        &envoy_bin,
        work.path(),
        ENVOY_NODE,
        &cp.xds,
        "sotw",
        &[LABEL],
    );
    until_served(gw, "envoy");
    let envoy_sent = settled_versions(&cp, "envoy-gw-1.istio-system");
    let from_envoy = run_corpus(gw, &corpus);
    let envoy_log = envoy.log();
    drop(envoy);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", gw)).is_ok() {
        assert!(Instant::now() < deadline, "envoy still holds port {gw}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Then spar proxy, on the same port, with the flaky backend reset.
    backends::EPOCH.fetch_add(1, Ordering::SeqCst);
    let spar = spar_proxy(&cp.xds);
    until_served(gw, "spar proxy");
    let spar_sent = settled_versions(&cp, "spar-gw-1.istio-system");
    assert_eq!(
        envoy_sent, spar_sent,
        "both proxies must be sent the same resources, byte for byte"
    );
    let from_spar = run_corpus(gw, &corpus);
    let spar_log: Vec<String> = spar.log.try_iter().collect();
    drop(spar);

    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut seen_known: BTreeMap<&str, usize> = BTreeMap::new();
    for ((entry, e), s) in corpus.iter().zip(&from_envoy).zip(&from_spar) {
        let diff = e.diff(s);
        if diff.is_empty() {
            continue;
        }
        let key = entry.key();
        let reasons: Vec<Option<&str>> = diff.iter().map(|l| corpus::known(&key, l)).collect();
        let lines: Vec<String> = diff
            .iter()
            .zip(&reasons)
            .map(|(l, r)| match r {
                Some(_) => format!("{l}  [known]"),
                None => l.clone(),
            })
            .collect();
        let row = format!("{key}\n    {}", lines.join("\n    "));
        if reasons.iter().all(Option::is_some) {
            let distinct: std::collections::BTreeSet<&str> =
                reasons.into_iter().flatten().collect();
            for why in distinct {
                *seen_known.entry(why).or_default() += 1;
            }
            known.push(row);
        } else {
            failures.push(row);
        }
    }
    let statuses: std::collections::BTreeSet<u16> = from_envoy.iter().map(|o| o.status).collect();
    eprintln!(
        "differential: {} requests, {} match, {} known differences, {} new mismatches, envoy statuses {statuses:?}, {:?}",
        corpus.len(),
        corpus.len() - failures.len() - known.len(),
        known.len(),
        failures.len(),
        started.elapsed()
    );
    if !known.is_empty() {
        eprintln!("known differences (requests showing each | request | mismatch | why):");
        for (request, prefix, why) in KNOWN_DIFFERENCES {
            let n = seen_known.get(why).copied().unwrap_or(0);
            eprintln!("  {n:>4} | {request:<12} | {prefix:<48} | {why}");
        }
        eprintln!(
            "requests showing only known differences:\n{}",
            known.join("\n")
        );
    }
    for (request, prefix, why) in KNOWN_DIFFERENCES {
        if !seen_known.contains_key(why) {
            eprintln!(
                "listed in KNOWN_DIFFERENCES but not seen any more (remove it): [{request}] {prefix}"
            );
        }
    }
    // Envoy must have done real work, or the comparison proves nothing.
    exercised(&corpus, &from_envoy);
    for s in [200, 204, 302, 418, 503, 504] {
        assert!(
            statuses.contains(&s),
            "Envoy never answered {s}: {statuses:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests answered differently by spar proxy and Envoy:\n{}\nenvoy log tail:\n{}\nspar proxy log tail:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n"),
        envoy_log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
        spar_log.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
    );
}

//! `spar proxy --role gateway` end to end: a `spar control-plane` child serving a config
//! directory, a `spar proxy` child that gets its listeners, routes, clusters and endpoints
//! over ADS (Delta), and two echo backends in this process. Proven: readiness after the
//! first full config, weighted routing, and a VirtualService rewritten on disk taking
//! effect with no failed request while traffic flows; SIGTERM drains and exits cleanly;
//! `/logging` changes the log filter. The drain test: 25 HTTP/1.1 and 25 HTTP/2 (curl) POSTs
//! with bodies of 1 B to 240 KB are all held at the backend when SIGTERM arrives; the
//! listener closes, every request completes with its whole body counted, HTTP/1.1 answers
//! carry `connection: close`, and the proxy exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::*;

/// One GET on a fresh connection: (status, backend name); status 0 when it failed.
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: echo.example\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let name = raw
        .split("backend=")
        .nth(1)
        .map(|b| b.trim().to_string())
        .unwrap_or_default();
    (code, name)
}

fn registry(v1: u16, v2: u16, gw: u16) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: default}\nspec:\n  selector: {app: echo}\n  ports: [{name: http, port: 8080}]\n",
    );
    for (v, port) in [("v1", v1), ("v2", v2)] {
        y.push_str(&format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-{v}, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: echo-{v}}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: echo-{v}, namespace: default, labels: {{app: echo, version: {v}}}, annotations: {{sidecar.istio.io/inject: "false"}}}}
spec: {{containers: [{{name: echo}}]}}
status: {{podIP: 127.0.0.1}}
"#
        ));
    }
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: echo.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {gw}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"#
    ));
    y
}

fn virtual_service(live: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{{uri: {{prefix: /live}}}}]
    route: [{{destination: {{host: echo.default.svc.cluster.local, subset: {live}, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /split}}}}]
    route:
    - {{destination: {{host: echo.default.svc.cluster.local, subset: v1, port: {{number: 8080}}}}, weight: 50}}
    - {{destination: {{host: echo.default.svc.cluster.local, subset: v2, port: {{number: 8080}}}}, weight: 50}}
"#
    )
}

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

struct ProxyChild {
    child: Child,
    admin: String,
    log: mpsc::Receiver<String>,
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is waited for by `ProxyChild`'s Drop; a panic before that ends the test run.
#[allow(clippy::zombie_processes)]
fn start_proxy(xds: &str) -> ProxyChild {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spar"))
        .args(["proxy", "--role", "gateway", "--workload", "gw-1"])
        .args([
            "--namespace",
            "istio-system",
            "--labels",
            "istio=ingressgateway",
        ])
        .args(["--xds-addr", xds, "--admin-port", "0", "--drain-time", "1s"])
        .env("RUST_LOG", "info")
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
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("spar proxy did not print its admin address");
        if let Some(a) = line.strip_prefix("admin listening on ") {
            return ProxyChild {
                child,
                admin: a.to_string(),
                log: rx,
            };
        }
    }
}

fn wait_for(what: &str, p: &ProxyChild, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        if Instant::now() > deadline {
            let log: Vec<String> = p.log.try_iter().collect();
            panic!(
                "timed out waiting for {what}; proxy log:\n{}",
                log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn gateway_routes_splits_and_follows_a_live_change() {
    let (v1, v2, gw) = (name_backend("v1"), name_backend("v2"), free_port());
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "registry.yaml", &registry(v1, v2, gw));
    write_atomic(dir.path(), "vs.yaml", &virtual_service("v1"));
    let cp = ControlPlane::start(dir.path(), &[]);
    let proxy = start_proxy(&cp.xds);

    wait_for("/ready", &proxy, || {
        http_get(&proxy.admin, "/ready").0 == 200
    });
    wait_for("the gateway route", &proxy, || get(gw, "/live").1 == "v1");
    let (_, dump) = http_get(&proxy.admin, "/config_dump");
    assert!(dump.contains(&format!("0.0.0.0_{gw}")), "{dump}");

    let mut v1_hits = 0;
    for _ in 0..200 {
        let (code, name) = get(gw, "/split");
        assert_eq!(code, 200);
        v1_hits += usize::from(name == "v1");
    }
    assert!(
        (60..=140).contains(&v1_hits),
        "50/50 split: v1 got {v1_hits} of 200"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let traffic: Vec<_> = (0..3)
        .map(|_| {
            let (stop, failed, sent) = (stop.clone(), failed.clone(), sent.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let (code, _) = get(gw, "/live");
                    sent.fetch_add(1, Ordering::SeqCst);
                    if code != 200 {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    write_atomic(dir.path(), "vs.yaml", &virtual_service("v2"));
    let changed = Instant::now();
    wait_for("the change to reach the proxy", &proxy, || {
        get(gw, "/live").1 == "v2"
    });
    let took = changed.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for t in traffic {
        t.join().unwrap();
    }
    eprintln!(
        "change took effect in {took:?}; {} requests during it",
        sent.load(Ordering::SeqCst)
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no failed request");

    // /logging, as Envoy's admin: read the filter, refuse a bad level, turn one target up.
    let (code, body) = http_get(&proxy.admin, "/logging");
    assert_eq!((code, body.trim()), (200, "active log filter: info"));
    assert_eq!(http_post(&proxy.admin, "/logging?level=loud").0, 400);
    let (code, body) = http_post(&proxy.admin, "/logging?spar_proxy=debug");
    assert_eq!(
        (code, body.trim()),
        (200, "active log filter: info,spar_proxy=debug")
    );
    let _ = proxy.log.try_iter().count();
    assert_eq!(get(gw, "/live").0, 200);
    wait_for("a debug line after /logging", &proxy, || {
        proxy
            .log
            .try_iter()
            .any(|l| l.contains("DEBUG") && l.contains("new connection"))
    });
    assert_eq!(http_post(&proxy.admin, "/logging?level=info").0, 200);

    // SIGTERM: drain and exit 0.
    let mut proxy = proxy;
    let pid = proxy.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            assert!(s.success(), "exit status {s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spar proxy did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend that reads each request's whole body, then holds the answer until `release`
/// is set, and answers `got=<body bytes>`. `heads` counts requests whose body it has read.
fn held_backend(heads: Arc<AtomicUsize>, release: Arc<AtomicBool>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (heads, release) = (heads.clone(), release.clone());
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut chunked) = (0usize, false);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        chunked |=
                            lower.starts_with("transfer-encoding:") && lower.contains("chunked");
                        if h == "\r\n" {
                            break;
                        }
                    }
                    let got = if chunked {
                        read_chunked(&mut r)
                    } else {
                        let mut body = vec![0u8; length];
                        r.read_exact(&mut body).map(|()| length).unwrap_or(0)
                    };
                    heads.fetch_add(1, Ordering::SeqCst);
                    let deadline = Instant::now() + WAIT;
                    while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let body = format!("got={got}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if out.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn read_chunked(r: &mut impl BufRead) -> usize {
    let mut total = 0;
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            return total;
        }
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0u8; n + 2];
        if r.read_exact(&mut chunk).is_err() {
            return total;
        }
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// One HTTP/1.1 POST of `size` bytes on its own connection: (status, body, `connection`).
fn post_h1(port: u16, size: usize) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let head =
        format!("POST /live HTTP/1.1\r\nHost: echo.example\r\ncontent-length: {size}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![b'x'; size]).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let (mut length, mut connection) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if let Some(v) = lower.strip_prefix("connection:") {
            connection = v.trim().to_string();
        }
        if h == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, String::from_utf8(body).unwrap(), connection)
}

#[test]
fn sigterm_lets_fifty_in_flight_requests_with_bodies_finish() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
            "curl (the HTTP/2 client here) is required"
        );
        eprintln!("skipped: curl is not installed (it is this test's HTTP/2 client)");
        return;
    }
    let (heads, release) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let backend = held_backend(heads.clone(), release.clone());
    let gw = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "registry.yaml", &registry(backend, backend, gw));
    write_atomic(dir.path(), "vs.yaml", &virtual_service("v1"));
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut proxy = start_proxy(&cp.xds);
    wait_for("/ready", &proxy, || {
        http_get(&proxy.admin, "/ready").0 == 200
    });
    wait_for("the gateway route", &proxy, || {
        std::net::TcpStream::connect(("127.0.0.1", gw)).is_ok()
    });

    let sizes: Vec<usize> = (0..25).map(|i| 1 + i * 10_007).collect();
    let h1: Vec<_> = sizes
        .iter()
        .map(|&size| (size, std::thread::spawn(move || post_h1(gw, size))))
        .collect();
    let h2: Vec<_> = sizes
        .iter()
        .map(|&size| {
            let file = dir.path().join(format!("body-{size}"));
            std::fs::write(&file, vec![b'y'; size]).unwrap();
            let child = Command::new("curl")
                .args(["-s", "-S", "--http2-prior-knowledge", "--max-time", "30"])
                .args(["-w", "\n%{http_code} %{http_version}"])
                .args(["-H", "Host: echo.example", "--data-binary"])
                .arg(format!("@{}", file.display()))
                .arg(format!("http://127.0.0.1:{gw}/live"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (size, child)
        })
        .collect();
    wait_for("50 requests in flight at the backend", &proxy, || {
        heads.load(Ordering::SeqCst) == 50
    });

    let pid = proxy.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Draining: no new connections are taken once the listeners are closed.
    wait_for("the gateway port to close", &proxy, || {
        std::net::TcpStream::connect(("127.0.0.1", gw)).is_err()
    });
    release.store(true, Ordering::SeqCst);

    for (size, t) in h1 {
        let (code, body, connection) = t.join().unwrap();
        assert_eq!((code, body.as_str()), (200, format!("got={size}").as_str()));
        assert_eq!(
            connection, "close",
            "HTTP/1.1 answers during drain close the connection"
        );
    }
    for (size, child) in h2 {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("got={size}\n200 2"),
            "HTTP/2 request of {size} bytes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            assert!(s.success(), "exit status {s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spar proxy did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! Differential: the same Spar config served to a real Envoy and to `spar proxy`, both as
//! ingress gateways, must send each consistent-hash key to the same backend, for ring hash
//! and for Maglev (DestinationRule `consistentHash.httpHeaderName`). Four HTTP backends in
//! this process name themselves; 64 keys per policy. Without Envoy the test says why and
//! passes, unless `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

fn backend(name: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim_end().is_empty() {
                            break;
                        }
                    }
                    let text = format!("backend={name}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str, user: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: echo.example\r\nx-user: {user}\r\nConnection: close\r\n\r\n"
    );
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

fn config(ports: &[u16], envoy_gw: u16, spar_gw: u16) -> String {
    let mut y = String::new();
    for svc in ["ring", "maglev"] {
        y.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n---\n"
        ));
        for (i, p) in ports.iter().enumerate() {
            y.push_str(&format!(
                r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {svc}-{i}, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}
addressType: IPv4
ports: [{{name: http, port: {p}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
"#
            ));
        }
    }
    y.push_str(&format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ring, namespace: default}}
spec:
  host: ring
  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user, ringHash: {{minimumRingSize: 1024}}}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: maglev, namespace: default}}
spec:
  host: maglev
  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user, maglev: {{tableSize: 65537}}}}}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: envoy-gw, namespace: istio-system}}
spec:
  selector: {{istio: envoy-gw}}
  servers: [{{port: {{number: {envoy_gw}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: spar-gw, namespace: istio-system}}
spec:
  selector: {{istio: spar-gw}}
  servers: [{{port: {{number: {spar_gw}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: hash, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/envoy-gw, istio-system/spar-gw]
  http:
  - match: [{{uri: {{prefix: /ring}}}}]
    route: [{{destination: {{host: ring.default.svc.cluster.local, port: {{number: 8080}}}}}}]
  - match: [{{uri: {{prefix: /maglev}}}}]
    route: [{{destination: {{host: maglev.default.svc.cluster.local, port: {{number: 8080}}}}}}]
"#
    ));
    y
}

struct SparProxy {
    child: Child,
    /// Keeps the stderr reader (and so the pipe) alive.
    _log: mpsc::Receiver<String>,
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
        .args(["--namespace", "istio-system", "--labels", "istio=spar-gw"])
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
    SparProxy { child, _log: rx }
}

fn until_served(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while get(port, "/ring", "warmup").0 != 200 {
        assert!(Instant::now() < deadline, "{what} never served /ring");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ring_hash_and_maglev_pick_the_same_hosts_as_envoy() {
    let Some(envoy_bin) = envoy_or_skip("ring_hash_and_maglev_pick_the_same_hosts_as_envoy") else {
        return;
    };
    let ports: Vec<u16> = (0..4).map(|i| backend(format!("b{i}"))).collect();
    let (envoy_gw, spar_gw) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cfg.yaml"),
        config(&ports, envoy_gw, spar_gw),
    )
    .unwrap();
    let cp = ControlPlane::start(dir.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let envoy = Envoy::start(
        &envoy_bin,
        work.path(),
        "router~127.0.0.1~envoy-gw-1.istio-system~istio-system.svc.cluster.local",
        &cp.xds,
        "sotw",
        &["istio=envoy-gw"],
    );
    let spar = spar_proxy(&cp.xds);
    until_served(envoy_gw, "envoy");
    until_served(spar_gw, "spar proxy");
    for path in ["/ring", "/maglev"] {
        let mut spread = std::collections::BTreeSet::new();
        for k in 0..64 {
            let user = format!("user-{k}");
            let (ec, eb) = get(envoy_gw, path, &user);
            let (sc, sb) = get(spar_gw, path, &user);
            assert_eq!(
                (ec, sc),
                (200, 200),
                "{path} {user}; envoy log:\n{}",
                envoy.log()
            );
            assert_eq!(
                eb, sb,
                "{path}: key {user} went to {eb} through Envoy, {sb} through spar proxy"
            );
            spread.insert(eb);
        }
        assert!(spread.len() >= 3, "{path}: keys spread over {spread:?}");
    }
    drop(spar);
}

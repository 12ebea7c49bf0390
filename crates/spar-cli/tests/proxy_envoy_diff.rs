//! Differential tests: the same Spar config served to a real Envoy and to `spar proxy`,
//! both as ingress gateways (two Gateways, one VirtualService bound to both), must give the
//! same outcomes:
//!
//! - consistent hashing: 64 keys each go to the same backend, for ring hash and for Maglev
//!   (DestinationRule `consistentHash.httpHeaderName`);
//! - routing: a corpus of requests (hosts with and without ports and case, wildcard hosts,
//!   exact/prefix/regex/case-insensitive paths, query parameters, methods, repeated and
//!   inverted headers, redirects, direct responses, no route) gives the same status,
//!   backend and `location`.
//!
//! Without Envoy the tests say why and pass, unless `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

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
    let ports: Vec<u16> = (0..4).map(|i| name_backend(&format!("b{i}"))).collect();
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

/// One request: (status, backend, location).
fn request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let location = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let backend = body
        .strip_prefix("backend=")
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|| body.trim().to_string());
    (code, backend, location)
}

fn routing_config(ports: &[u16], envoy_gw: u16, spar_gw: u16) -> String {
    let mut y = String::new();
    for (i, p) in ports.iter().enumerate() {
        y.push_str(&format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: default}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s{i}, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}
addressType: IPv4
ports: [{{name: http, port: {p}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
"#
        ));
    }
    let dest = |i: usize| {
        format!(
            "[{{destination: {{host: s{i}.default.svc.cluster.local, port: {{number: 8080}}}}}}]"
        )
    };
    y.push_str(&format!(
        r#"apiVersion: networking.istio.io/v1
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
metadata: {{name: a, namespace: default}}
spec:
  hosts: [a.example]
  gateways: [istio-system/envoy-gw, istio-system/spar-gw]
  http:
  - match: [{{headers: {{x-v: {{exact: "2"}}}}}}]
    route: {d2}
  - match: [{{uri: {{exact: /exact}}}}]
    route: {d1}
  - match: [{{uri: {{regex: "/re/[0-9]+"}}}}]
    route: {d3}
  - match: [{{uri: {{prefix: /CaSe}}, ignoreUriCase: true}}]
    route: {d1}
  - match: [{{uri: {{prefix: /redirect}}}}]
    redirect: {{uri: /new, authority: b.example, redirectCode: 302}}
  - match: [{{uri: {{prefix: /rprefix}}}}]
    redirect: {{uri: /n}}
  - match: [{{uri: {{prefix: /direct}}}}]
    directResponse: {{status: 418, body: {{string: "teapot"}}}}
  - match: [{{queryParams: {{debug: {{exact: "1"}}}}}}]
    route: {d2}
  - match: [{{method: {{exact: POST}}}}]
    route: {d3}
  - match: [{{uri: {{prefix: /only}}, withoutHeaders: {{x-skip: {{exact: "yes"}}}}}}]
    route: {d1}
  - match: [{{uri: {{prefix: /}}}}]
    route: {d0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: default}}
spec:
  hosts: ["*.wild.example"]
  gateways: [istio-system/envoy-gw, istio-system/spar-gw]
  http:
  - route: {d1}
"#,
        d0 = dest(0),
        d1 = dest(1),
        d2 = dest(2),
        d3 = dest(3),
    ));
    y
}

/// (method, host, path, headers)
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

#[test]
fn route_outcomes_match_envoy() {
    let Some(envoy_bin) = envoy_or_skip("route_outcomes_match_envoy") else {
        return;
    };
    let ports: Vec<u16> = (0..4).map(|i| name_backend(&format!("s{i}"))).collect();
    let (envoy_gw, spar_gw) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cfg.yaml"),
        routing_config(&ports, envoy_gw, spar_gw),
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
    let _spar = spar_proxy(&cp.xds);
    for (port, what) in [(envoy_gw, "envoy"), (spar_gw, "spar proxy")] {
        let deadline = Instant::now() + WAIT;
        while request(port, "GET", "a.example", "/", &[]).0 != 200 {
            assert!(Instant::now() < deadline, "{what} never served a.example");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Hosts with `{port}` get each proxy's own listener port.
    let corpus: &[Case] = &[
        ("GET", "a.example", "/", &[]),
        ("GET", "A.Example", "/x", &[]),
        ("GET", "a.example:{port}", "/x", &[]),
        ("GET", "a.example:1234", "/x", &[]),
        ("GET", "a.example", "/x", &[("x-v", "2")]),
        ("GET", "a.example", "/x", &[("x-v", "3")]),
        ("GET", "a.example", "/exact", &[]),
        ("GET", "a.example", "/exact?q=1", &[]),
        ("GET", "a.example", "/exact/", &[]),
        ("GET", "a.example", "/re/123", &[]),
        ("GET", "a.example", "/re/123?z", &[]),
        ("GET", "a.example", "/re/12a", &[]),
        ("GET", "a.example", "/case/x", &[]),
        ("GET", "a.example", "/CASE", &[]),
        ("GET", "a.example", "/redirect?keep=1", &[]),
        ("GET", "a.example:{port}", "/redirect", &[]),
        ("GET", "a.example", "/x", &[("x-v", "2"), ("x-v", "3")]),
        ("GET", "a.example", "/x", &[("x-v", "3"), ("x-v", "2")]),
        ("GET", "a.example", "/x", &[("x-v", "2,3")]),
        ("GET", "a.example", "/x", &[("x-v", "3,2")]),
        ("HEAD", "a.example", "/direct", &[]),
        ("GET", "a.example:{port}", "/rprefix/a?b", &[]),
        ("GET", "a.example", "/direct", &[]),
        ("GET", "a.example", "/q?debug=1", &[]),
        ("GET", "a.example", "/q?debug=1&debug=2", &[]),
        ("GET", "a.example", "/q?debug=2", &[]),
        ("GET", "a.example", "/q?debug", &[]),
        ("POST", "a.example", "/post", &[]),
        ("GET", "a.example", "/only", &[]),
        ("GET", "a.example", "/only", &[("x-skip", "yes")]),
        ("GET", "a.example", "/only", &[("x-skip", "no")]),
        ("GET", "x.wild.example", "/", &[]),
        ("GET", "deep.x.wild.example", "/", &[]),
        ("GET", "wild.example", "/", &[]),
        ("GET", "other.example", "/", &[]),
    ];
    let mut report = Vec::new();
    for (method, host, path, headers) in corpus {
        let e = request(
            envoy_gw,
            method,
            &host.replace("{port}", &envoy_gw.to_string()),
            path,
            headers,
        );
        let s = request(
            spar_gw,
            method,
            &host.replace("{port}", &spar_gw.to_string()),
            path,
            headers,
        );
        let norm = |(c, b, l): (u16, String, String), port: u16| {
            (c, b, l.replace(&port.to_string(), "{port}"))
        };
        let (e, s) = (norm(e, envoy_gw), norm(s, spar_gw));
        if e != s {
            report.push(format!(
                "{method} {host}{path} {headers:?}:\n  envoy {e:?}\n  spar  {s:?}"
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{} of {} requests differ:\n{}\nenvoy log:\n{}",
        report.len(),
        corpus.len(),
        report.join("\n"),
        envoy
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

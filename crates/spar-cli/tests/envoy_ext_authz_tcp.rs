//! `AuthorizationPolicy` `action: CUSTOM` on TCP: a real Envoy gateway and a `spar proxy`
//! gateway, each configured by its own control plane from the same files, carry three TCP
//! gateway ports to an echo backend. The CUSTOM policy selects two of them (`ports`); with
//! an `envoyExtAuthzGrpc` provider each connection to those is judged by the authorizer
//! (network ext_authz): it allows one port and denies the other (the connection is
//! closed); the third port is never sent to it. An `envoyExtAuthzHttp` provider leaves TCP
//! alone (istiod emits no TCP filter for it). An authorizer that is down closes the
//! connection, unless `failOpen`.
//!
//! Without Envoy (or python3 with grpcio) the tests say why and pass, unless
//! `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::ext_authz::{authorizer, authorizer_denying, Authorizer};
use support::gateway::{echo_backend, echo_registry, local_service, GatewayMesh};
use support::*;

/// A TCP backend that echoes every byte back.
fn tcp_echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut conn, &mut out);
            });
        }
    });
    port
}

/// What a client saw on a TCP gateway port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Its bytes came back.
    Echoed,
    /// The connection was closed (or refused) without them.
    Closed,
    /// Nothing within 10 s.
    Hung,
}

fn tcp_call(port: u16) -> Seen {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Seen::Closed;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(b"ping\n").is_err() {
        return Seen::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while got.len() < 5 {
        match s.read(&mut buf) {
            Ok(0) => return Seen::Closed,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Seen::Hung,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Seen::Hung,
            Err(_) => return Seen::Closed,
        }
    }
    if got == b"ping\n" {
        Seen::Echoed
    } else {
        Seen::Closed
    }
}

/// Three TCP gateway ports: checked and allowed, not selected, checked and denied.
#[derive(Debug, Clone, Copy)]
struct Ports {
    allowed: u16,
    unselected: u16,
    denied: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            allowed: free_port(),
            unselected: free_port(),
            denied: free_port(),
        }
    }

    fn all(&self) -> [u16; 3] {
        [self.allowed, self.unselected, self.denied]
    }
}

const MESH: &str = r#"extensionProviders:
- name: grpc-authz
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9000
    timeout: 2s
- name: http-authz
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
- name: grpc-down
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9100
    timeout: 1s
- name: grpc-down-open
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9100
    timeout: 1s
    failOpen: true
"#;

/// The HTTP echo gateway (the test bed's readiness probe), the TCP echo Service behind a
/// Gateway with `ports`, the authorizer's Service (`9100`: nothing listens), and the CUSTOM
/// policy for `provider` selecting `ports.allowed` and `ports.denied`.
fn files(
    provider: &str,
    gw_port: u16,
    ports: Ports,
    a: &Authorizer,
) -> Vec<(&'static str, String)> {
    let tcp_echo = tcp_echo_backend();
    let down = free_port();
    let servers: String = ports
        .all()
        .iter()
        .map(|p| {
            format!("  - port: {{number: {p}, name: tcp-{p}, protocol: TCP}}\n    hosts: [\"*\"]\n")
        })
        .collect();
    let registry = format!(
        r#"{}---
{}{}apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/tcp-gw]
  tcp:
  - route: [{{destination: {{host: tcp-echo.default.svc.cluster.local, port: {{number: 9001}}}}}}]
"#,
        echo_registry(echo_backend(|_| false), gw_port),
        local_service(
            "ext-authz",
            &[
                ("http", 8000, a.http),
                ("grpc", 9000, a.grpc),
                ("grpc-down", 9100, down)
            ]
        ),
        local_service("tcp-echo", &[("tcp", 9001, tcp_echo)]),
    );
    let policy = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz-tcp, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules:
  - to: [{{operation: {{ports: ["{}", "{}"]}}}}]
"#,
        ports.allowed, ports.denied
    );
    vec![
        ("registry.yaml", registry),
        ("policies.yaml", policy),
        ("mesh.yaml", MESH.to_string()),
    ]
}

/// A gateway (Envoy, or spar proxy with `spar`) for `provider`, and what a client sees on
/// each of `ports` (allowed, unselected, denied).
fn run(test: &str, provider: &str, a: &Authorizer, ports: Ports, spar: bool) -> [Seen; 3] {
    let bin = envoy_binary().expect("envoy");
    let gw_port = free_port();
    let files = files(provider, gw_port, ports, a);
    let mesh = GatewayMesh::launch(&bin, test, gw_port, &files, &[], spar, "/");
    let seen = ports.all().map(tcp_call);
    if seen.contains(&Seen::Hung) {
        panic!(
            "{}: a connection hung: {seen:?}\nlog tail:\n{}",
            mesh.gateway.name(),
            mesh.gateway.tail()
        );
    }
    seen
}

/// The checks the authorizer got for `port`.
fn checks_for(a: &Authorizer, port: u16) -> usize {
    let want = format!("port={port} ");
    a.tcp_checks()
        .iter()
        .filter(|l| l.starts_with(&want))
        .count()
}

fn skip(test: &str) -> bool {
    envoy_or_skip(test).is_none()
}

#[test]
fn grpc_authorizer_judges_tcp_connections_alike_in_envoy_and_spar_proxy() {
    let test = "ext-authz-tcp-grpc";
    if skip(test) {
        return;
    }
    let (envoy_ports, spar_ports) = (Ports::pick(), Ports::pick());
    let Some(a) = authorizer_denying(test, true, &[envoy_ports.denied, spar_ports.denied]) else {
        return;
    };
    let want = [Seen::Echoed, Seen::Echoed, Seen::Closed];
    for (who, ports, spar) in [
        ("Envoy", envoy_ports, false),
        ("spar proxy", spar_ports, true),
    ] {
        let seen = run(&format!("{test}-{spar}"), "grpc-authz", &a, ports, spar);
        assert_eq!(seen, want, "{who}: (allowed, unselected, denied) ports");
        let log = a.tcp_checks();
        assert_eq!(
            checks_for(&a, ports.allowed),
            1,
            "{who}: one check per connection: {log:?}"
        );
        assert_eq!(checks_for(&a, ports.denied), 1, "{who}: {log:?}");
        assert_eq!(
            checks_for(&a, ports.unselected),
            0,
            "{who}: a port the policy does not select is not sent to the authorizer: {log:?}"
        );
    }
}

/// `provider` on an Envoy gateway and on a spar proxy gateway: each must give `want` on
/// (selected, unselected, selected) ports.
fn expect_both(test: &str, provider: &str, a: &Authorizer, want: [Seen; 3]) {
    for (who, spar) in [("Envoy", false), ("spar proxy", true)] {
        let seen = run(&format!("{test}-{spar}"), provider, a, Ports::pick(), spar);
        assert_eq!(seen, want, "{who}, provider {provider}");
    }
}

#[test]
fn an_http_authorizer_leaves_tcp_alone_in_envoy_and_spar_proxy() {
    let test = "ext-authz-tcp-http";
    if skip(test) {
        return;
    }
    let Some(a) = authorizer(test, true) else {
        return;
    };
    expect_both(test, "http-authz", &a, [Seen::Echoed; 3]);
}

#[test]
fn a_grpc_authorizer_that_is_down_closes_tcp_connections_unless_fail_open() {
    let test = "ext-authz-tcp-down";
    if skip(test) {
        return;
    }
    let Some(a) = authorizer(test, true) else {
        return;
    };
    let closed = [Seen::Closed, Seen::Echoed, Seen::Closed];
    expect_both(test, "grpc-down", &a, closed);
    expect_both(
        &format!("{test}-open"),
        "grpc-down-open",
        &a,
        [Seen::Echoed; 3],
    );
}

//! TLS termination on a gateway, as Istio configures it: a Gateway HTTPS server with
//! `credentialName` (the Kubernetes Secret's certificate arrives over SDS), SIMPLE and
//! MUTUAL, checked with curl as the client. A secret that has not arrived keeps the
//! listener from serving TLS (it warms); a rotated secret is served to new connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn config(
    backend: SocketAddr,
    port: u16,
    mode: &str,
    cert: &(String, String),
    client_ca: Option<&str>,
) -> String {
    let mut y = service("web", 8080, "http", &[("v1", backend)]);
    let ca_line = client_ca.map_or(String::new(), |c| format!("\n  ca.crt: {}", b64(c)));
    y.push_str(&format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: gw-cert, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}{ca_line}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ["web.example.com"]
    tls: {{mode: {mode}, credentialName: gw-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["web.example.com"]
  gateways: [istio-system/gw]
  http:
  - route: [{{destination: {{host: web, port: {{number: 8080}}}}}}]
"#,
        crt = b64(&cert.0),
        key = b64(&cert.1),
    ));
    y
}

/// curl over TLS to the gateway as web.example.com: (status, body).
fn curl(
    port: u16,
    dir: &std::path::Path,
    ca: &str,
    client: Option<&(String, String)>,
) -> (String, String) {
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("web.example.com:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(dir.join("ca.pem"));
    if let Some((crt, key)) = client {
        std::fs::write(dir.join("client.pem"), crt).unwrap();
        std::fs::write(dir.join("client.key"), key).unwrap();
        cmd.arg("--cert").arg(dir.join("client.pem"));
        cmd.arg("--key").arg(dir.join("client.key"));
    }
    let out = cmd
        .arg(format!("https://web.example.com:{port}/hello"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

fn curl_or_skip() -> bool {
    if Command::new("curl").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
        "curl is required (SPAR_REQUIRE_PEERS is set)"
    );
    eprintln!("skipped: curl is not installed");
    false
}

async fn gateway(yaml: &str) -> (Proxy, Arc<Store>) {
    let store = Arc::new(Store::new(
        Snapshot::from_xds(&gateway_resources(yaml)).unwrap(),
    ));
    let proxy = Proxy::start(store.clone(), ProxyOptions::default())
        .await
        .unwrap();
    (proxy, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_gateway_simple_and_mutual_with_sds_certificates() {
    if !curl_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("web").await;
    let server_ca = test_ca("server-ca");
    let cert = test_leaf(&server_ca, &["web.example.com"], None);

    // SIMPLE: the certificate comes over SDS from the Secret.
    let port = free_port();
    let (proxy, store) = gateway(&config(backend.addr, port, "SIMPLE", &cert, None)).await;
    assert!(store.load().is_ready(), "the secret arrived with the rest");
    let d = dir.path().to_path_buf();
    let pem = server_ca.pem.clone();
    let (code, body) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_eq!(code, "200", "{body}");
    assert!(body.starts_with("backend=web"), "{body}");
    // Routes see https: x-forwarded-proto.
    drop(proxy);

    // MUTUAL: a client certificate from the CA the Secret's ca.crt names is required.
    let client_ca = test_ca("client-ca");
    let client = test_leaf(&client_ca, &["client.example.com"], None);
    let port = free_port();
    let (_proxy, _) = gateway(&config(
        backend.addr,
        port,
        "MUTUAL",
        &cert,
        Some(&client_ca.pem),
    ))
    .await;
    let (d, pem) = (dir.path().to_path_buf(), server_ca.pem.clone());
    let (code, _) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_ne!(code, "200", "no client certificate: refused");
    let (d, pem, c) = (
        dir.path().to_path_buf(),
        server_ca.pem.clone(),
        client.clone(),
    );
    let (code, body) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, Some(&c)))
        .await
        .unwrap();
    assert_eq!(code, "200", "{body}");
    let stranger = test_leaf(&test_ca("other-ca"), &["client.example.com"], None);
    let (d, pem) = (dir.path().to_path_buf(), server_ca.pem.clone());
    let (code, _) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, Some(&stranger)))
        .await
        .unwrap();
    assert_ne!(code, "200", "a client certificate from another CA: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_warms_and_a_rotated_one_serves_new_connections() {
    if !curl_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start("web").await;
    let first_ca = test_ca("first");
    let port = free_port();
    let x = gateway_resources(&config(
        backend.addr,
        port,
        "SIMPLE",
        &test_leaf(&first_ca, &["web.example.com"], None),
        None,
    ));
    assert!(
        !x.secrets.is_empty(),
        "the translator sends the Secret over SDS"
    );
    // Everything but the secret: the listener is not ready and serves no TLS.
    let without = spar_translate::XdsResources {
        secrets: Vec::new(),
        ..x.clone()
    };
    let store = Arc::new(Store::new(Snapshot::from_xds(&without).unwrap()));
    assert!(!store.load().is_ready(), "waits for its SDS secret");
    let _proxy = Proxy::start(store.clone(), ProxyOptions::default())
        .await
        .unwrap();
    let (d, pem) = (dir.path().to_path_buf(), first_ca.pem.clone());
    let (code, _) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_ne!(code, "200");
    // The secret arrives.
    store.publish(Snapshot::from_xds(&x).unwrap());
    let (d, pem) = (dir.path().to_path_buf(), first_ca.pem.clone());
    let (code, body) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_eq!(code, "200", "{body}");
    // Rotation to a certificate from another CA: new connections get it.
    let second_ca = test_ca("second");
    let rotated = gateway_resources(&config(
        backend.addr,
        port,
        "SIMPLE",
        &test_leaf(&second_ca, &["web.example.com"], None),
        None,
    ));
    let next = store
        .load()
        .apply(
            spar_translate::type_url::SECRET,
            &rotated
                .secrets
                .iter()
                .map(|s| envoy_types::pb::google::protobuf::Any {
                    type_url: spar_translate::type_url::SECRET.to_string(),
                    value: prost::Message::encode_to_vec(s),
                })
                .collect::<Vec<_>>(),
            &[],
            true,
        )
        .unwrap();
    store.publish(next);
    let (d, pem) = (dir.path().to_path_buf(), second_ca.pem.clone());
    let (code, body) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_eq!(code, "200", "the rotated certificate: {body}");
    let (d, pem) = (dir.path().to_path_buf(), first_ca.pem.clone());
    let (code, _) = tokio::task::spawn_blocking(move || curl(port, &d, &pem, None))
        .await
        .unwrap();
    assert_ne!(code, "200", "the old certificate is no longer served");
}

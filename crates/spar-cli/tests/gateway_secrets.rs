//! Gateway certificates (`credentialName`) are keys, so the control plane sends them only
//! over its authenticated port, as istiod does: a `spar proxy` gateway on the plaintext
//! port never gets the certificate (its HTTPS listener stays warming and nothing answers
//! TLS), while the same gateway on `https://…:15012` with the token of an
//! `istio-system` identity serves HTTPS that curl accepts. The certificate is made with
//! openssl; without curl or openssl the test says why and passes, unless
//! `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn tool_missing() -> Option<&'static str> {
    ["curl", "openssl", "base64"].into_iter().find(|t| {
        let arg = if *t == "openssl" {
            "version"
        } else {
            "--version"
        };
        !Command::new(t)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn b64_file(path: &Path) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn config(backend: u16, port: u16, dir: &Path) -> String {
    let (crt, key) = (dir.join("gw.crt"), dir.join("gw.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=web.example.com"])
        .args(["-addext", "subjectAltName=DNS:web.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {backend}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: gw-cert, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ["web.example.com"]
    tls: {{mode: SIMPLE, credentialName: gw-cert}}
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
        crt = b64_file(&crt),
        key = b64_file(&key),
    )
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway(xds: &str, extra: &[&str], log: &Path) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_spar"))
        .args(["proxy", "--role", "gateway", "--workload", "gw-1"])
        .args([
            "--namespace",
            "istio-system",
            "--labels",
            "istio=ingressgateway",
        ])
        .args(["--service-account", "istio-ingressgateway-service-account"])
        .args(["--xds-addr", xds, "--admin-port", "0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn spar proxy");
    Gateway(child)
}

fn curl(port: u16, dir: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "3", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("web.example.com:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(dir.join("gw.crt"))
        .arg(format!("https://web.example.com:{port}/hello"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.trim().to_string())
}

#[test]
fn gateway_certificates_go_only_over_the_authenticated_port() {
    if let Some(t) = tool_missing() {
        assert!(
            std::env::var("SPAR_REQUIRE_PEERS").as_deref() != Ok("1"),
            "SPAR_REQUIRE_PEERS=1 but `{t}` is missing"
        );
        eprintln!("gateway_secrets: skipped: `{t}` is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backend, port) = (name_backend("web"), free_port());
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("mesh.yaml"),
        config(backend, port, dir.path()),
    )
    .unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "gw-tok istio-system/istio-ingressgateway-service-account\nother-tok default/web\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("gw.token"), "gw-tok\n").unwrap();
    std::fs::write(dir.path().join("other.token"), "other-tok\n").unwrap();
    let data = dir.path().join("data");
    let cp = ControlPlane::start(
        &config_dir,
        &[
            "--ca-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--ca-tokens",
            tokens.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + WAIT;
    let ca = loop {
        let line = cp
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the control plane printed its CA address");
        if let Some(a) = line.strip_prefix("ca listening on ") {
            break a.to_string();
        }
    };
    let root = data.join("ca/root-cert.pem");
    let secure = format!("https://{ca}");
    let log = dir.path().join("gw.log");
    let secure_flags = |token: &str| {
        [
            "--ca-root".to_string(),
            root.to_string_lossy().into_owned(),
            "--ca-token-file".to_string(),
            dir.path().join(token).to_string_lossy().into_owned(),
        ]
    };

    // Plaintext, and the secure port with another namespace's identity: the gateway gets
    // its listeners and routes but never the certificate, so nothing answers TLS.
    let other = secure_flags("other.token");
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    for (xds, extra) in [(cp.xds.as_str(), &[][..]), (secure.as_str(), &other[..])] {
        let _gw = gateway(xds, extra, &log);
        std::thread::sleep(Duration::from_secs(3));
        let (code, _) = curl(port, dir.path());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("xDS stream open"), "{text}");
        assert_eq!(code, "000", "HTTPS was served via {xds}:\n{text}");
    }

    // The secure port with the gateway's own identity: HTTPS works.
    let own = secure_flags("gw.token");
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let _gw = gateway(&secure, &own, &log);
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = curl(port, dir.path());
        if code == "200" {
            assert_eq!(body, "backend=web");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HTTPS never served ({code} {body}):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

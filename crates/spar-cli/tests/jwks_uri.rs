//! RequestAuthentication `jwksUri` fetched by `spar control-plane` and pushed inline to a
//! real Envoy gateway, against a real JWKS server (`python3 -m http.server` serving keys
//! made by PyPI pyjwt/cryptography, tokens signed by pyjwt):
//!
//! - served keys: a token of the served key gets 200, one signed by another key 401, and
//!   the keys reach Envoy as `local_jwks` (never a `remote_jwks` for Envoy to fetch);
//! - rotation: when the server starts serving a new key, the refresh (`--jwks-refresh`)
//!   pushes it: tokens of the new key pass, those of the old one fail;
//! - the server down from the start: that issuer's valid tokens get 401 (fail closed), an
//!   inline-keys issuer and token-less requests still work, the control plane logs and
//!   counts the failures; once the server comes up, the retry (`--jwks-retry`) fetches the
//!   keys and the same token gets 200.
//!
//! Without Envoy or pyjwt the tests say why and pass, unless `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::gateway::{self, echo_backend, echo_registry, GatewayMesh};
use support::*;

const REMOTE: &str = "https://remote.test";
const INLINE: &str = "https://inline.test";
const FAST: &[&str] = &["--jwks-refresh", "1s", "--jwks-retry", "100ms"];

/// `GET path` to the gateway with an optional bearer token; the status (0: no answer).
fn get(port: u16, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    gateway::send(port, "GET", path, gateway::HOST, &headers).code
}

/// Keys and tokens from PyPI pyjwt.
struct Material {
    /// `{"keys": [k1]}` and, after rotation, `{"keys": [k2]}`.
    jwks1: String,
    jwks2: String,
    /// Keys of the inline issuer.
    jwks_inline: String,
    /// `REMOTE` tokens signed by k1, by k2, and by a key never published (with k1's kid).
    k1: String,
    k2: String,
    forged: String,
    /// An `INLINE` token.
    inline: String,
}

fn material() -> Option<Material> {
    const SCRIPT: &str = r#"
import json, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
def key(): return rsa.generate_private_key(public_exponent=65537, key_size=2048)
k1, k2, forged, inline = key(), key(), key(), key()
def jwks(k, kid):
    pub = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
    pub.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": [pub]})
now = int(time.time())
def tok(k, kid, iss):
    claims = {"iss": iss, "sub": "alice", "iat": now, "exp": now + 3600}
    return jwt.encode(claims, k, algorithm="RS256", headers={"kid": kid})
print(json.dumps({
  "jwks1": jwks(k1, "k1"), "jwks2": jwks(k2, "k2"), "jwks_inline": jwks(inline, "i1"),
  "k1": tok(k1, "k1", "https://remote.test"),
  "k2": tok(k2, "k2", "https://remote.test"),
  "forged": tok(forged, "k1", "https://remote.test"),
  "inline": tok(inline, "i1", "https://inline.test"),
}))
"#;
    let v = pyjwt_json("jwksUri test", SCRIPT)?;
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    Some(Material {
        jwks1: s("jwks1"),
        jwks2: s("jwks2"),
        jwks_inline: s("jwks_inline"),
        k1: s("k1"),
        k2: s("k2"),
        forged: s("forged"),
        inline: s("inline"),
    })
}

/// Both peers, or `None` (after saying why) when the test is to be skipped.
fn peers(test: &str) -> Option<(std::path::PathBuf, Material)> {
    let bin = envoy_or_skip(test)?;
    Some((bin, material()?))
}

/// `python3 -m http.server` serving `dir` on `port`, killed on drop.
struct JwksServer(Child);

impl JwksServer {
    fn start(dir: &Path, port: u16) -> JwksServer {
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the JWKS server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        JwksServer(child)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replaces the served key set in one step (the server never reads half a file).
fn serve_keys(dir: &Path, jwks: &str) {
    let tmp = dir.join(".jwks.json.tmp");
    std::fs::write(&tmp, jwks).unwrap();
    std::fs::rename(&tmp, dir.join("jwks.json")).unwrap();
}

/// A backend, `spar control-plane` (with `flags`) over the registry and `policies`, and an
/// Envoy gateway that answers a token-less request with 200.
type Mesh = GatewayMesh;

impl GatewayMesh {
    fn start(test: &str, envoy_bin: &Path, policies: &str, flags: &[&str]) -> Mesh {
        let port = free_port();
        let files = [
            (
                "registry.yaml",
                echo_registry(echo_backend(|_| false), port),
            ),
            ("policies.yaml", policies.to_string()),
        ];
        GatewayMesh::launch(envoy_bin, test, port, &files, flags, false, "/ready")
    }

    /// Polls `cond` (every 20 ms) until it holds; panics with the logs after 15 s.
    fn until(&self, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cond() {
            if Instant::now() > deadline {
                let log: Vec<String> = self.cp.log.try_iter().collect();
                panic!(
                    "timed out waiting until {what}\ncontrol plane log:\n{}\nEnvoy log tail:\n{}",
                    log.join("\n"),
                    self.gateway
                        .log()
                        .lines()
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn code(&self, token: Option<&str>) -> u16 {
        get(self.port, "/", token)
    }

    /// A metric's value from the control plane's `/metrics` (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.cp.get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn policies(uri: &str, inline_jwks: Option<&str>) -> String {
    let mut rules = format!("  - issuer: {REMOTE}\n    jwksUri: {uri}\n");
    if let Some(jwks) = inline_jwks {
        rules.push_str(&format!("  - issuer: {INLINE}\n    jwks: '{jwks}'\n"));
    }
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
{rules}"#
    )
}

#[test]
fn served_keys_are_pushed_inline_and_rotated_keys_follow() {
    let Some((envoy_bin, m)) = peers("jwks_served") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    serve_keys(keys.path(), &m.jwks1);
    let server_port = free_port();
    let _server = JwksServer::start(keys.path(), server_port);
    let uri = format!("http://127.0.0.1:{server_port}/jwks.json");
    let mesh = Mesh::start("jwks-served", &envoy_bin, &policies(&uri, None), FAST);

    // 1. The served key's token passes; another key's is refused, as is a token of a key
    //    the server does not serve yet.
    mesh.until("a token of the served key gets 200", || {
        mesh.code(Some(&m.k1)) == 200
    });
    assert_eq!(mesh.code(Some(&m.forged)), 401);
    assert_eq!(mesh.code(Some(&m.k2)), 401);
    assert_eq!(mesh.code(None), 200);
    // Pushed as keys, not as a URI for Envoy to fetch.
    let dump = mesh.gateway.envoy().config_dump().to_string();
    assert!(
        dump.contains("local_jwks"),
        "no local_jwks in Envoy's config"
    );
    assert!(
        !dump.contains("remote_jwks"),
        "Envoy was given a remote_jwks"
    );
    assert!(mesh.metric("pilot_jwks_resolver_network_fetch_success_total") >= 1.0);
    assert_eq!(mesh.metric("spar_jwks_unresolved"), 0.0);

    // 4. Rotation: the server serves only the new key; the next refresh pushes it.
    serve_keys(keys.path(), &m.jwks2);
    mesh.until("a token of the rotated key gets 200", || {
        mesh.code(Some(&m.k2)) == 200
    });
    assert_eq!(
        mesh.code(Some(&m.k1)),
        401,
        "the retired key still verifies"
    );
    assert_eq!(mesh.code(Some(&m.forged)), 401);
}

#[test]
fn an_unreachable_uri_fails_closed_until_the_server_comes_up() {
    let Some((envoy_bin, m)) = peers("jwks_down") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    serve_keys(keys.path(), &m.jwks1);
    // Nothing listens here yet.
    let server_port = free_port();
    let uri = format!("http://127.0.0.1:{server_port}/jwks.json");
    let mesh = Mesh::start(
        "jwks-down",
        &envoy_bin,
        &policies(&uri, Some(&m.jwks_inline)),
        FAST,
    );

    // 2. Fail closed: the issuer's valid token is refused while its keys are unknown;
    //    the inline issuer and requests without a token are unaffected.
    mesh.until("several fetches have failed", || {
        mesh.metric("pilot_jwks_resolver_network_fetch_fail_total") >= 3.0
    });
    assert_eq!(mesh.code(Some(&m.k1)), 401);
    assert_eq!(mesh.code(Some(&m.forged)), 401);
    assert_eq!(mesh.code(Some(&m.inline)), 200);
    assert_eq!(mesh.code(None), 200);
    assert_eq!(mesh.metric("spar_jwks_unresolved"), 1.0);
    let log: Vec<String> = mesh.cp.log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("jwksUri fetch failed")
            && l.contains(&uri)
            && l.contains("cannot connect")),
        "no fetch failure logged with the URI and the reason:\n{}",
        log.join("\n")
    );

    // 3. The server comes up: the next retry fetches the keys and they are pushed.
    let started = Instant::now();
    let _server = JwksServer::start(keys.path(), server_port);
    mesh.until("the token gets 200 once the JWKS server is up", || {
        mesh.code(Some(&m.k1)) == 200
    });
    eprintln!(
        "keys in force {:?} after the JWKS server came up",
        started.elapsed()
    );
    assert_eq!(mesh.code(Some(&m.forged)), 401);
    assert_eq!(mesh.code(Some(&m.inline)), 200);
    assert_eq!(mesh.metric("spar_jwks_unresolved"), 0.0);
}

//! `spar ctl explain --to`: which AuthorizationPolicy rules apply at a destination and
//! which one allows or denies a request, offline from a config directory and online from
//! what a connected sidecar was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use spar_translate::type_url::{CLUSTER, LISTENER};
use support::*;

const HTTPBIN: &str = "sidecar~10.0.0.5~httpbin-1.foo~foo.svc.cluster.local";

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-1, namespace: foo, labels: {app: httpbin}}
spec: {serviceAccountName: httpbin, containers: [{name: httpbin}]}
status: {podIP: 10.0.0.5}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/jwks
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: foo}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/get*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - to: [{operation: {methods: [GET], paths: ["/get*", "/headers"]}}]
  - from: [{source: {namespaces: [bar]}}]
    to: [{operation: {paths: ["/ns"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
    to: [{operation: {paths: ["/jwt"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-deny
  namespace: foo
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/get"]}}]}]
"#;

fn explain(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec![
        "ctl",
        "explain",
        "--config-dir",
        dir.to_str().unwrap(),
        "--to",
        HTTPBIN,
    ];
    all.extend_from_slice(args);
    let out = spar(&all);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

fn mesh() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    dir
}

fn has(text: &str, want: &str) {
    assert!(text.contains(want), "{want:?} in\n{text}");
}

#[test]
fn allowed_by_the_first_rule_with_audit_and_dry_run_reported_not_enforced() {
    let dir = mesh();
    let (code, text) = explain(dir.path(), &["http://httpbin:8000/get"]);
    assert_eq!(code, 0, "{text}");
    has(
        &text,
        "chain:       virtualInbound 0.0.0.0_8000 (plaintext)",
    );
    has(&text, "foo/audit-all rule 0           matches: logged");
    has(&text, "foo/allow-get rule 0           MATCHES: allows");
    // The dry-run DENY matches: said, not enforced.
    has(&text, "foo/dry-deny rule 0 [dry-run]  matches");
    has(
        &text,
        "dry-run: would DENY (foo/dry-deny rule 0), not enforced",
    );
    has(&text, "decision:    ALLOWED: ALLOW foo/allow-get rule 0");
    // AUDIT, then DENY, then ALLOW: the proxy's filter order.
    let (a, d, l) = (
        text.find("AUDIT\n").unwrap(),
        text.find("DENY\n").unwrap(),
        text.find("ALLOW\n").unwrap(),
    );
    assert!(a < d && d < l, "{text}");
}

#[test]
fn denied_by_a_deny_rule_that_is_named() {
    let dir = mesh();
    let (code, text) = explain(dir.path(), &["http://httpbin:8000/admin/users"]);
    assert_eq!(code, 1, "{text}");
    has(&text, "foo/deny-admin rule 0          MATCHES: denies");
    has(
        &text,
        "decision:    DENIED (403 RBAC: access denied): DENY foo/deny-admin rule 0",
    );
    // The ALLOW filter after it is not reached.
    assert!(!text.contains("foo/allow-get"), "{text}");
}

#[test]
fn denied_by_default_when_no_allow_rule_matches_with_the_reason_per_rule() {
    let dir = mesh();
    let (code, text) = explain(dir.path(), &["-X", "POST", "http://httpbin:8000/get"]);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "foo/allow-get rule 0           no match: method \"POST\", wants method \"GET\"",
    );
    has(&text, "no match: path \"/get\", wants path \"/jwt\"");
    has(
        &text,
        "decision:    DENIED (403 RBAC: access denied): no ALLOW rule matches",
    );
    // A path that matches nothing: the alternatives are listed.
    let (code, text) = explain(dir.path(), &["http://httpbin:8000/other?q=1"]);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "no match: path \"/other\", wants path \"/get*\" or path \"/headers\"",
    );
    // No token note when the token is not what stands in the way.
    assert!(!text.contains("note:        the request has no"), "{text}");
}

#[test]
fn request_principals_with_and_without_a_token() {
    let dir = mesh();
    let (code, text) = explain(dir.path(), &["http://httpbin:8000/jwt"]);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "token:       none (RequestAuthentication lets a request without a token through",
    );
    has(
        &text,
        "foo/allow-jwt rule 0           no match: no JWT on the request, wants claim iss \"https://issuer.example\"",
    );
    has(
        &text,
        "note:        the request has no (verified) token, and a rule needs one",
    );

    let (code, text) = explain(
        dir.path(),
        &[
            "http://httpbin:8000/jwt",
            "--request-principal",
            "https://issuer.example/alice",
        ],
    );
    assert_eq!(code, 0, "{text}");
    has(
        &text,
        "token:       assumed valid (signature and expiry not checked)",
    );
    has(&text, "decision:    ALLOWED: ALLOW foo/allow-jwt rule 0");

    let (code, text) = explain(
        dir.path(),
        &[
            "http://httpbin:8000/jwt",
            "--claims",
            r#"{"iss":"https://issuer.example","sub":"bob","groups":["admin"]}"#,
        ],
    );
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "no match: claim sub \"bob\", wants claim sub \"alice\"",
    );

    // An issuer the RequestAuthentication does not know: jwt_authn's 401, before RBAC.
    let (code, text) = explain(
        dir.path(),
        &[
            "http://httpbin:8000/jwt",
            "--claims",
            r#"{"iss":"https://other","sub":"alice"}"#,
        ],
    );
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "decision:    DENIED (401 Jwt issuer is not configured",
    );
}

#[test]
fn namespaces_rule_needs_mtls_plaintext_has_no_identity() {
    let dir = mesh();
    let (code, text) = explain(dir.path(), &["--plaintext", "http://httpbin:8000/ns"]);
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "foo/allow-get rule 1           no match: no peer identity (plaintext, no client certificate), wants namespace bar",
    );
    let (code, text) = explain(
        dir.path(),
        &[
            "--source-principal",
            "spiffe://cluster.local/ns/bar/sa/sleep",
            "http://httpbin:8000/ns",
        ],
    );
    assert_eq!(code, 0, "{text}");
    has(&text, "chain:       virtualInbound 0.0.0.0_8000 (TLS)");
    has(&text, "decision:    ALLOWED: ALLOW foo/allow-get rule 1");
    let (code, text) = explain(
        dir.path(),
        &[
            "--source-principal",
            "spiffe://cluster.local/ns/baz/sa/sleep",
            "http://httpbin:8000/ns",
        ],
    );
    assert_eq!(code, 1, "{text}");
    has(
        &text,
        "no match: peer \"spiffe://cluster.local/ns/baz/sa/sleep\", wants namespace bar",
    );
}

#[test]
fn strict_mtls_closes_plaintext_and_from_to_are_exclusive() {
    let dir = mesh();
    let strict = MESH.replace("mode: PERMISSIVE", "mode: STRICT");
    std::fs::write(dir.path().join("mesh.yaml"), strict).unwrap();
    let (code, text) = explain(dir.path(), &["http://httpbin:8000/get"]);
    assert_eq!(code, 1, "{text}");
    has(&text, "PeerAuthentication STRICT");
    has(&text, "decision:    DENIED (connection closed)");
    // A port the workload does not serve passes through, unchecked; said so.
    let (code, text) = explain(dir.path(), &["http://httpbin:9999/"]);
    assert_eq!(code, 0, "{text}");
    has(
        &text,
        "port 9999 is none of this workload's service ports ([8000])",
    );

    let out = spar(&[
        "ctl",
        "explain",
        "--from",
        HTTPBIN,
        "--to",
        HTTPBIN,
        "http://httpbin:8000/",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = spar(&[
        "ctl",
        "explain",
        "--from",
        HTTPBIN,
        "--plaintext",
        "http://httpbin:8000/",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_explains_what_the_destination_sidecar_was_sent() {
    let dir = mesh();
    let cp = ControlPlane::start(dir.path(), &[]);
    let mut ads = AdsStream::connect(&cp.xds, HTTPBIN).await;
    ads.set_labels(&[("app", "httpbin")]);
    ads.subscribe(CLUSTER, &[]).await;
    ads.subscribe(LISTENER, &[]).await;
    cp.get_until("/debug/syncz", "the proxy to show", |b| b.contains(HTTPBIN));
    let run = |args: &[&str]| {
        let mut all = vec![
            "ctl",
            "explain",
            "--to",
            "httpbin-1.foo",
            "--cp",
            &cp.monitoring,
        ];
        all.extend_from_slice(args);
        let out = cp.spar(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = run(&["http://httpbin:8000/admin"]);
    assert_eq!(code, Some(1), "{text}");
    has(&text, &format!("destination: {HTTPBIN}"));
    has(&text, "DENY foo/deny-admin rule 0");
    let (code, text) = run(&["http://httpbin:8000/headers"]);
    assert_eq!(code, Some(0), "{text}");
    has(&text, "decision:    ALLOWED: ALLOW foo/allow-get rule 0");
}

//! `AuthorizationPolicy` `action: CUSTOM` (ext_authz) enforced the same way by a real Envoy
//! gateway and a `spar proxy` gateway, each served the same config by its own control
//! plane: MeshConfig `extensionProviders` (`envoyExtAuthzHttp`, `envoyExtAuthzGrpc`), the
//! authorizer a Service + EndpointSlice on 127.0.0.1, a CUSTOM policy selecting the gateway
//! for some paths.
//!
//! The authorizer is a Python server written for the test (HTTP, and gRPC with grpcio and
//! hand-encoded protobuf) behaving as Istio's sample ext-authz: allow when the request has
//! `x-ext-authz: allow` (adding `x-ext-authz-check-result: allowed` upstream), else 403 with
//! its body and `x-ext-authz-check-result: denied`; for the test also a custom denial (418,
//! another body, a header the provider does not pass to the client) and a 500 (a failure).
//! The same corpus runs against both gateways: identical status codes, and the same
//! forwarded / denied headers where checked. Authorizer down: 403, or allowed with failOpen.
//!
//! Without Envoy (or python3 / grpcio for the gRPC half) the tests say why and pass,
//! unless `SPAR_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::ext_authz::{authorizer, require_peers};
use support::gateway::{self, echo_backend, echo_registry, local_service, GatewayMesh};
use support::*;

/// What the backend echoes: what the authorizer may have added upstream.
fn echoed(name: &str) -> bool {
    name.starts_with("x-ext-authz") || name == "x-envoy-auth-failure-mode-allowed"
}

/// A response of the gateway.
type Got = gateway::Response;

/// One case's request: a GET, or a POST of the body a `(BODY, body)` entry of `headers`
/// names (that entry is not sent as a header).
fn send(port: u16, path: &str, headers: &[(&str, &str)]) -> Got {
    let body = headers.iter().find(|(k, _)| *k == BODY).map(|(_, b)| *b);
    let real: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| *k != BODY)
        .copied()
        .collect();
    let method = if body.is_some() { "POST" } else { "GET" };
    gateway::send_body(port, method, path, gateway::HOST, &real, body.unwrap_or(""))
}

/// The pseudo-header of a case that carries a body.
const BODY: &str = "@body";

/// The echo registry and gateway, and the authorizer's Service at (`authz_http`,
/// `authz_grpc`).
fn registry_yaml(backend: u16, gw_port: u16, authz_http: u16, authz_grpc: u16) -> String {
    format!(
        "{}---\n{}",
        echo_registry(backend, gw_port),
        local_service(
            "ext-authz",
            &[("http", 8000, authz_http), ("grpc", 9000, authz_grpc)]
        )
    )
}

/// The CUSTOM policy: the gateway's `/authz/*` paths go to `provider`.
fn policy(provider: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules:
  - to: [{{operation: {{paths: ["/authz/*"]}}}}]
"#
    )
}

const MESH: &str = r#"extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnDeny: [x-ext-authz-check-result, x-ext-authz-saw-path]
- name: grpc-authz
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9000
    timeout: 2s
- name: http-closed
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
    timeout: 1s
- name: http-body
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToDownstreamOnDeny: [x-ext-authz-saw-body, x-ext-authz-saw-partial, x-ext-authz-saw-headers]
    includeRequestBodyInCheck: {maxRequestBytes: 16}
- name: http-body-partial
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
    headersToDownstreamOnDeny: [x-ext-authz-saw-body, x-ext-authz-saw-partial, x-ext-authz-saw-headers]
    includeRequestBodyInCheck: {maxRequestBytes: 16, allowPartialMessage: true}
- name: grpc-body-partial
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9000
    timeout: 2s
    includeRequestBodyInCheck: {maxRequestBytes: 16, allowPartialMessage: true}
- name: grpc-bytes
  envoyExtAuthzGrpc:
    service: ext-authz.default.svc.cluster.local
    port: 9000
    timeout: 2s
    includeRequestBodyInCheck: {maxRequestBytes: 16, packAsBytes: true}
- name: http-open
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: 8000
    failOpen: true
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
"#;

type Mesh = GatewayMesh;

impl GatewayMesh {
    /// A control plane over `provider`'s CUSTOM policy with the authorizer at
    /// (`authz_http`, `authz_grpc`), and a gateway (Envoy, or `spar proxy` with `spar`)
    /// that answers `/public` with 200.
    fn start(
        test: &str,
        provider: &str,
        authz_http: u16,
        authz_grpc: u16,
        spar_gateway: bool,
    ) -> Mesh {
        let bin = envoy_binary().expect("envoy");
        let port = free_port();
        let files = [
            (
                "registry.yaml",
                registry_yaml(echo_backend(echoed), port, authz_http, authz_grpc),
            ),
            ("policies.yaml", policy(provider)),
            ("mesh.yaml", MESH.to_string()),
        ];
        GatewayMesh::launch(&bin, test, port, &files, &[], spar_gateway, "/public")
    }

    /// Sends every case, checks the status, returns the responses.
    fn expect(&self, cases: &[Case<'_>]) -> Vec<Got> {
        let mut bad = Vec::new();
        let mut got = Vec::new();
        for (path, headers, want) in cases {
            let g = send(self.port, path, headers);
            if g.code != *want {
                bad.push(format!(
                    "{path} ({headers:?}): got {}, want {want}; {g:?}",
                    g.code
                ));
            }
            got.push(g);
        }
        assert!(
            bad.is_empty(),
            "{}:\n{}\nlog tail:\n{}",
            self.gateway.name(),
            bad.join("\n"),
            self.gateway.tail()
        );
        got
    }
}

/// `(path, headers, expected status)`.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);

const ALLOW: &[(&str, &str)] = &[("x-ext-authz", "allow")];
const NONE: &[(&str, &str)] = &[];

/// The differential: the corpus against an Envoy gateway and a spar proxy gateway; both
/// must give every case its expected status. Returns (Envoy's, spar proxy's) responses.
fn both(
    test: &str,
    provider: &str,
    authz_http: u16,
    authz_grpc: u16,
    cases: &[Case<'_>],
) -> Option<(Vec<Got>, Vec<Got>)> {
    envoy_or_skip(test)?;
    let envoy = Mesh::start(test, provider, authz_http, authz_grpc, false).expect(cases);
    let spar = Mesh::start(
        &format!("{test}-spar"),
        provider,
        authz_http,
        authz_grpc,
        true,
    )
    .expect(cases);
    let codes = |g: &[Got]| g.iter().map(|g| g.code).collect::<Vec<_>>();
    assert_eq!(
        codes(&envoy),
        codes(&spar),
        "Envoy and spar proxy decided differently"
    );
    Some((envoy, spar))
}

/// Checks a header (or its absence) on case `i` in both gateways' answers.
fn same_header(got: &(Vec<Got>, Vec<Got>), i: usize, name: &str, want: Option<&str>) {
    for (who, g) in [("Envoy", &got.0[i]), ("spar proxy", &got.1[i])] {
        assert_eq!(
            g.header(name),
            want,
            "{who}, case {i}, header {name}: {g:?}"
        );
    }
}

fn same_body(got: &(Vec<Got>, Vec<Got>), i: usize, pred: impl Fn(&str) -> bool, what: &str) {
    for (who, g) in [("Envoy", &got.0[i]), ("spar proxy", &got.1[i])] {
        assert!(pred(&g.body), "{who}, case {i}: body should {what}: {g:?}");
    }
}

const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

#[test]
fn http_authorizer_decides_custom_paths_alike_in_envoy_and_spar_proxy() {
    let test = "ext-authz-http";
    let Some(a) = authorizer(test, false) else {
        return;
    };
    let cases: &[Case<'_>] = &[
        ("/public", NONE, 200),
        ("/authz/x?q=1", ALLOW, 200),
        ("/authz/x", NONE, 403),
        ("/authz/x", &[("x-ext-authz", "deny")], 403),
        ("/authz/teapot", ALLOW, 418),
        ("/authz/boom", ALLOW, 403),
        ("/public/teapot", NONE, 200),
    ];
    let Some(got) = both(test, "http-authz", a.http, 1, cases) else {
        return;
    };
    // Allowed: the authorizer's header went upstream and (headersToDownstreamOnAllow) to
    // the client; the authorizer saw path_prefix + path with the query.
    same_body(
        &got,
        1,
        |b| b.contains("path=/authz/x?q=1") && b.contains("x-ext-authz-check-result=allowed"),
        "show the upstream got the allow header",
    );
    same_header(&got, 1, "x-ext-authz-check-result", Some("allowed"));
    // Denied: the authorizer's body and the headers the provider lets through.
    same_body(&got, 2, |b| b == DENY_BODY, "be the authorizer's");
    same_header(&got, 2, "x-ext-authz-check-result", Some("denied"));
    same_header(&got, 2, "x-ext-authz-saw-path", Some("/check/authz/x"));
    same_body(&got, 4, |b| b == "short and stout", "be the custom denial");
    same_header(&got, 4, "x-not-for-client", None);
    same_header(&got, 4, "x-ext-authz-check-result", Some("denied"));
    // A 5xx from the authorizer is a failure: status_on_error, no body of its own.
    same_body(&got, 5, |b| !b.contains("broke"), "not be the authorizer's");
    // Not a CUSTOM path: the authorizer is not asked.
    same_header(&got, 6, "x-ext-authz-check-result", None);
}

#[test]
fn grpc_authorizer_decides_custom_paths_alike_in_envoy_and_spar_proxy() {
    let test = "ext-authz-grpc";
    if envoy_binary().is_none() && !require_peers() {
        eprintln!("{test}: skipped: no Envoy");
        return;
    }
    let Some(a) = authorizer(test, true) else {
        return;
    };
    let cases: &[Case<'_>] = &[
        ("/public", NONE, 200),
        ("/authz/x", ALLOW, 200),
        ("/authz/x", NONE, 403),
        ("/authz/teapot", ALLOW, 418),
        ("/authz/boom", ALLOW, 403),
    ];
    let Some(got) = both(test, "grpc-authz", a.http, a.grpc, cases) else {
        return;
    };
    same_body(
        &got,
        1,
        |b| {
            b.contains("x-ext-authz-check-result=allowed")
                && b.contains("x-ext-authz-saw-path=/authz/x")
        },
        "show the ok_response headers upstream",
    );
    same_body(&got, 2, |b| b == DENY_BODY, "be the authorizer's");
    same_header(&got, 2, "x-ext-authz-check-result", Some("denied"));
    same_body(&got, 3, |b| b == "short and stout", "be the custom denial");
    // gRPC denials carry every header the authorizer set.
    same_header(&got, 3, "x-not-for-client", Some("secret"));
}

#[test]
fn authorizer_down_denies_unless_fail_open() {
    let test = "ext-authz-down";
    if envoy_binary().is_none() && !require_peers() {
        eprintln!("{test}: skipped: no Envoy");
        return;
    }
    // Nothing listens on the authorizer's endpoint.
    let down = free_port();
    let closed: &[Case<'_>] = &[
        ("/public", NONE, 200),
        ("/authz/x", ALLOW, 403),
        ("/authz/x", NONE, 403),
    ];
    let Some(got) = both(test, "http-closed", down, 1, closed) else {
        return;
    };
    same_header(&got, 1, "x-ext-authz-check-result", None);
    let open: &[Case<'_>] = &[
        ("/public", NONE, 200),
        ("/authz/x", ALLOW, 200),
        ("/authz/x", NONE, 200),
    ];
    let Some(got) = both(&format!("{test}-open"), "http-open", down, 1, open) else {
        return;
    };
    for i in 1..3 {
        let (e, s) = (&got.0[i].body, &got.1[i].body);
        assert_eq!(e, s, "case {i}: the upstream saw different headers");
    }
}

/// `includeRequestBodyInCheck`: up to 16 bytes of the body go to the authorizer (which
/// answers `/body` paths with what it got), a longer body is refused with 413 unless
/// partial messages are allowed, and an allowed request reaches the upstream with its
/// whole body. Envoy and spar proxy must agree on every status, on what the authorizer
/// saw and on what the upstream got.
#[test]
fn the_request_body_goes_to_the_authorizer_alike_in_envoy_and_spar_proxy() {
    let test = "ext-authz-body";
    if envoy_binary().is_none() && !require_peers() {
        eprintln!("{test}: skipped: no Envoy");
        return;
    }
    let Some(a) = authorizer(test, true) else {
        return;
    };
    const SHORT: &str = "hello";
    const LONG: &str = "0123456789abcdefghij";
    let allow_long: &[(&str, &str)] = &[("x-ext-authz", "allow"), (BODY, LONG)];
    // (provider, a long body's status on /body, an allowed request's status): without
    // includeRequestHeadersInCheck an HTTP authorizer never sees `x-ext-authz: allow`.
    let providers: [(&str, u16, u16); 4] = [
        ("http-body", 413, 200),
        ("http-body-partial", 403, 403),
        ("grpc-body-partial", 403, 200),
        ("grpc-bytes", 413, 200),
    ];
    for (provider, long_status, allowed) in providers {
        let long_allowed = if long_status == 413 { 413 } else { allowed };
        let cases: &[Case<'_>] = &[
            ("/authz/body", &[(BODY, SHORT)], 403),
            ("/authz/body", &[(BODY, LONG)], long_status),
            (
                "/authz/body",
                &[("x-ext-authz", "allow"), ("x-other", "1")],
                403,
            ),
            (
                "/authz/x",
                &[("x-ext-authz", "allow"), (BODY, SHORT)],
                allowed,
            ),
            ("/authz/x", allow_long, long_allowed),
            ("/public", &[(BODY, LONG)], 200),
        ];
        let Some(got) = both(
            &format!("{test}-{provider}"),
            provider,
            a.http,
            a.grpc,
            cases,
        ) else {
            return;
        };
        for i in 0..cases.len() {
            for name in [
                "x-ext-authz-saw-body",
                "x-ext-authz-saw-partial",
                "x-ext-authz-saw-headers",
            ] {
                assert_eq!(
                    got.0[i].header(name),
                    got.1[i].header(name),
                    "{provider}, case {i}, {name}: Envoy {:?}, spar proxy {:?}",
                    got.0[i],
                    got.1[i]
                );
            }
            if got.0[i].code == 413 {
                assert_eq!(
                    got.0[i].body, got.1[i].body,
                    "{provider}, case {i}: the 413"
                );
            }
            if got.0[i].code == 200 {
                assert_eq!(
                    got.0[i].body, got.1[i].body,
                    "{provider}, case {i}: upstream"
                );
            }
        }
        eprintln!(
            "{provider}: {:?}",
            got.0
                .iter()
                .map(|g| (
                    g.code,
                    g.header("x-ext-authz-saw-body"),
                    g.header("x-ext-authz-saw-partial"),
                    g.header("x-ext-authz-saw-headers")
                ))
                .collect::<Vec<_>>()
        );
        if allowed == 200 {
            same_body(
                &got,
                3,
                |b| b.contains(&format!("body={SHORT}")),
                "show the upstream got the body",
            );
        }
        if long_allowed == 200 {
            same_body(
                &got,
                4,
                |b| b.contains(&format!("body={LONG}")),
                "show the upstream got all of it",
            );
        }
        same_body(
            &got,
            5,
            |b| b.contains(&format!("body={LONG}")),
            "show an unchecked body passes whole",
        );
    }
}

//! Istio CUSTOM policies → the real translator → the filters spar proxy builds → which
//! requests the authorizer is asked about; and how answers become decisions.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::HeaderValue as PbHeader;
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::{DeniedHttpResponse, OkHttpResponse};
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::config::listener::HttpManager;
use crate::http::rbac::{check_with_shadow, Decision};
use crate::testutil::{head, httpbin_inbound, rbac_input, HTTPBIN};

const POLICIES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: foo}
spec:
  selector: {app: authz}
  ports: [{name: http, port: 8000}, {name: grpc, port: 9000}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: CUSTOM
  provider: {name: PROVIDER}
  rules:
  - to: [{operation: {paths: ["/admin/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/secret"]}}]
"#;

const MESH_CONFIG: &str = r#"extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: authz.foo.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnAllow: [x-on-allow]
    headersToDownstreamOnDeny: [x-ext-authz-check-result]
- name: grpc
  envoyExtAuthzGrpc: {service: authz.foo.svc.cluster.local, port: 9000, failOpen: true}
"#;

/// httpbin's inbound HTTP connection manager on port 8000 with `provider`'s CUSTOM policy.
fn hcm(provider: &str) -> Arc<HttpManager> {
    let yaml = format!("{HTTPBIN}---\n{}", POLICIES.replace("PROVIDER", provider));
    httpbin_inbound(&[("test.yaml", &yaml), ("mesh.yaml", MESH_CONFIG)])
}

/// Runs the manager's RBAC filters and ext_authz enablement in config order, as the
/// request path does: `Err` when RBAC denies, else which ext_authz filters would ask.
fn asked(hcm: &HttpManager, path: &str) -> Result<Vec<bool>, ()> {
    let headers = HeaderMap::new();
    let head = head("GET", path, &headers);
    let input = rbac_input(&head, None, None);
    let mut md = Map::new();
    let mut out = Vec::new();
    let mut next = 0;
    for i in 0..=hcm.rbac.len() {
        while let Some((_, f)) = hcm.ext_authz.get(next).filter(|(at, _)| *at == i) {
            next += 1;
            out.push(enabled(
                f,
                &Metadata {
                    jwt: None,
                    rbac: &md,
                },
            ));
        }
        let Some(f) = hcm.rbac.get(i) else { break };
        let (d, shadow) = check_with_shadow(f, &input);
        if let Some(s) = shadow {
            s.record(&f.shadow_stat_prefix, &mut md);
        }
        if d != Decision::Allow {
            return Err(());
        }
    }
    Ok(out)
}

#[test]
fn custom_rules_select_the_requests_the_authorizer_is_asked_about() {
    let h = hcm("http");
    // The shadow RBAC filter first, ext_authz right after it, then the DENY filter.
    assert_eq!(h.ext_authz.len(), 1);
    assert_eq!(h.ext_authz[0].0, 1);
    assert_eq!(h.rbac[0].shadow_stat_prefix, "istio_ext_authz_");
    assert_eq!(asked(&h, "/admin/x"), Ok(vec![true]));
    assert_eq!(asked(&h, "/admin/x?debug=1"), Ok(vec![true]));
    assert_eq!(asked(&h, "/public"), Ok(vec![false]));
    // The authorizer is asked before the DENY rule denies (CUSTOM → DENY → ALLOW).
    assert_eq!(asked(&h, "/admin/secret"), Err(()));
    let Service::Http(s) = &h.ext_authz[0].1.service else {
        panic!("http provider")
    };
    assert_eq!(s.cluster, "outbound|8000||authz.foo.svc.cluster.local");
    let g = hcm("grpc");
    let f = &g.ext_authz[0].1;
    assert!(f.failure_mode_allow);
    let Service::Grpc(s) = &f.service else {
        panic!("grpc provider")
    };
    assert_eq!(s.cluster, "outbound|9000||authz.foo.svc.cluster.local");
    assert_eq!(s.authority, "authz.foo.svc.cluster.local");
}

#[test]
fn shadow_results_are_written_as_envoy_names_them() {
    let mut md = Map::new();
    crate::http::rbac::Shadow {
        allowed: false,
        policy: Some("istio-ext-authz-ns[foo]-policy[custom]-rule[0]"),
    }
    .record("istio_ext_authz_", &mut md);
    assert_eq!(
        md["istio_ext_authz_shadow_effective_policy_id"],
        "istio-ext-authz-ns[foo]-policy[custom]-rule[0]"
    );
    assert_eq!(md["istio_ext_authz_shadow_engine_result"], "denied");
    let mut md = Map::new();
    crate::http::rbac::Shadow {
        allowed: true,
        policy: None,
    }
    .record("p_", &mut md);
    assert_eq!(md.len(), 1);
    assert_eq!(md["p_shadow_engine_result"], "allowed");
}

fn http_filter() -> (Arc<ExtAuthz>, HttpAuthz) {
    let h = hcm("http");
    let f = h.ext_authz[0].1.clone();
    let Service::Http(s) = &f.service else {
        panic!("http")
    };
    let s = s.clone();
    (f, s)
}

fn input<'a>(headers: &'a HeaderMap) -> CheckInput<'a> {
    CheckInput {
        method: &Method::GET,
        path: "/admin/x?q=1",
        authority: "httpbin.foo:8000",
        scheme: "http",
        version: http::Version::HTTP_11,
        headers,
        source: "10.0.0.9:5555".parse().unwrap(),
        destination: "10.0.0.5:8000".parse().unwrap(),
        peer_principal: Some("spiffe://cluster.local/ns/bar/sa/sleep"),
        body: None,
        pack_as_bytes: false,
    }
}

#[test]
fn the_http_check_carries_envoys_headers_and_the_allowed_ones() {
    let (f, h) = http_filter();
    let mut hm = HeaderMap::new();
    hm.insert("x-ext-authz", HeaderValue::from_static("allow"));
    hm.insert("authorization", HeaderValue::from_static("Bearer t"));
    hm.insert("cookie", HeaderValue::from_static("secret"));
    hm.insert("content-length", HeaderValue::from_static("12"));
    hm.insert("host", HeaderValue::from_static("httpbin.foo:8000"));
    let out = http_check_headers(&f, &h, &input(&hm));
    assert_eq!(out["x-ext-authz"], "allow");
    assert_eq!(out["authorization"], "Bearer t");
    assert_eq!(out["host"], "httpbin.foo:8000");
    assert_eq!(out["content-length"], "0");
    assert!(!out.contains_key("cookie"));
    assert_eq!(out["x-envoy-internal"], "true");
    assert_eq!(out["x-envoy-expected-rq-timeout-ms"], "600");
    // Without allowed_headers, none of the client's but `authorization` (Envoy 1.3x).
    let mut none = (*f).clone();
    none.allowed_headers = None;
    let out = http_check_headers(&none, &h, &input(&hm));
    assert!(!out.contains_key("cookie") && !out.contains_key("x-ext-authz"));
    assert_eq!(out["authorization"], "Bearer t");
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut hm = HeaderMap::new();
    for (k, v) in pairs {
        hm.append(*k, HeaderValue::from_static(v));
    }
    hm
}

#[test]
fn http_answers_allow_deny_or_fail_as_in_envoy() {
    let (f, h) = http_filter();
    let answer = headers(&[
        ("x-ext-authz-check-result", "allowed"),
        ("x-on-allow", "1"),
        ("x-other", "no"),
    ]);
    let Ok(Answer::Allow(a)) = http_answer(&f, &h, StatusCode::OK, &answer, Bytes::new()) else {
        panic!("200 allows")
    };
    assert_eq!(a.set.len(), 1);
    assert_eq!(a.set[0].0, "x-ext-authz-check-result");
    assert_eq!(a.on_success.len(), 1);
    assert_eq!(a.on_success[0].0, "x-on-allow");
    let mut up = headers(&[("x-ext-authz-check-result", "spoofed")]);
    a.apply(&mut up);
    assert_eq!(up.get_all("x-ext-authz-check-result").iter().count(), 1);
    assert_eq!(up["x-ext-authz-check-result"], "allowed");

    let denial = headers(&[
        ("x-ext-authz-check-result", "denied"),
        ("x-other", "no"),
        ("www-authenticate", "Bearer"),
        ("content-type", "text/html"),
    ]);
    let Ok(Answer::Deny(r)) = http_answer(
        &f,
        &h,
        StatusCode::UNAUTHORIZED,
        &denial,
        Bytes::from_static(b"go away"),
    ) else {
        panic!("401 denies")
    };
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-ext-authz-check-result"], "denied");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(!r.headers().contains_key("x-other"));
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["content-length"], "7");
    // Unset allowed_client_headers: everything but host.
    let mut open = h.clone();
    open.allowed_client = None;
    let Ok(Answer::Deny(r)) = http_answer(&f, &open, StatusCode::FORBIDDEN, &denial, Bytes::new())
    else {
        panic!("403 denies")
    };
    assert_eq!(r.headers()["x-other"], "no");
    assert_eq!(r.headers()["content-type"], "text/html");
    // A 5xx is a failure: status_on_error, or allowed with failure_mode_allow.
    assert!(matches!(
        http_answer(&f, &h, StatusCode::BAD_GATEWAY, &denial, Bytes::new()),
        Err(CheckError::ServerError(502))
    ));
    let Answer::Deny(r) = failed(&f) else {
        panic!("fails closed")
    };
    assert_eq!(r.status(), 403);
    let mut open = (*f).clone();
    open.failure_mode_allow = true;
    let Answer::Allow(a) = failed(&open) else {
        panic!("fails open")
    };
    assert!(a.set.is_empty());
    open.failure_mode_allow_header_add = true;
    let Answer::Allow(a) = failed(&open) else {
        panic!("fails open")
    };
    assert_eq!(a.set[0].0, FAILURE_MODE_ALLOWED);
}

fn option(k: &str, v: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeader {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn grpc_answers_and_the_check_request() {
    let ok = CheckResponse {
        status: Some(Status::default()),
        http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![option("x-ext-authz-check-result", "allowed")],
            headers_to_remove: vec!["x-drop".into(), ":path".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let Answer::Allow(a) = grpc_answer(ok) else {
        panic!("status 0 allows")
    };
    assert_eq!(a.set[0].0, "x-ext-authz-check-result");
    assert_eq!(a.remove, vec![HeaderName::from_static("x-drop")]);
    let denied = CheckResponse {
        status: Some(Status {
            code: 7,
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus { code: 418 }),
                headers: vec![option("x-why", "teapot")],
                body: "short and stout".into(),
            },
        )),
        ..Default::default()
    };
    let Answer::Deny(r) = grpc_answer(denied) else {
        panic!("status 7 denies")
    };
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-why"], "teapot");
    assert_eq!(r.headers()["content-length"], "15");
    let bare = CheckResponse {
        status: Some(Status {
            code: 16,
            ..Default::default()
        }),
        ..Default::default()
    };
    let Answer::Deny(r) = grpc_answer(bare) else {
        panic!("denies")
    };
    assert_eq!(r.status(), 403);

    let hm = headers(&[
        ("x-ext-authz", "allow"),
        ("x-request-id", "abc"),
        ("host", "h"),
    ]);
    let req = check_request(&input(&hm));
    let attrs = req.attributes.as_ref().unwrap();
    let http = attrs.request.as_ref().unwrap().http.as_ref().unwrap();
    assert_eq!(http.path, "/admin/x?q=1");
    assert_eq!(http.host, "httpbin.foo:8000");
    assert_eq!(http.id, "abc");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.headers["x-ext-authz"], "allow");
    assert_eq!(http.headers[":authority"], "httpbin.foo:8000");
    assert!(!http.headers.contains_key("host"));
    let src = attrs.source.as_ref().unwrap();
    assert_eq!(src.principal, "spiffe://cluster.local/ns/bar/sa/sleep");
    // Framing round trip.
    let framed = grpc_frame(&req);
    assert_eq!(framed[0], 0);
    let back = CheckRequest::decode(grpc_unframe(framed).unwrap()).unwrap();
    assert_eq!(back, req);
    assert!(grpc_unframe(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    assert!(!http.headers.contains_key(PARTIAL_BODY), "no body read");
}

#[test]
fn a_body_read_for_the_check_goes_to_both_kinds_of_authorizer() {
    let (f, h) = http_filter();
    let hm = headers(&[(PARTIAL_BODY, "forged")]);
    let body = CheckBody {
        bytes: Bytes::from_static(b"{\"x\":1}"),
        partial: true,
    };
    let mut i = input(&hm);
    i.body = Some(&body);
    let req = check_request(&i);
    let http = req.attributes.unwrap().request.unwrap().http.unwrap();
    assert_eq!(http.body, "{\"x\":1}");
    assert!(http.raw_body.is_empty());
    assert_eq!(
        http.headers[PARTIAL_BODY], "true",
        "the proxy's, not the client's"
    );
    let out = http_check_headers(&f, &h, &i);
    assert_eq!(out["content-length"], "7");
    // Even though the header list (`x-ext-authz` only) does not name it, as Envoy.
    assert_eq!(out[PARTIAL_BODY], "true");
    assert_eq!(http_check_body(&i), body.bytes);
    // pack_as_bytes: raw_body for gRPC, nothing for HTTP (as Envoy).
    i.pack_as_bytes = true;
    let http = check_request(&i)
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap();
    assert_eq!(
        (http.body.as_str(), &http.raw_body[..]),
        ("", &b"{\"x\":1}"[..])
    );
    assert!(http_check_body(&i).is_empty());
    assert_eq!(http_check_headers(&f, &h, &i)["content-length"], "0");
}

//! Istio AuthorizationPolicy → the real translator → the RBAC filter spar proxy builds from
//! what it is sent → decisions for a table of requests.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use super::*;
use crate::config::Snapshot;
use crate::testutil::{head, httpbin_inbound, rbac_input, HTTPBIN};

/// The RBAC filters of httpbin's inbound HTTP chain on port 8000 under `policies`.
fn filters(policies: &str) -> Vec<std::sync::Arc<RbacFilter>> {
    let yaml = format!("{HTTPBIN}---\n{policies}");
    httpbin_inbound(&[("test.yaml", &yaml)]).rbac.clone()
}

struct Req {
    method: &'static str,
    path: &'static str,
    principal: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    peer: &'static str,
}

fn req(method: &'static str, path: &'static str, principal: Option<&'static str>) -> Req {
    Req {
        method,
        path,
        principal,
        headers: Vec::new(),
        peer: "10.0.0.9",
    }
}

fn allowed(filters: &[std::sync::Arc<RbacFilter>], r: &Req) -> bool {
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        headers.append(*k, v.parse().unwrap());
    }
    let head = head(r.method, r.path, &headers);
    let peer: IpAddr = r.peer.parse().unwrap();
    let input = RbacInput {
        direct_remote: peer,
        remote: remote_address(peer, &headers, false, 0),
        ..rbac_input(&head, r.principal, None)
    };
    filters.iter().all(|f| check(f, &input) == Decision::Allow)
}

const SLEEP: Option<&str> = Some("spiffe://cluster.local/ns/bar/sa/sleep");
const OTHER: Option<&str> = Some("spiffe://cluster.local/ns/baz/sa/curl");

#[test]
fn no_policy_no_filter_everything_allowed() {
    let f = filters("");
    assert!(f.is_empty());
    assert!(allowed(&f, &req("GET", "/", None)));
}

#[test]
fn allow_and_deny_policies_as_istio_documents_them() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/info*", "/status/200"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/info/admin"]}}]
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
"#,
    );
    assert_eq!(f.len(), 2, "DENY then ALLOW filters");
    let cases = [
        (req("GET", "/info", SLEEP), true),
        (req("GET", "/info/headers?x=1", SLEEP), true),
        (req("GET", "/status/200", SLEEP), true),
        (req("GET", "/status/200?q", SLEEP), true),
        (req("GET", "/status/2000", SLEEP), false),
        (req("POST", "/info", SLEEP), false),
        (req("GET", "/info", OTHER), false),
        (req("GET", "/info", None), false),
        (req("GET", "/info/admin", SLEEP), false),
        (
            Req {
                headers: vec![("x-block", "yes")],
                ..req("GET", "/info", SLEEP)
            },
            false,
        ),
        (
            Req {
                headers: vec![("x-block", "no")],
                ..req("GET", "/info", SLEEP)
            },
            true,
        ),
    ];
    for (r, want) in cases {
        assert_eq!(
            allowed(&f, &r),
            want,
            "{} {} as {:?} with {:?}",
            r.method,
            r.path,
            r.principal,
            r.headers
        );
    }
}

#[test]
fn namespaces_ip_blocks_and_empty_policies() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-bar, namespace: foo}
spec:
  rules:
  - from: [{source: {namespaces: ["bar"]}}]
  - from: [{source: {ipBlocks: ["192.168.0.0/16"]}}]
"#,
    );
    assert!(allowed(&f, &req("GET", "/", SLEEP)));
    assert!(!allowed(&f, &req("GET", "/", OTHER)));
    // A plaintext caller has no namespace.
    assert!(!allowed(&f, &req("GET", "/", None)));
    assert!(allowed(
        &f,
        &Req {
            peer: "192.168.3.4",
            ..req("GET", "/", None)
        }
    ));
    // An ALLOW policy with no rules allows nothing; `rules: [{}]` allows everything.
    let nothing = filters(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none, namespace: foo}\nspec: {action: ALLOW}\n",
    );
    assert!(!allowed(&nothing, &req("GET", "/", SLEEP)));
    let all = filters(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: all, namespace: foo}\nspec: {rules: [{}]}\n",
    );
    assert!(allowed(&all, &req("GET", "/", None)));
}

#[test]
fn dry_run_policies_are_evaluated_but_not_enforced() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all-dry
  namespace: foo
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{}]
"#,
    );
    assert!(f.iter().all(|x| x.rules.is_none() && x.shadow.is_some()));
    assert!(allowed(&f, &req("GET", "/", None)));
}

#[test]
fn remote_address_follows_envoys_xff_rule() {
    let peer: IpAddr = "10.0.0.9".parse().unwrap();
    let mut h = HeaderMap::new();
    h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
    h.append("x-forwarded-for", "3.3.3.3".parse().unwrap());
    assert_eq!(remote_address(peer, &h, true, 0), peer);
    assert_eq!(
        remote_address(peer, &h, false, 0),
        "3.3.3.3".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        remote_address(peer, &h, false, 1),
        "2.2.2.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(remote_address(peer, &h, false, 5), peer);
    assert_eq!(remote_address(peer, &HeaderMap::new(), false, 0), peer);
}

#[test]
fn tcp_ports_get_the_network_filter_checked_per_connection() {
    let mesh = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: foo}
spec:
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: foo, labels: {app: db}}
spec: {serviceAccountName: db, containers: [{name: db}]}
status: {podIP: 10.0.0.6}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db, namespace: foo}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]
    to: [{operation: {ports: ["5432"]}}]
  # HTTP-only fields on a TCP port: Istio drops this ALLOW rule (it allows nothing).
  - from: [{source: {principals: ["cluster.local/ns/baz/sa/curl"]}}]
    to: [{operation: {methods: ["GET"]}}]
"#;
    let x = crate::testutil::resources(
        mesh,
        "sidecar~10.0.0.6~db-1.foo~foo.svc.cluster.local",
        &[("app", "db")],
    );
    let snap = Snapshot::from_xds(&x).unwrap();
    let chain = snap.listeners["virtualInbound"]
        .chains
        .iter()
        .find(|c| c.matcher.destination_port == Some(5432))
        .unwrap();
    assert_eq!(chain.rbac.len(), 1);
    let decide = |principal: Option<&str>| {
        let input = RbacInput {
            head: None,
            dst: SocketAddr::new("10.0.0.6".parse().unwrap(), 5432),
            direct_remote: "10.0.0.9".parse().unwrap(),
            remote: "10.0.0.9".parse().unwrap(),
            peer_principal: principal,
            sni: "",
            jwt: None,
        };
        check(&chain.rbac[0], &input)
    };
    assert_eq!(decide(SLEEP), Decision::Allow);
    assert_ne!(
        decide(OTHER),
        Decision::Allow,
        "the HTTP-only rule was dropped"
    );
    assert_ne!(decide(None), Decision::Allow);
}

#[test]
fn connection_sni_conditions_read_the_client_hello() {
    let f = filters(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: sni, namespace: foo}\nspec:\n  action: DENY\n  rules: [{when: [{key: connection.sni, values: [\"blocked.example\"]}]}]\n",
    );
    let headers = HeaderMap::new();
    let head = head("GET", "/", &headers);
    let decide = |sni: &str| {
        let input = RbacInput {
            sni,
            ..rbac_input(&head, SLEEP, None)
        };
        f.iter().all(|x| check(x, &input) == Decision::Allow)
    };
    assert!(!decide("blocked.example"));
    assert!(decide("other.example"));
    assert!(decide(""), "plaintext: no SNI");
}

#[test]
fn request_principals_and_claims_match_the_verified_jwt_payload() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt, namespace: foo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
    to: [{operation: {paths: ["/alice*"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/any-token*"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [admin]}
    - {key: "request.auth.claims[org][team]", values: ["blue*"]}
"#,
    );
    let headers = HeaderMap::new();
    let decide = |path: &str, payload: Option<&str>| {
        let head = head("GET", path, &headers);
        let md: Option<serde_json::Map<String, serde_json::Value>> =
            payload.map(|p| serde_json::from_str(&format!(r#"{{"payload":{p}}}"#)).unwrap());
        let input = rbac_input(&head, None, md.as_ref());
        f.iter().all(|x| check(x, &input) == Decision::Allow)
    };
    let alice = r#"{"iss":"https://issuer.example","sub":"alice"}"#;
    let bob = r#"{"iss":"https://issuer.example","sub":"bob"}"#;
    let admin_blue = r#"{"iss":"i","sub":"s","groups":["dev","admin"],"org":{"team":"blue-1"}}"#;
    let admin_red = r#"{"iss":"i","sub":"s","groups":["admin"],"org":{"team":"red"}}"#;
    let admin_string = r#"{"iss":"i","sub":"s","groups":"admin","org":{"team":"blue"}}"#;
    assert!(decide("/alice", Some(alice)));
    assert!(!decide("/alice", Some(bob)));
    assert!(!decide("/alice", None), "no token, no request principal");
    assert!(decide("/any-token", Some(admin_blue)));
    assert!(
        decide("/any-token", Some(admin_string)),
        "a string claim matches too"
    );
    assert!(!decide("/any-token", Some(admin_red)), "nested claim");
    assert!(!decide("/any-token", Some(alice)));
    assert!(!decide("/any-token", None));
}

#[test]
fn path_gates_are_derived_only_where_a_literal_path_is_required() {
    use crate::config::rbac::PathLiteral;
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gates, namespace: foo}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET], paths: ["/api/*", "/health"]}}]
  - to: [{operation: {notPaths: ["/admin*"]}}]
  - to: [{operation: {paths: ["/x*"]}}, {operation: {methods: [POST]}}]
  - from: [{source: {namespaces: [bar]}}]
"#,
    );
    let rules = f[0].rules.as_ref().unwrap();
    let gate = |i: usize| rules.policies[i].1.path_gate();
    assert_eq!(
        gate(0),
        Some(vec![
            PathLiteral::Prefix("/api/".into()),
            PathLiteral::Exact("/health".into())
        ])
    );
    assert_eq!(gate(1), None, "notPaths needs no literal");
    assert_eq!(gate(2), None, "the second operation needs no path");
    assert_eq!(gate(3), None);
    // Gated or not, decisions are the matchers' own.
    assert!(allowed(&f, &req("GET", "/api/v1?q=1", None)));
    assert!(
        allowed(&f, &req("GET", "/elsewhere", None)),
        "notPaths rule"
    );
    assert!(!allowed(&f, &req("GET", "/admin/x", None)));
    assert!(allowed(&f, &req("POST", "/admin/x", None)), "POST rule");
}

/// The PERMISSIVE bypass class: a plaintext caller has no identity, so "everyone but
/// namespace X" (or "but principal P") must not let it in.
#[test]
fn plaintext_callers_never_match_not_namespaces_or_not_principals_allow_rules() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-evil, namespace: foo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {notNamespaces: [evil]}}]
    to: [{operation: {paths: ["/ns*"]}}]
  - from: [{source: {notPrincipals: ["cluster.local/ns/bar/sa/banned"]}}]
    to: [{operation: {paths: ["/principal*"]}}]
  - from: [{source: {notRequestPrincipals: ["https://evil.example/*"]}}]
    to: [{operation: {paths: ["/token*"]}}]
"#,
    );
    let good = Some("spiffe://cluster.local/ns/bar/sa/sleep");
    let evil = Some("spiffe://cluster.local/ns/evil/sa/sleep");
    let banned = Some("spiffe://cluster.local/ns/bar/sa/banned");
    assert!(allowed(&f, &req("GET", "/ns", good)));
    assert!(!allowed(&f, &req("GET", "/ns", evil)));
    assert!(
        !allowed(&f, &req("GET", "/ns", None)),
        "plaintext has no namespace"
    );
    assert!(allowed(&f, &req("GET", "/principal", good)));
    assert!(!allowed(&f, &req("GET", "/principal", banned)));
    assert!(
        !allowed(&f, &req("GET", "/principal", None)),
        "plaintext has no principal"
    );
    assert!(
        !allowed(&f, &req("GET", "/token", good)),
        "no token, no request principal"
    );
}

/// The path index finds exactly the policies a walk over all of them would: the first
/// matching policy is the same for paths around every literal (prefix, exact, empty,
/// longer, shorter, with a query).
#[test]
fn the_path_index_agrees_with_evaluating_every_policy() {
    let f = filters(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: index, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/a*"]}}]
  - to: [{operation: {paths: ["/ab", "/b/*"]}}]
  - to: [{operation: {methods: [POST]}}]
  - to: [{operation: {paths: ["/a/b/c"]}}]
  - to: [{operation: {paths: ["*"]}}]
  - to: [{operation: {paths: ["/"]}}]
  - to: [{operation: {paths: ["/b/*"], methods: [PUT]}}]
  - to: [{operation: {notPaths: ["/a*"]}}]
"#,
    );
    let rules = f[0].rules.as_ref().unwrap();
    let headers = HeaderMap::new();
    for method in ["GET", "POST", "PUT"] {
        for path in [
            "", "/", "/a", "/ab", "/abc", "/a/b/c", "/a/b/c/d", "/a/b", "/b", "/b/", "/b/x",
            "/ab?x=1", "/c", "/a#f", "/x/a",
        ] {
            let head = head(method, path, &headers);
            let input = rbac_input(&head, None, None);
            let brute = rules
                .policies
                .iter()
                .find(|(_, p)| {
                    p.permissions.iter().any(|x| permission(x, &input))
                        && p.principals.iter().any(|x| principal(x, &input))
                })
                .map(|(n, _)| n.clone());
            let got = match check(&f[0], &input) {
                Decision::Deny(name) => name,
                Decision::Allow => None,
            };
            assert_eq!(got, brute, "{method} {path:?}");
        }
    }
}

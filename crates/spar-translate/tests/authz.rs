//! AuthorizationPolicy / RequestAuthentication translation, table by table: which policies
//! apply, filter order (jwt_authn, CUSTOM, DENY, ALLOW), istiod's policy names, empty and
//! dry-run policies, HTTP fields on TCP chains, fail-closed rules, JWKS handling and
//! path normalization.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::core::v3::grpc_service;
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::rbac::v3::{permission, rbac};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider, JwtAuthentication,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::google::protobuf::Any;
use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources, REJECT_ALL_JWKS};

fn web() -> ProxyNode {
    let mut n =
        ProxyNode::parse_id("sidecar~10.0.0.5~web-v1-1.default~default.svc.cluster.local").unwrap();
    n.labels.insert("app".into(), "web".into());
    n.labels.insert("version".into(), "v1".into());
    n
}

fn db() -> ProxyNode {
    let mut n =
        ProxyNode::parse_id("sidecar~10.0.0.6~db-1.default~default.svc.cluster.local").unwrap();
    n.labels.insert("app".into(), "db".into());
    n
}

fn typed(f: &Filter) -> &Any {
    match f.config_type.as_ref().unwrap() {
        filter::ConfigType::TypedConfig(a) => a,
        _ => panic!("no typed config"),
    }
}

/// The inbound chain for `port` on virtualInbound.
fn chain_filters(x: &XdsResources, port: u32) -> Vec<Filter> {
    let l = listener(x, "virtualInbound");
    l.filter_chains
        .iter()
        .find(|c| c.name == format!("0.0.0.0_{port}"))
        .unwrap_or_else(|| panic!("no inbound chain for {port}"))
        .filters
        .clone()
}

fn hcm(x: &XdsResources) -> HttpConnectionManager {
    unpack(typed(&chain_filters(x, 9080)[0]))
}

fn http_filters(x: &XdsResources) -> Vec<(String, Any)> {
    hcm(x)
        .http_filters
        .into_iter()
        .map(|f| match f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) => (f.name, a),
            _ => (f.name, Any::default()),
        })
        .collect()
}

fn names(x: &XdsResources) -> Vec<String> {
    http_filters(x).into_iter().map(|(n, _)| n).collect()
}

/// Every RBAC filter on the web inbound chain: (enforced action and policy names, shadow
/// policy names and prefix).
fn rbacs(x: &XdsResources) -> Vec<RbacSummary> {
    http_filters(x)
        .into_iter()
        .filter(|(n, _)| n == "envoy.filters.http.rbac")
        .map(|(_, a)| {
            let r: HttpRbac = unpack(&a);
            let sorted = |m: &std::collections::HashMap<String, _>| {
                let mut v: Vec<String> = m.keys().cloned().collect();
                v.sort();
                v
            };
            (
                r.rules.as_ref().map(|r| (r.action, sorted(&r.policies))),
                r.shadow_rules
                    .as_ref()
                    .map(|r| sorted(&r.policies))
                    .unwrap_or_default(),
                r.shadow_rules_stat_prefix,
            )
        })
        .collect()
}

/// An action and its policy names.
type Enforced = (i32, Vec<String>);
/// Enforced rules, shadow policy names, shadow stat prefix.
type RbacSummary = (Option<Enforced>, Vec<String>, String);

const ALLOW: i32 = rbac::Action::Allow as i32;
const DENY: i32 = rbac::Action::Deny as i32;

fn ap(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

const TAIL: [&str; 3] = [
    "envoy.filters.http.cors",
    "envoy.filters.http.fault",
    "envoy.filters.http.router",
];

#[test]
fn no_policy_no_filters_and_base_normalization() {
    let x = run_for("", &web());
    assert_eq!(names(&x), TAIL);
    assert!(hcm(&x).normalize_path.unwrap().value);
    assert!(!hcm(&x).merge_slashes);
    // Outbound listeners never get authorization filters.
    let x = run_for(
        &ap("deny", "default", "{action: DENY, rules: [{}]}"),
        &web(),
    );
    assert!(x
        .listeners
        .iter()
        .filter(|l| l.name != "virtualInbound")
        .all(|l| !format!("{l:?}").contains("envoy.filters.http.rbac")));
}

#[test]
fn which_policies_apply_and_in_what_order() {
    let n = |i: usize| format!("ns[default]-policy[p]-rule[{i}]");
    // (config, expected RBAC filters: enforced action + policy names)
    let table: Vec<(String, Vec<Enforced>)> = vec![
        // ALLOW with no rules: present, matches nothing → denies all.
        (ap("p", "default", "{}"), vec![(ALLOW, vec![])]),
        (
            ap("p", "default", "{rules: [{}]}"),
            vec![(ALLOW, vec![n(0)])],
        ),
        // Another namespace: not ours.
        (ap("p", "other", "{rules: [{}]}"), vec![]),
        // Root namespace: mesh-wide.
        (
            ap("p", "istio-system", "{rules: [{}]}"),
            vec![(ALLOW, vec!["ns[istio-system]-policy[p]-rule[0]".into()])],
        ),
        // Selector.
        (
            ap(
                "p",
                "default",
                "{selector: {matchLabels: {app: db}}, rules: [{}]}",
            ),
            vec![],
        ),
        (
            ap(
                "p",
                "default",
                "{selector: {matchLabels: {app: web}}, rules: [{}, {}]}",
            ),
            vec![(ALLOW, vec![n(0), n(1)])],
        ),
        // DENY before ALLOW whatever the file order.
        (
            ap("p", "default", "{rules: [{}]}")
                + &ap(
                    "q",
                    "default",
                    "{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}",
                ),
            vec![
                (DENY, vec!["ns[default]-policy[q]-rule[0]".into()]),
                (ALLOW, vec![n(0)]),
            ],
        ),
        // Untranslatable: ALLOW rule dropped, DENY rule kept as deny-all.
        (
            ap(
                "p",
                "default",
                "{rules: [{to: [{operation: {paths: [\"/a/{*}\"]}}]}, {}]}",
            ),
            vec![(ALLOW, vec![n(1)])],
        ),
        (
            ap(
                "p",
                "default",
                "{action: DENY, rules: [{to: [{operation: {paths: [\"/a/{*}\"]}}]}]}",
            ),
            vec![(DENY, vec![n(0)])],
        ),
    ];
    for (cfg, want) in table {
        let got: Vec<Enforced> = rbacs(&run_for(&cfg, &web()))
            .into_iter()
            .filter_map(|(r, _, _)| r)
            .collect();
        assert_eq!(got, want, "{cfg}");
    }
}

#[test]
fn deny_all_fallback_matches_everything() {
    let x = run_for(
        &ap(
            "p",
            "default",
            "{action: DENY, rules: [{to: [{operation: {paths: [\"/a/{**}/b\"]}}]}]}",
        ),
        &web(),
    );
    let (_, a) = http_filters(&x)
        .into_iter()
        .find(|(n, _)| n == "envoy.filters.http.rbac")
        .unwrap();
    let r: HttpRbac = unpack(&a);
    let p = &r.rules.unwrap().policies["ns[default]-policy[p]-rule[0]"];
    assert_eq!(p.permissions[0].rule, Some(permission::Rule::Any(true)));
}

#[test]
fn dry_run_is_shadow_only() {
    let cfg = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: default, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: DENY, rules: [{}]}\n";
    assert_eq!(
        rbacs(&run_for(cfg, &web())),
        vec![(
            None,
            vec!["ns[default]-policy[p]-rule[0]".to_string()],
            "istio_dry_run_deny_".to_string()
        )]
    );
}

#[test]
fn custom_uses_the_mesh_provider_or_fails_closed() {
    let cfg = ap(
        "p",
        "default",
        "{action: CUSTOM, provider: {name: authz}, rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]}",
    );
    let mesh = "extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000}\n";
    let x = with_mesh(&cfg, mesh, &web());
    let ns = names(&x);
    assert_eq!(
        &ns[..2],
        ["envoy.filters.http.rbac", "envoy.filters.http.ext_authz"]
    );
    assert_eq!(
        rbacs(&x)[0],
        (
            None,
            vec!["istio-ext-authz-ns[default]-policy[p]-rule[0]".to_string()],
            "istio_ext_authz_".to_string()
        )
    );
    // No such provider: what the policy selects is denied.
    let x = run_for(&cfg, &web());
    assert!(!names(&x).contains(&"envoy.filters.http.ext_authz".to_string()));
    assert_eq!(rbacs(&x)[0].0.as_ref().unwrap().0, DENY);
}

#[test]
fn custom_on_tcp_chains_is_network_ext_authz_for_grpc_providers() {
    let cfg = ap(
        "p",
        "default",
        "{action: CUSTOM, provider: {name: authz}, rules: [{to: [{operation: {methods: [GET]}}]}]}",
    );
    let names = |x: &XdsResources| -> Vec<String> {
        chain_filters(x, 5432)
            .iter()
            .map(|f| f.name.clone())
            .collect()
    };
    let grpc = "extensionProviders:\n- name: authz\n  envoyExtAuthzGrpc: {service: authz.default.svc.cluster.local, port: 9000, failOpen: true}\n";
    let x = with_mesh(&cfg, grpc, &db());
    assert_eq!(
        names(&x),
        [
            "envoy.filters.network.rbac",
            "envoy.filters.network.ext_authz",
            "envoy.filters.network.tcp_proxy"
        ]
    );
    let f = chain_filters(&x, 5432);
    let r: NetworkRbac = unpack(typed(&f[0]));
    assert!(r.rules.is_none(), "shadow only");
    assert_eq!(r.shadow_rules_stat_prefix, "istio_ext_authz_");
    let shadow = r.shadow_rules.unwrap();
    assert_eq!(shadow.action, DENY);
    // The HTTP-only field is dropped: every connection is sent to the authorizer.
    let p = &shadow.policies["istio-ext-authz-ns[default]-policy[p]-rule[0]"];
    assert_eq!(p.permissions.len(), 1);
    let e: NetworkExtAuthz = unpack(typed(&f[1]));
    assert_eq!(e.stat_prefix, "tcp.");
    assert!(e.failure_mode_allow);
    let m = e.filter_enabled_metadata.unwrap();
    assert_eq!(m.filter, "envoy.filters.network.rbac");
    match e.grpc_service.unwrap().target_specifier.unwrap() {
        grpc_service::TargetSpecifier::EnvoyGrpc(g) => assert_eq!(
            g.cluster_name,
            "outbound|9000||authz.default.svc.cluster.local"
        ),
        other => panic!("{other:?}"),
    }
    // An HTTP authorizer cannot judge a connection: TCP chains are left alone (istiod).
    let http = "extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 8000}\n";
    assert_eq!(
        names(&with_mesh(&cfg, http, &db())),
        ["envoy.filters.network.tcp_proxy"]
    );
    // No such provider: what the policy selects is denied, on TCP too.
    let x = run_for(&cfg, &db());
    let f = chain_filters(&x, 5432);
    assert_eq!(f[0].name, "envoy.filters.network.rbac");
    let r: NetworkRbac = unpack(typed(&f[0]));
    assert_eq!(r.rules.unwrap().action, DENY);
}

#[test]
fn http_fields_on_tcp_chains() {
    let network = |cfg: &str| -> Vec<(i32, usize)> {
        chain_filters(&run_for(cfg, &db()), 5432)
            .iter()
            .filter(|f| f.name == "envoy.filters.network.rbac")
            .map(|f| {
                let r: NetworkRbac = unpack(typed(f));
                let rules = r.rules.unwrap();
                (rules.action, rules.policies.len())
            })
            .collect()
    };
    // ALLOW with an HTTP-only field: the rule is dropped (deny all on TCP).
    assert_eq!(
        network(&ap(
            "p",
            "default",
            "{rules: [{to: [{operation: {methods: [GET]}}]}]}"
        )),
        vec![(ALLOW, 0)]
    );
    // DENY keeps the rule without its HTTP fields: it matches every connection.
    assert_eq!(
        network(&ap(
            "p",
            "default",
            "{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"
        )),
        vec![(DENY, 1)]
    );
    // Non-HTTP fields stay.
    assert_eq!(
        network(&ap(
            "p",
            "default",
            "{rules: [{to: [{operation: {ports: [\"5432\"]}}]}]}"
        )),
        vec![(ALLOW, 1)]
    );
    assert_eq!(network(""), vec![]);
}

fn with_mesh(extra: &str, mesh: &str, node: &ProxyNode) -> XdsResources {
    let set = ConfigSet::load(
        [
            ("base.yaml", BASE),
            ("extra.yaml", extra),
            ("mesh.yaml", mesh),
        ],
        &LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    translate(&set, &Registry::build(&set), node)
}

#[test]
fn request_authentication_becomes_jwt_authn_first() {
    let cfg = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://a.test
    jwks: '{"keys":[{"kty":"RSA","e":"AQAB","n":"AQAB"}]}'
  - issuer: https://b.test
    jwksUri: https://b.test/jwks
"#;
    let x = run_for(cfg, &web());
    let fs = http_filters(&x);
    assert_eq!(fs[0].0, "envoy.filters.http.jwt_authn");
    let j: JwtAuthentication = unpack(&fs[0].1);
    let jwks = |iss: &str| match j.providers[iss].jwks_source_specifier.as_ref().unwrap() {
        jwt_provider::JwksSourceSpecifier::LocalJwks(d) => format!("{:?}", d.specifier),
        _ => panic!("remote jwks"),
    };
    assert!(jwks("https://a.test").contains("AQAB"));
    assert!(jwks("https://b.test").contains("spar-unresolved-jwks"));
    assert!(REJECT_ALL_JWKS.contains("spar-unresolved-jwks"));
    assert_eq!(j.providers["https://a.test"].payload_in_metadata, "payload");
}

#[test]
fn fetched_jwks_are_inlined_per_uri_and_unresolved_uris_reject_all() {
    let cfg = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://b.test
    jwksUri: https://b.test/jwks
    timeout: 2s
  - issuer: https://c.test
    jwks_uri: https://c.test/jwks
  - issuer: https://inline.test
    jwks: '{"keys":[{"kty":"RSA","e":"AQAB","n":"AQAB"}]}'
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: other, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  jwtRules:
  - issuer: https://b2.test
    jwksUri: https://b.test/jwks
    timeout: 7s
"#;
    let mut set = config(cfg);
    // Every URI of every RequestAuthentication, whichever proxy it applies to, with the
    // longest timeout asked; inline keys need no fetch.
    let uris = spar_translate::jwks_uris(&set);
    assert_eq!(
        uris.into_iter().collect::<Vec<_>>(),
        vec![
            (
                "https://b.test/jwks".to_string(),
                Some(std::time::Duration::from_secs(7))
            ),
            ("https://c.test/jwks".to_string(), None),
        ]
    );
    let fetched = r#"{"keys":[{"kty":"RSA","kid":"fetched","e":"AQAB","n":"AQAB"}]}"#;
    set.set_resolved_jwks(std::sync::Arc::new(
        [("https://b.test/jwks".to_string(), fetched.to_string())]
            .into_iter()
            .collect(),
    ));
    let x = translate(&set, &Registry::build(&set), &web());
    let j: JwtAuthentication = unpack(&http_filters(&x)[0].1);
    let jwks = |iss: &str| match j.providers[iss].jwks_source_specifier.as_ref().unwrap() {
        jwt_provider::JwksSourceSpecifier::LocalJwks(d) => format!("{:?}", d.specifier),
        _ => panic!("remote jwks"),
    };
    assert!(jwks("https://b.test").contains("fetched"));
    // Not fetched: fails closed for that rule alone, never borrows the other URI's keys.
    assert!(jwks("https://c.test").contains("spar-unresolved-jwks"));
    assert!(jwks("https://inline.test").contains("AQAB"));
    // A fetched text that is not a JWKS is never pushed.
    set.set_resolved_jwks(std::sync::Arc::new(
        [("https://b.test/jwks".to_string(), "<html>".to_string())]
            .into_iter()
            .collect(),
    ));
    let x = translate(&set, &Registry::build(&set), &web());
    let j: JwtAuthentication = unpack(&http_filters(&x)[0].1);
    match j.providers["https://b.test"]
        .jwks_source_specifier
        .as_ref()
        .unwrap()
    {
        jwt_provider::JwksSourceSpecifier::LocalJwks(d) => {
            assert!(format!("{:?}", d.specifier).contains("spar-unresolved-jwks"))
        }
        _ => panic!("remote jwks"),
    }
}

#[test]
fn path_normalization_follows_mesh_config() {
    for (kind, merge, escaped) in [
        ("BASE", false, 0),
        ("MERGE_SLASHES", true, 0),
        ("DECODE_AND_MERGE_SLASHES", true, 4),
    ] {
        let mesh = format!("pathNormalization: {{normalization: {kind}}}\n");
        let h = hcm(&with_mesh("", &mesh, &web()));
        assert_eq!(
            (
                h.normalize_path.unwrap().value,
                h.merge_slashes,
                h.path_with_escaped_slashes_action
            ),
            (true, merge, escaped),
            "{kind}"
        );
    }
    let h = hcm(&with_mesh(
        "",
        "pathNormalization: {normalization: NONE}\n",
        &web(),
    ));
    assert!(!h.normalize_path.unwrap().value);
}

#[test]
fn output_is_deterministic() {
    let cfg = ap("p", "default", "{rules: [{}, {}, {}, {}, {}]}")
        + &ap("q", "default", "{action: DENY, rules: [{}, {}, {}]}");
    let a = run_for(&cfg, &web());
    for _ in 0..5 {
        let b = run_for(&cfg, &web());
        assert_eq!(hcm(&a), hcm(&b));
        assert_eq!(chain_filters(&a, 9080), chain_filters(&b, 9080));
    }
}

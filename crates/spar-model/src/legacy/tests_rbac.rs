//! RBAC conversion: the book's examples and each RbacConfig mode.

use serde_json::{json, Value};

use super::tests::{read, values, warnings};
use super::*;
use crate::k8s::{Service, ServiceSpec};

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn dry_run(mut v: Value) -> Value {
    v["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    v
}

const BOOK_RBAC_ON: &str = r#"
apiVersion: "rbac.istio.io/v1alpha1"
kind: RBACConfig
metadata:
  name: default
  namespace: istio-system
spec:
  mode: ON
"#;

const BOOK_INCLUSION: &str = r#"
apiVersion: "rbac.istio.io/v1alpha1"
kind: RBACConfig
metadata:
  name: default
  namespace: istio-system
spec:
  mode: ON_WITH_INCLUSION
  inclusion:
    services:
      - bar.bar.svc.cluster.local
    namespaces:
      - default
"#;

const BOOK_ROLE_AND_BINDING: &str = r#"
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata:
  name: foo-viewer
  namespace: default
spec:
  rules:
    - services:
        - foo.default.cluster.local
      methods:
        - GET
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata:
  name: bar-foo-viewer-binding
  namespace: default
spec:
  subjects:
  - properties:
      # the SPIFFE ID of the bar service account in the bar namespace
      source.principal: "cluster.local/ns/bar/sa/bar"
  roleRef:
    kind: ServiceRole
    name: "foo-viewer"
"#;

fn binding_policy() -> Value {
    policy(
        "default",
        "bar-foo-viewer-binding",
        json!({
            "selector": {"matchLabels": {"app": "foo"}},
            "action": "ALLOW",
            "rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/bar/sa/bar"]}}],
                "to": [{"operation": {"methods": ["GET"]}}],
            }],
        }),
    )
}

fn with(parts: &[&str]) -> Vec<LegacyResource> {
    parts.iter().flat_map(|p| read(p)).collect()
}

#[test]
fn book_rbac_on_role_and_binding() {
    let input = with(&[BOOK_RBAC_ON, BOOK_ROLE_AND_BINDING]);
    let out = convert(&input, "istio-system");
    assert_eq!(
        values(&out),
        [
            policy("istio-system", "allow-nothing", json!({})),
            binding_policy()
        ]
    );
    // The binding's policy carries both legacy sources.
    let srcs: Vec<String> = out.resources[1]
        .sources
        .iter()
        .map(|s| s.resource.to_string())
        .collect();
    assert_eq!(
        srcs,
        [
            "ServiceRoleBinding default/bar-foo-viewer-binding",
            "ServiceRole default/foo-viewer"
        ]
    );
    // The kind's spelling was reported when reading; converting adds nothing.
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
    // A deprecation notice for each of the three, the role pointing at its binding.
    let deps: Vec<_> = out
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("removed in Istio 1.6"))
        .collect();
    assert_eq!(deps.len(), 3);
    assert!(deps[2].message.contains("kind: AuthorizationPolicy"));
}

#[test]
fn book_kind_spelling_is_reported_when_read() {
    let (res, diags) = read_legacy_documents(BOOK_RBAC_ON, Some("rbac.yaml"));
    assert_eq!(res[0].kind(), LegacyKind::RbacConfig);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].message.contains("spelt \"RbacConfig\""),
        "{}",
        diags[0]
    );
}

#[test]
fn book_rbac_on_with_inclusion() {
    let input = with(&[BOOK_INCLUSION, BOOK_ROLE_AND_BINDING]);
    let out = convert(&input, "istio-system");
    assert_eq!(
        values(&out),
        [
            policy("default", "allow-nothing", json!({})),
            policy(
                "bar",
                "allow-nothing-bar",
                json!({"selector": {"matchLabels": {"app": "bar"}}})
            ),
            binding_policy(),
        ]
    );
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
}

#[test]
fn mode_off_converts_nothing() {
    let off = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: 'OFF'}\n";
    let out = convert(&with(&[off, BOOK_ROLE_AND_BINDING]), "istio-system");
    assert!(out.resources.is_empty());
    assert!(
        warnings(&out).iter().any(|w| w.contains("RBAC is OFF")),
        "{:?}",
        warnings(&out)
    );
    // An absent mode is OFF too.
    let none = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {}\n";
    assert!(
        convert(&with(&[none, BOOK_ROLE_AND_BINDING]), "istio-system")
            .resources
            .is_empty()
    );
}

#[test]
fn mode_on_with_exclusion() {
    let src = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: ON_WITH_EXCLUSION\n  exclusion:\n    namespaces: [legacy]\n    services: [health.default.svc.cluster.local]\n";
    let out = convert(&with(&[src, BOOK_ROLE_AND_BINDING]), "mesh-root");
    assert_eq!(
        values(&out),
        [
            policy("mesh-root", "allow-nothing", json!({})),
            policy("legacy", "allow-all", json!({"rules": [{}]})),
            policy(
                "default",
                "allow-all-health",
                json!({"selector": {"matchLabels": {"app": "health"}}, "rules": [{}]})
            ),
            binding_policy(),
        ]
    );
    // Bindings in an excluded namespace had no effect.
    let excluded = BOOK_ROLE_AND_BINDING.replace("default", "legacy");
    let out = convert(&with(&[src, &excluded]), "mesh-root");
    assert_eq!(out.resources.len(), 3);
    assert!(
        warnings(&out)
            .iter()
            .any(|w| w.contains("not enforced for service foo in legacy")),
        "{:?}",
        warnings(&out)
    );
}

#[test]
fn inclusion_narrows_namespace_wide_roles_and_skips_others() {
    let config = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: ON_WITH_INCLUSION\n  inclusion: {services: [bar.bar.svc.cluster.local]}\n";
    let role = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: all, namespace: bar}\nspec:\n  rules: [{services: ['*'], paths: ['/api/*'], methods: ['*']}]\n---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: everyone, namespace: bar}\nspec:\n  subjects: [{user: '*'}]\n  roleRef: {kind: ServiceRole, name: all}\n";
    let out = convert(&with(&[config, role]), "istio-system");
    // `*` would cover every workload of `bar`; only the service `bar` had RBAC on.
    assert_eq!(
        out.find("AuthorizationPolicy", "bar", "everyone")
            .map(|c| c.value["spec"].clone()),
        Some(json!({
            "selector": {"matchLabels": {"app": "bar"}},
            "action": "ALLOW",
            "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}],
        }))
    );
    // The book's foo role in `default` is not included here: left out.
    let out = convert(&with(&[config, BOOK_ROLE_AND_BINDING]), "istio-system");
    assert_eq!(out.resources.len(), 1);
    assert!(
        warnings(&out)
            .iter()
            .any(|w| w.contains("not enforced for service foo")),
        "{:?}",
        warnings(&out)
    );
}

#[test]
fn permissive_enforcement_is_dry_run() {
    let config = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: 'ON', enforcement_mode: PERMISSIVE}\n";
    let out = convert(&with(&[config, BOOK_ROLE_AND_BINDING]), "istio-system");
    assert_eq!(
        values(&out),
        [
            dry_run(policy("istio-system", "allow-nothing", json!({}))),
            dry_run(binding_policy())
        ]
    );

    let permissive_binding =
        BOOK_ROLE_AND_BINDING.replace("  roleRef:", "  mode: PERMISSIVE\n  roleRef:");
    let out = convert(&with(&[BOOK_RBAC_ON, &permissive_binding]), "istio-system");
    assert_eq!(
        values(&out),
        [
            policy("istio-system", "allow-nothing", json!({})),
            dry_run(binding_policy())
        ]
    );
}

#[test]
fn no_config_converts_bindings_as_if_on() {
    let out = convert(&read(BOOK_ROLE_AND_BINDING), "istio-system");
    assert_eq!(values(&out), [binding_policy()]);
    assert!(warnings(&out)
        .iter()
        .any(|w| w.contains("as if RBAC were ON")));
}

#[test]
fn cluster_config_wins_over_rbac_config() {
    let cluster = "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: 'OFF'}\n";
    let out = convert(&with(&[BOOK_RBAC_ON, cluster]), "istio-system");
    assert!(out.resources.is_empty());
    assert!(warnings(&out)
        .iter()
        .any(|w| w.contains("this one is ignored")));
}

#[test]
fn missing_role_converts_nothing() {
    let binding = BOOK_ROLE_AND_BINDING.split("---").nth(1).unwrap();
    let out = convert(&with(&[BOOK_RBAC_ON, binding]), "istio-system");
    assert_eq!(
        values(&out),
        [policy("istio-system", "allow-nothing", json!({}))]
    );
    assert!(warnings(&out)
        .iter()
        .any(|w| w.contains("ServiceRole default/foo-viewer is not among the inputs")));
}

#[test]
fn subjects_and_constraints() {
    let src = r#"
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: reviewer, namespace: default}
spec:
  rules:
  - services: [reviews.default.svc.cluster.local, ratings]
    paths: ["/reviews/*"]
    not_methods: [DELETE]
    constraints:
    - key: request.headers[version]
      values: ["v1", "v2"]
    - key: destination.namespace
      values: [default]
  - services: [reviews.default.svc.cluster.local]
    methods: [GET]
    constraints:
    - key: destination.labels[version]
      values: [v2]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: reviewers, namespace: default}
spec:
  subjects:
  - user: spiffe://cluster.local/ns/default/sa/productpage
  - names: [cluster.local/ns/default/sa/ops]
    properties: {source.namespace: default}
  - group: admins
  - properties: {"request.auth.claims[iss]": "https://accounts.example.com", source.principal: "*"}
  - properties: {source.port: "80"}
  roleRef: {kind: ServiceRole, name: reviewer}
"#;
    let out = convert(&read(src), "istio-system");
    let to = json!([{"operation": {"paths": ["/reviews/*"], "notMethods": ["DELETE"]}}]);
    let header = json!({"key": "request.headers[version]", "values": ["v1", "v2"]});
    let rules = json!([
        {
            "from": [
                {"source": {"principals": ["cluster.local/ns/default/sa/productpage"]}},
                {"source": {"principals": ["cluster.local/ns/default/sa/ops"], "namespaces": ["default"]}},
            ],
            "to": to,
            "when": [header],
        },
        {"to": to, "when": [header, {"key": "request.auth.claims[groups]", "values": ["admins"]}]},
        {
            "from": [{"source": {"principals": ["*"]}}],
            "to": to,
            "when": [header, {"key": "request.auth.claims[iss]", "values": ["https://accounts.example.com"]}],
        },
    ]);
    let names: Vec<&str> = out.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["reviewers-reviews", "reviewers-ratings"]);
    for (res, app) in out.resources.iter().zip(["reviews", "ratings"]) {
        assert_eq!(
            res.value["spec"]["selector"],
            json!({"matchLabels": {"app": app}})
        );
        assert_eq!(res.value["spec"]["rules"], rules, "{app}");
    }
    let w = warnings(&out);
    assert_eq!(w.len(), 3, "{w:?}");
    // Grouped by resource: the role's finding, then the binding's.
    assert!(w[0].contains("destination.labels[version]"), "{w:?}");
    assert!(w[1].contains("as if RBAC were ON"), "{w:?}");
    assert!(w[2].contains("\"source.port\""), "{w:?}");
}

#[test]
fn user_star_is_everyone_and_patterns_need_services() {
    let src = r#"
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: public, namespace: shop}
spec:
  rules:
  - services: ["*.shop.svc.cluster.local"]
    methods: [GET, HEAD]
  - services: ["cart-*"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: public, namespace: shop}
spec:
  subjects: [{user: "*"}, {user: alice}]
  role: /public
"#;
    let input = read(src);
    let out = convert(&input, "istio-system");
    assert_eq!(
        values(&out),
        [policy(
            "shop",
            "public",
            json!({"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET", "HEAD"]}}]}]})
        )]
    );
    assert!(warnings(&out)
        .iter()
        .any(|w| w.contains("\"cart-*\" matches services by name pattern")));

    let known = |name: &str| KnownService {
        namespace: "shop".into(),
        name: name.into(),
        service: Service {
            spec: ServiceSpec {
                selector: [("svc".to_string(), name.to_string())].into(),
                ..Default::default()
            },
            status: None,
        },
    };
    let mut opts = ConvertOptions::new("istio-system");
    opts.services = vec![known("cart-api"), known("cart-db"), known("front")];
    let out = convert_with(&input, &opts);
    let names: Vec<&str> = out.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["public", "public-cart-api", "public-cart-db"]);
    assert_eq!(
        out.resources[1].value["spec"]["selector"],
        json!({"matchLabels": {"svc": "cart-api"}})
    );
    assert_eq!(out.resources[1].value["spec"]["rules"], json!([{}]));
}

#[test]
fn inline_actions_and_bad_role_refs() {
    let src = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: inline, namespace: default}\nspec:\n  subjects: [{namespaces: [frontend]}]\n  actions: [{services: [api], ports: [8080]}]\n";
    let out = convert(&with(&[BOOK_RBAC_ON, src]), "istio-system");
    assert_eq!(
        out.find("AuthorizationPolicy", "default", "inline")
            .unwrap()
            .value["spec"],
        json!({
            "selector": {"matchLabels": {"app": "api"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"namespaces": ["frontend"]}}], "to": [{"operation": {"ports": ["8080"]}}]}],
        })
    );
    let bad = "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: default}\nspec:\n  subjects: [{user: x}]\n  roleRef: {kind: ClusterRole, name: r}\n";
    let out = convert(&with(&[BOOK_RBAC_ON, bad]), "istio-system");
    assert_eq!(out.resources.len(), 1);
    assert!(warnings(&out)
        .iter()
        .any(|w| w.contains("must be ServiceRole")));
}

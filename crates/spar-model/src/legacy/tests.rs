//! Reading and authentication-policy conversion, with the book's examples (chapter 3,
//! "Security and Identity") with their indentation restored.

use serde_json::json;

use super::*;
use crate::k8s::{IntOrString, Service, ServicePort, ServiceSpec};
use crate::{Diagnostic, Severity};

pub(super) fn read(src: &str) -> Vec<LegacyResource> {
    let (resources, diags) = read_legacy_documents(src, Some("book.yaml"));
    // The book writes `RBACConfig`; that is read with a warning, tested on its own.
    assert!(
        diags.iter().all(|d| d.message.contains("is spelt")),
        "{:?}",
        shown(&diags)
    );
    resources
}

pub(super) fn shown(diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(ToString::to_string).collect()
}

pub(super) fn values(out: &ConversionOutput) -> Vec<serde_json::Value> {
    out.resources.iter().map(|r| r.value.clone()).collect()
}

/// Findings other than the per-resource deprecation notice and info notes.
pub(super) fn warnings(out: &ConversionOutput) -> Vec<String> {
    out.diagnostics
        .iter()
        .filter(|d| {
            d.severity == Severity::Warning && !d.message.contains("was removed in Istio 1.6")
        })
        .map(|d| d.message.clone())
        .collect()
}

fn peer(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

const FOO_REQUIRE_MTLS: &str = "
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: foo-require-mtls
  namespace: default
spec:
  targets:
  - name: foo.default.svc.cluster.local
  peers:
  - mtls:
      mode: STRICT
";

#[test]
fn book_policy_strict_for_one_service() {
    let out = convert(&read(FOO_REQUIRE_MTLS), "istio-system");
    assert_eq!(
        values(&out),
        [peer(
            "default",
            "foo-require-mtls",
            json!({"selector": {"matchLabels": {"app": "foo"}}, "mtls": {"mode": "STRICT"}})
        )]
    );
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
    // The app=foo assumption is stated.
    assert!(out
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Info && d.message.contains("app=foo")));
    // The deprecation warning shows the YAML to apply, located at the resource.
    let dep = &out.diagnostics[0];
    assert_eq!(
        (dep.file.as_deref(), dep.line),
        (Some("book.yaml"), Some(2))
    );
    assert!(
        dep.message
            .contains("authentication.istio.io/v1alpha1/Policy was removed in Istio 1.6"),
        "{}",
        dep.message
    );
    assert!(
        dep.message.contains("kind: PeerAuthentication") && dep.message.contains("mode: STRICT"),
        "{}",
        dep.message
    );
    assert_eq!(
        out.resources[0].sources[0].resource.to_string(),
        "Policy default/foo-require-mtls"
    );
}

#[test]
fn book_policy_short_forms_mean_strict() {
    // `mtls: {}`, `mtls:` (null), and the book's own typesetting where `mode` ended up
    // beside `mtls` rather than under it: all STRICT.
    for src in [
        "kind: Policy\napiVersion: authentication.istio.io/v1alpha1\nmetadata: {name: foo-require-mtls, namespace: default}\nspec:\n  targets:\n  - name: foo.default.svc.cluster.local\n  peers:\n  - mtls: {}\n",
        "kind: Policy\napiVersion: authentication.istio.io/v1alpha1\nmetadata: {name: foo-require-mtls, namespace: default}\nspec:\n  targets:\n  - name: foo.default.svc.cluster.local\n  peers:\n  - mtls:\n",
    ] {
        let out = convert(&read(src), "istio-system");
        assert_eq!(out.resources[0].value["spec"]["mtls"], json!({"mode": "STRICT"}), "{src}");
    }
    let (res, diags) = read_legacy_documents(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: foo-require-mtls\n  namespace: default\nspec:\n  targets:\n  - name: foo.default.svc.cluster.local\n  peers:\n  - mtls:\n    mode: STRICT\n",
        Some("book.yaml"),
    );
    assert_eq!(shown(&diags), ["book.yaml:11: warning: Policy default/foo-require-mtls: spec.peers[0].mode: unknown field, ignored"]);
    let out = convert(&res, "istio-system");
    assert_eq!(
        out.resources[0].value["spec"]["mtls"],
        json!({"mode": "STRICT"})
    );
}

#[test]
fn book_policy_permissive_for_one_service() {
    let src = "
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: bar-optional-mtls
  namespace: default
spec:
  targets:
  - name: bar.default.svc.cluster.local
  peers:
  - mtls:
      mode: PERMISSIVE
";
    let out = convert(&read(src), "istio-system");
    assert_eq!(
        values(&out),
        [peer(
            "default",
            "bar-optional-mtls",
            json!({"selector": {"matchLabels": {"app": "bar"}}, "mtls": {"mode": "PERMISSIVE"}})
        )]
    );
}

#[test]
fn book_policy_namespace_wide() {
    let src = "
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: default-namespace-optional-mtls
  namespace: default
spec:
  peers:
  - mtls:
      mode: PERMISSIVE
";
    let out = convert(&read(src), "istio-system");
    assert_eq!(
        values(&out),
        [peer(
            "default",
            "default",
            json!({"mtls": {"mode": "PERMISSIVE"}})
        )]
    );
    assert_eq!(warnings(&out).len(), 1, "{:?}", warnings(&out));
    assert!(warnings(&out)[0].contains("named \"default\""));
}

const BAR_PORT_81: &str = "
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: bar-require-mtls-no-port-81
  namespace: default
spec:
  targets:
  - name: bar.default.svc.cluster.local
  peers:
  - mtls:
      mode: STRICT
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  # The book gives both policies the same name; Kubernetes would keep only the second.
  name: bar-permissive-mtls-port-81
  namespace: default
spec:
  targets:
  - name: bar.default.svc.cluster.local
    ports:
    - name: http-healthcheck
  peers:
  - mtls:
      mode: PERMISSIVE
";

#[test]
fn book_policy_pair_excluding_a_named_port_needs_the_service() {
    let input = read(BAR_PORT_81);
    // Without the Service, the port name cannot become a number: the port-level
    // policy is left out rather than applied to every port.
    let out = convert(&input, "istio-system");
    assert_eq!(
        values(&out),
        [peer(
            "default",
            "bar-require-mtls-no-port-81",
            json!({"selector": {"matchLabels": {"app": "bar"}}, "mtls": {"mode": "STRICT"}})
        )]
    );
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("\"http-healthcheck\" is given by name"),
        "{}",
        w[0]
    );

    // With the Service, both merge into one PeerAuthentication (the current API would
    // otherwise honour only the older of two for the same workloads).
    let bar = Service {
        spec: ServiceSpec {
            selector: [
                ("app".to_string(), "bar".to_string()),
                ("tier".to_string(), "web".to_string()),
            ]
            .into(),
            ports: vec![
                ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("http-healthcheck".into()),
                    port: 81,
                    target_port: Some(IntOrString::Int(8081)),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
        status: None,
    };
    let mut opts = ConvertOptions::new("istio-system");
    opts.services.push(KnownService {
        namespace: "default".into(),
        name: "bar".into(),
        service: bar,
    });
    let out = convert_with(&input, &opts);
    assert_eq!(
        values(&out),
        [peer(
            "default",
            "bar-require-mtls-no-port-81",
            json!({
                "selector": {"matchLabels": {"app": "bar", "tier": "web"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"8081": {"mode": "PERMISSIVE"}},
            })
        )]
    );
    assert_eq!(out.resources[0].sources.len(), 2);
    assert!(warnings(&out).is_empty(), "{:?}", warnings(&out));
    // Both legacy resources show the merged result.
    let deps: Vec<&Diagnostic> = out
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("removed in Istio 1.6"))
        .collect();
    assert_eq!(deps.len(), 2);
    assert!(deps.iter().all(|d| d.message.contains("portLevelMtls")));
}

#[test]
fn book_mesh_policies() {
    let permissive = "
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: mesh-wide-optional-mtls
spec:
  peers:
  - mtls:
      mode: PERMISSIVE
";
    let out = convert(&read(permissive), "istio-system");
    assert_eq!(
        values(&out),
        [peer(
            "istio-system",
            "default",
            json!({"mtls": {"mode": "PERMISSIVE"}})
        )]
    );
    assert_eq!(
        warnings(&out).len(),
        1,
        "the name: Istio only honoured `default`"
    );

    let strict = "
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls: {}
";
    let res = read(strict);
    assert_eq!(res[0].namespace, "", "cluster-scoped");
    let out = convert(&res, "mesh-root");
    assert_eq!(
        values(&out),
        [peer(
            "mesh-root",
            "default",
            json!({"mtls": {"mode": "STRICT"}})
        )]
    );
    assert!(warnings(&out).is_empty());
}

const END_USER_AUTH: &str = r#"
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: end-user-auth
  namespace: default
spec:
  targets:
  - name: bar
  peers:
  - mtls: {}
  origins:
  - jwt:
      issuer: "https://securetoken.google.com"
      audiences:
      - "bar"
      jwksUri: "https://www.googleapis.com/oauth2/v1/certs"
      jwt_headers:
      - "x-goog-iap-jwt-assertion"
  principalBinding: USE_ORIGIN
"#;

#[test]
fn book_policy_with_end_user_jwt() {
    let out = convert(&read(END_USER_AUTH), "istio-system");
    let sel = json!({"matchLabels": {"app": "bar"}});
    let expected = [
        peer(
            "default",
            "end-user-auth",
            json!({"selector": sel, "mtls": {"mode": "STRICT"}}),
        ),
        json!({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": "end-user-auth", "namespace": "default"},
        "spec": {"selector": sel, "jwtRules": [{
            "issuer": "https://securetoken.google.com",
            "audiences": ["bar"],
            "jwksUri": "https://www.googleapis.com/oauth2/v1/certs",
            "fromHeaders": [{"name": "x-goog-iap-jwt-assertion"}],
        }]}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "end-user-auth-require-jwt", "namespace": "default"},
            "spec": {"selector": sel, "action": "DENY",
                "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}}),
    ];
    for want in &expected {
        let got = out.find(
            want["kind"].as_str().unwrap(),
            "default",
            want["metadata"]["name"].as_str().unwrap(),
        );
        assert_eq!(got.map(|c| &c.value), Some(want));
    }
    assert_eq!(out.resources.len(), 3);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("requestPrincipals"), "{}", w[0]);
}

#[test]
fn book_policy_typos_are_reported() {
    // As printed: `target:` (for `targets`) and a truncated `USE_ORIGI`.
    let (res, diags) = read_legacy_documents(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: end-user-auth\n  namespace: default\nspec:\n  target:\n  - name: bar\n  principalBinding: USE_ORIGI\n",
        Some("book.yaml"),
    );
    assert!(res.is_empty());
    assert_eq!(diags.len(), 1);
    assert!(diags[0].is_error());
    assert_eq!(
        diags[0].path.as_ref().unwrap().to_string(),
        "spec.principalBinding"
    );
    assert_eq!(diags[0].line, Some(9));

    let (res, diags) = read_legacy_documents(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  target:\n  - name: bar\n  peers: [{mtls: {}}]\n",
        None,
    );
    assert_eq!(res[0].namespace, "default");
    assert_eq!(
        shown(&diags),
        ["line 5: warning: Policy default/p: spec.target: unknown field, ignored"]
    );
}

#[test]
fn jwt_trigger_rules_ports_and_optional_origins() {
    let src = r#"
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: productpage-mtls-with-jwt
  namespace: frod
spec:
  targets:
  - name: productpage
    ports:
    - number: 9000
  peers:
  - mtls:
  origins:
  - jwt:
      issuer: "https://securetoken.google.com"
      jwks_uri: "https://www.googleapis.com/oauth2/v1/certs"
      jwtParams: [token]
      trigger_rules:
      - excluded_paths:
        - exact: /health_check
        - prefix: /status/
      - includedPaths:
        - suffix: .admin
"#;
    let out = convert(&read(src), "istio-system");
    let pa = out
        .find("PeerAuthentication", "frod", "productpage-mtls-with-jwt")
        .unwrap();
    assert_eq!(
        pa.value["spec"],
        json!({"selector": {"matchLabels": {"app": "productpage"}}, "portLevelMtls": {"9000": {"mode": "STRICT"}}})
    );
    let ra = out
        .find("RequestAuthentication", "frod", "productpage-mtls-with-jwt")
        .unwrap();
    assert_eq!(
        ra.value["spec"]["jwtRules"][0]["fromParams"],
        json!(["token"])
    );
    assert_eq!(
        ra.value["spec"]["jwtRules"][0]["jwksUri"],
        json!("https://www.googleapis.com/oauth2/v1/certs")
    );
    let deny = out
        .find(
            "AuthorizationPolicy",
            "frod",
            "productpage-mtls-with-jwt-require-jwt",
        )
        .unwrap();
    assert_eq!(
        deny.value["spec"]["rules"],
        json!([{
            "from": [{"source": {"notRequestPrincipals": ["*"]}}],
            "to": [
                {"operation": {"notPaths": ["/health_check", "/status/*"], "ports": ["9000"]}},
                {"operation": {"paths": ["*.admin"], "ports": ["9000"]}},
            ],
        }])
    );

    // Optional origins: the token is checked when present, never demanded.
    let optional = src.replace("  origins:", "  originIsOptional: true\n  origins:");
    let out = convert(&read(&optional), "istio-system");
    assert!(out
        .find("RequestAuthentication", "frod", "productpage-mtls-with-jwt")
        .is_some());
    assert!(out
        .resources
        .iter()
        .all(|r| r.kind() != "AuthorizationPolicy"));

    // A regex trigger cannot be expressed: the token becomes required everywhere.
    let regex = src.replace("- suffix: .admin", "- regex: '.*admin'");
    let out = convert(&read(&regex), "istio-system");
    let deny = out
        .find(
            "AuthorizationPolicy",
            "frod",
            "productpage-mtls-with-jwt-require-jwt",
        )
        .unwrap();
    assert_eq!(
        deny.value["spec"]["rules"][0]["to"],
        json!([{"operation": {"ports": ["9000"]}}])
    );
    assert!(warnings(&out).iter().any(|w| w.contains("regex")));
}

#[test]
fn peers_without_mtls_disable_it() {
    let src = "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: productpage-mtls-disable, namespace: frod}\nspec:\n  targets:\n  - name: productpage\n";
    let out = convert(&read(src), "istio-system");
    assert_eq!(
        out.resources[0].value["spec"]["mtls"],
        json!({"mode": "DISABLE"})
    );
    assert!(warnings(&out).iter().any(|w| w.contains("DISABLE")));

    let optional = "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: frod}\nspec:\n  targets: [{name: a}, {name: b}]\n  peers: [{mtls: {allowTls: true}}]\n";
    let out = convert(&read(optional), "istio-system");
    let names: Vec<_> = out.resources.iter().map(|r| r.name().to_string()).collect();
    assert_eq!(names, ["p-a", "p-b"]);
    assert_eq!(
        out.resources[1].value["spec"]["mtls"],
        json!({"mode": "PERMISSIVE"})
    );

    let cross = "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: frod}\nspec:\n  targets: [{name: a.other.svc.cluster.local}]\n  peers: [{mtls: {}}]\n";
    let out = convert(&read(cross), "istio-system");
    assert!(out.resources.is_empty());
    assert!(warnings(&out)[0].contains("\"other\""));
}

#[test]
fn legacy_kinds_and_other_documents() {
    assert_eq!(
        LegacyKind::from_type("rbac.istio.io/v1alpha1", "RBACConfig"),
        Some((LegacyKind::RbacConfig, false))
    );
    assert_eq!(
        LegacyKind::from_type("rbac.istio.io/v1alpha1", "ClusterRbacConfig"),
        Some((LegacyKind::ClusterRbacConfig, true))
    );
    assert_eq!(
        LegacyKind::from_type("security.istio.io/v1", "PeerAuthentication"),
        None
    );
    let (res, diags) = read_legacy_documents("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {namespace: a}\n", None);
    assert!(res.is_empty());
    assert_eq!(shown(&diags), ["line 5: ServiceRole has no metadata.name"]);
    let out = convert(&[], "istio-system");
    assert!(out.resources.is_empty() && out.diagnostics.is_empty());
    assert_eq!(out.to_yaml().unwrap(), "");
}

#[test]
fn yaml_output_reads_back() {
    let mut input = read(FOO_REQUIRE_MTLS);
    input.extend(read(END_USER_AUTH));
    let out = convert(&input, "istio-system");
    let yaml = out.to_yaml().unwrap();
    let docs = crate::yaml::parse_documents(&yaml).unwrap();
    assert_eq!(docs.len(), out.resources.len(), "{yaml}");
    for (doc, res) in docs.iter().zip(&out.resources) {
        let v: serde_json::Value = crate::yaml::from_node(&doc.root, None).unwrap();
        assert_eq!(v, res.value, "{yaml}");
    }
}

//! Auto mTLS and the default PERMISSIVE inbound side, in a mesh with workload identities
//! (the control plane runs a CA) and without.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, cluster, listener, unpack, BASE};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::value::Kind as ValueKind;
use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources};

const WEB: &str = "outbound|9080||web.default.svc.cluster.local";
const WEB_V1: &str = "outbound|9080|v1|web.default.svc.cluster.local";

fn load(extra: &str, identities: bool) -> ConfigSet {
    let set = ConfigSet::load(
        [("base.yaml", BASE), ("extra.yaml", extra)],
        &LoadOptions {
            workload_identities: identities,
            ..LoadOptions::default()
        },
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    set
}

fn run_as(extra: &str, identities: bool, node: &ProxyNode) -> XdsResources {
    let set = load(extra, identities);
    translate(&set, &Registry::build(&set), node)
}

fn run(extra: &str, identities: bool) -> XdsResources {
    run_as(extra, identities, &client())
}

/// (match name, its `tlsMode` value or "" for the catch-all, the TLS context if TLS).
fn matches(c: &Cluster) -> Vec<(String, String, Option<UpstreamTlsContext>)> {
    c.transport_socket_matches
        .iter()
        .map(|m| {
            let mode = m
                .r#match
                .as_ref()
                .and_then(|s| s.fields.get("tlsMode"))
                .and_then(|v| match &v.kind {
                    Some(ValueKind::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let ts = m.transport_socket.as_ref().unwrap();
            let tls = (ts.name == "envoy.transport_sockets.tls").then(|| {
                let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
                    panic!("socket without config")
                };
                unpack::<UpstreamTlsContext>(any)
            });
            (m.name.clone(), mode, tls)
        })
        .collect()
}

fn sans(tls: &UpstreamTlsContext) -> Vec<String> {
    let common = tls.common_tls_context.as_ref().unwrap();
    let Some(ValidationContextType::CombinedValidationContext(v)) = &common.validation_context_type
    else {
        panic!("ISTIO_MUTUAL validates against ROOTCA: {common:?}")
    };
    assert_eq!(
        v.validation_context_sds_secret_config
            .as_ref()
            .unwrap()
            .name,
        "ROOTCA"
    );
    v.default_validation_context
        .as_ref()
        .unwrap()
        .match_typed_subject_alt_names
        .iter()
        .map(|m| format!("{:?}", m.matcher.as_ref().unwrap().match_pattern))
        .collect()
}

#[test]
fn clusters_get_istio_mutual_for_proxied_endpoints_and_plaintext_for_the_rest() {
    let x = run("", true);
    for (name, subset) in [(WEB, ""), (WEB_V1, "v1")] {
        let c = cluster(&x, name);
        assert!(
            c.transport_socket.is_none(),
            "{name}: sockets come per endpoint"
        );
        let m = matches(c);
        assert_eq!(m.len(), 2, "{name}: {m:?}");
        assert_eq!(
            (m[0].0.as_str(), m[0].1.as_str()),
            ("tlsMode-istio", "istio")
        );
        assert_eq!((m[1].0.as_str(), m[1].1.as_str()), ("tlsMode-disabled", ""));
        assert!(m[1].2.is_none(), "the catch-all is plaintext");
        let tls = m[0].2.as_ref().unwrap();
        assert_eq!(
            tls.sni,
            format!("outbound_.9080_.{subset}_.web.default.svc.cluster.local")
        );
        let common = tls.common_tls_context.as_ref().unwrap();
        assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
        assert_eq!(common.alpn_protocols, ["istio-peer-exchange", "istio"]);
        // The web pods run as the namespace's default service account.
        assert_eq!(
            sans(tls),
            [r#"Some(Exact("spiffe://cluster.local/ns/default/sa/default"))"#]
        );
    }
    // Endpoints that run a sidecar carry the metadata the match reads.
    let cla = x.endpoints.iter().find(|e| e.cluster_name == WEB).unwrap();
    let e = &cla.endpoints[0].lb_endpoints[0];
    let md = e.metadata.as_ref().unwrap();
    assert!(md
        .filter_metadata
        .contains_key("envoy.transport_socket_match"));
}

#[test]
fn no_auto_mtls_without_identities_or_when_the_mesh_turns_it_off() {
    let x = run("", false);
    assert!(cluster(&x, WEB).transport_socket_matches.is_empty());
    let mesh_off = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    enableAutoMtls: false
"#;
    let x = run(mesh_off, true);
    assert!(cluster(&x, WEB).transport_socket_matches.is_empty());
}

#[test]
fn a_destination_rule_tls_mode_wins_over_auto_mtls() {
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  trafficPolicy: {tls: {mode: DISABLE}}
"#;
    let x = run(dr, true);
    let db = cluster(&x, "outbound|5432||db.default.svc.cluster.local");
    assert!(db.transport_socket.is_none() && db.transport_socket_matches.is_empty());
    // web has no tls in its rule: auto.
    assert_eq!(cluster(&x, WEB).transport_socket_matches.len(), 2);
}

#[test]
fn explicit_istio_mutual_checks_the_service_identities_unless_told_otherwise() {
    let with_sa = r#"
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: default, labels: {app: db}}
spec: {serviceAccountName: postgres, containers: [{name: db}]}
status: {podIP: 10.1.0.7}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"#;
    let x = run(with_sa, false);
    let db = cluster(&x, "outbound|5432||db.default.svc.cluster.local");
    let Some(ConfigType::TypedConfig(any)) = &db.transport_socket.as_ref().unwrap().config_type
    else {
        panic!("no TLS socket")
    };
    let tls: UpstreamTlsContext = unpack(any);
    assert_eq!(
        sans(&tls),
        [r#"Some(Exact("spiffe://cluster.local/ns/default/sa/postgres"))"#]
    );
    let told = with_sa.replace(
        "{mode: ISTIO_MUTUAL}",
        "{mode: ISTIO_MUTUAL, subjectAltNames: [\"spiffe://cluster.local/ns/ops/sa/pg\"]}",
    );
    let x = run(&told, false);
    let db = cluster(&x, "outbound|5432||db.default.svc.cluster.local");
    let Some(ConfigType::TypedConfig(any)) = &db.transport_socket.as_ref().unwrap().config_type
    else {
        panic!("no TLS socket")
    };
    assert_eq!(
        sans(&unpack(any)),
        [r#"Some(Exact("spiffe://cluster.local/ns/ops/sa/pg"))"#]
    );
}

#[test]
fn peer_authentication_disable_for_the_namespace_or_mesh_turns_auto_mtls_off() {
    let pa = |ns: &str, mode: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
        )
    };
    for (config, auto) in [
        (pa("default", "DISABLE"), false),
        (pa("istio-system", "DISABLE"), false),
        (pa("default", "STRICT"), true),
        (
            format!(
                "{}---\n{}",
                pa("istio-system", "DISABLE"),
                pa("default", "PERMISSIVE")
            ),
            true,
        ),
    ] {
        let x = run(&config, true);
        assert_eq!(
            !cluster(&x, WEB).transport_socket_matches.is_empty(),
            auto,
            "{config}"
        );
    }
}

#[test]
fn service_entries_mesh_external_get_none_mesh_internal_use_entry_identities() {
    let se = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.10}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: default}
spec:
  hosts: [legacy.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  subjectAltNames: ["spiffe://cluster.local/ns/vms/sa/legacy"]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.9.0.2, labels: {security.istio.io/tlsMode: istio}}
  - {address: 10.9.0.3}
"#;
    let x = run(se, true);
    assert!(cluster(&x, "outbound|80||api.example.com")
        .transport_socket_matches
        .is_empty());
    let m = matches(cluster(&x, "outbound|8080||legacy.internal"));
    assert_eq!(m.len(), 2);
    assert_eq!(
        sans(m[0].2.as_ref().unwrap()),
        [
            r#"Some(Exact("spiffe://cluster.local/ns/default/sa/default"))"#,
            r#"Some(Exact("spiffe://cluster.local/ns/vms/sa/legacy"))"#
        ]
    );
    let cla = x
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|8080||legacy.internal")
        .unwrap();
    let tagged: Vec<bool> = cla.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| e.metadata.is_some())
        .collect();
    assert_eq!(
        tagged,
        [true, false],
        "only the labelled endpoint runs a proxy"
    );
}

/// Transport protocols of the virtualInbound chains for `port`.
fn inbound_chains(x: &XdsResources, port: u32) -> Vec<String> {
    listener(x, "virtualInbound")
        .filter_chains
        .iter()
        .filter(|c| c.name == format!("0.0.0.0_{port}"))
        .map(|c| {
            c.filter_chain_match
                .as_ref()
                .unwrap()
                .transport_protocol
                .clone()
        })
        .collect()
}

#[test]
fn inbound_ports_without_peer_authentication_are_permissive_in_a_mesh_with_identities() {
    let mut web = client();
    web.ip = "10.1.0.5".into();
    web.labels = [("app", "web"), ("version", "v1")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-x, namespace: default, labels: {app: web, version: v1}}
spec: {containers: [{name: web}]}
status: {podIP: 10.1.0.5}
"#;
    assert_eq!(
        inbound_chains(&run_as(pod, true, &web), 9080),
        ["tls", "raw_buffer"]
    );
    assert_eq!(inbound_chains(&run_as(pod, false, &web), 9080), [""]);
}

#[test]
fn endpoints_without_a_known_pod_are_plaintext() {
    let bare = r#"
apiVersion: v1
kind: Service
metadata: {name: bare, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: bare, namespace: default}
subsets:
- addresses: [{ip: 10.7.0.1}]
  ports: [{name: http, port: 80}]
"#;
    let x = run(bare, true);
    let cla = x
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|80||bare.default.svc.cluster.local")
        .unwrap();
    assert!(cla.endpoints[0].lb_endpoints[0].metadata.is_none());
    let m = matches(cluster(&x, "outbound|80||bare.default.svc.cluster.local"));
    assert!(
        sans(m[0].2.as_ref().unwrap()).is_empty(),
        "no known identity"
    );
}

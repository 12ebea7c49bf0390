//! The `Sidecar` resource (egress hosts, outboundTrafficPolicy) and consistent-hash
//! routing keys.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;

const OTHER_NS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: far, namespace: elsewhere}
spec:
  ports: [{name: http, port: 9080}]
"#;

#[test]
fn egress_hosts_limit_the_services_a_sidecar_sees() {
    let sidecar = format!(
        "{OTHER_NS}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  egress:\n  - hosts: [\"./web.default.svc.cluster.local\"]\n  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n"
    );
    let x = run(&sidecar);
    assert!(x
        .clusters
        .iter()
        .any(|c| c.name == "outbound|9080||web.default.svc.cluster.local"));
    assert!(!x.clusters.iter().any(|c| c.name.contains("db.default")));
    assert!(!x.clusters.iter().any(|c| c.name.contains("far.elsewhere")));
    vhost(&x, "9080", "block_all");
    // Without the Sidecar everything is visible and unknown hosts pass through.
    let all = run(OTHER_NS);
    assert!(all
        .clusters
        .iter()
        .any(|c| c.name.contains("far.elsewhere")));
    vhost(&all, "9080", "allow_any");
}

#[test]
fn workload_selector_sidecar_wins_over_namespace_default() {
    let yaml = format!(
        "{OTHER_NS}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  egress: [{{hosts: [\"./*\"]}}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: client, namespace: default}}\nspec:\n  workloadSelector: {{labels: {{app: client}}}}\n  egress: [{{hosts: [\"elsewhere/*\"]}}]\n"
    );
    let x = run(&yaml);
    assert!(x.clusters.iter().any(|c| c.name.contains("far.elsewhere")));
    assert!(!x.clusters.iter().any(|c| c.name.contains("web.default")));
}

#[test]
fn consistent_hash_keys_become_route_hash_policies() {
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: far, namespace: elsewhere}
spec:
  host: far.elsewhere.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: session, ttl: 60s}}
"#;
    let x = run(&format!("{OTHER_NS}---{dr}"));
    let vh = vhost(&x, "9080", "far.elsewhere.svc.cluster.local:9080");
    let a = action(&vh.routes[0]);
    match &a.hash_policy[0].policy_specifier {
        Some(PolicySpecifier::Cookie(c)) => {
            assert_eq!(c.name, "session");
            assert_eq!(c.ttl.as_ref().unwrap().seconds, 60);
        }
        other => panic!("{other:?}"),
    }
    // No consistentHash: no hash policy.
    assert!(action(&web_routes(&x)[0]).hash_policy.is_empty());
}

#[test]
fn ingress_listeners_with_default_endpoints() {
    let x = run(r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 9443, protocol: TCP, name: tcp}
    defaultEndpoint: 0.0.0.0:8443
"#);
    let c = cluster(&x, "inbound|9080||");
    let text = format!("{:?}", c.load_assignment);
    assert!(
        text.contains("127.0.0.1") && text.contains("8080"),
        "{text}"
    );
    let c = cluster(&x, "inbound|9443||");
    assert!(format!("{:?}", c.load_assignment).contains("8443"));
    let l = listener(&x, "virtualInbound");
    let ports: Vec<u32> = l
        .filter_chains
        .iter()
        .filter_map(|c| c.filter_chain_match.as_ref())
        .filter_map(|m| m.destination_port.as_ref().map(|p| p.value))
        .collect();
    assert_eq!(ports, [9080, 9443]);
}

#[test]
fn egress_listener_with_port_bind_and_capture_none_really_listens() {
    let yaml = format!(
        r#"{OTHER_NS}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    captureMode: NONE
    hosts: ["elsewhere/*"]
  - port: {{number: 5432, protocol: TCP, name: tcp}}
    bind: 127.0.0.2
    hosts: ["./db.default.svc.cluster.local"]
  - hosts: ["./*"]
"#
    );
    let x = run(&yaml);
    // The port-specific HTTP listener: bound on 127.0.0.1 (NONE's default), only `far`.
    let l = listener(&x, "127.0.0.1_9080");
    assert_eq!(
        l.bind_to_port,
        Some(envoy_types::pb::google::protobuf::BoolValue { value: true })
    );
    let rc = x
        .routes
        .iter()
        .find(|r| r.name == "127.0.0.1:9080")
        .unwrap();
    let hosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(hosts, ["far.elsewhere.svc.cluster.local:9080", "allow_any"]);
    // TCP on a bind address: one listener there, captured (not bound).
    let db = listener(&x, "127.0.0.2_5432");
    assert_eq!(
        db.bind_to_port,
        Some(envoy_types::pb::google::protobuf::BoolValue { value: false })
    );
    // The catch-all (`./*`) still has its own captured listener for db on another address.
    listener(&x, "10.96.0.20_5432");
    // The catch-all still routes `web` on the usual captured 9080 listener, without `far`.
    let rc = x.routes.iter().find(|r| r.name == "9080").unwrap();
    let hosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(hosts, ["web.default.svc.cluster.local:9080", "allow_any"]);
    listener(&x, "0.0.0.0_9080");
}

#[test]
fn a_captured_port_specific_egress_listener_owns_its_port() {
    let yaml = format!(
        r#"{OTHER_NS}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    hosts: ["elsewhere/*"]
  - hosts: ["./*"]
"#
    );
    let x = run(&yaml);
    let rc = x.routes.iter().find(|r| r.name == "9080").unwrap();
    let hosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    // Port 9080 shows only what the port-specific listener lists; `web` is not on it.
    assert_eq!(hosts, ["far.elsewhere.svc.cluster.local:9080", "allow_any"]);
    // `db` (another port) still comes through the catch-all.
    listener(&x, "10.96.0.20_5432");
}

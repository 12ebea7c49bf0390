//! `NodeClass` is honest: nodes that differ only in fields translation does not read get
//! identical output, so the control plane may cache one translation per class.

#![allow(clippy::unwrap_used)]

mod common;

use spar_registry::Registry;
use spar_translate::{translate, NodeClass, ProxyNode};

const NAMED_PORT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: default, labels: {app: api}}
spec: {containers: [{name: api, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.0.0.50}
"#;

fn node(id: &str, labels: &[(&str, &str)]) -> ProxyNode {
    let mut n = ProxyNode::parse_id(id).unwrap();
    for (k, v) in labels {
        n.labels.insert((*k).into(), (*v).into());
    }
    n
}

/// The same node with every field translation does not read changed.
fn twin(n: &ProxyNode, ip: &str) -> ProxyNode {
    let mut t = n.clone();
    t.id = format!("{}-twin", n.id);
    t.ip = ip.to_string();
    t.name = "other-pod".into();
    t.service_account = "someone-else".into();
    t.workload_name = "other-workload".into();
    t.cluster_id = "other-cluster".into();
    t.mesh_id = "other-mesh".into();
    t
}

fn assert_same(extra: &str, a: &ProxyNode, b: &ProxyNode) {
    let set = common::config(extra);
    let reg = Registry::build(&set);
    assert_eq!(NodeClass::of(&reg, a), NodeClass::of(&reg, b));
    assert_eq!(translate(&set, &reg, a), translate(&set, &reg, b));
}

#[test]
fn sidecars_differing_only_in_unread_fields_translate_identically() {
    let a = node(
        "sidecar~10.0.0.1~web-v1-a.default~default.svc.cluster.local",
        &[("app", "web"), ("version", "v1")],
    );
    assert_same("", &a, &twin(&a, "10.0.0.2"));
}

#[test]
fn gateways_differing_only_in_unread_fields_translate_identically() {
    let a = node(
        "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    );
    assert_same("", &a, &twin(&a, "10.0.0.10"));
}

#[test]
fn the_own_workload_is_part_of_the_class() {
    // Found by IP with other labels: the named targetPort resolves, so the class carries it.
    let by_ip = node(
        "sidecar~10.0.0.50~api-1.default~default.svc.cluster.local",
        &[("app", "api")],
    );
    let set = common::config(NAMED_PORT);
    let reg = Registry::build(&set);
    let class = NodeClass::of(&reg, &by_ip);
    assert_eq!(class.own_named_ports.get("web"), Some(&8080));
    assert_same(NAMED_PORT, &by_ip, &twin(&by_ip, "10.0.0.51"));
    // Different labels: a different class.
    let other = node(
        "sidecar~10.0.0.1~web-v1-a.default~default.svc.cluster.local",
        &[("app", "web")],
    );
    assert_ne!(NodeClass::of(&reg, &other), class);
}

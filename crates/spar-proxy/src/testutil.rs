//! Test helpers: xDS resources from Istio YAML through the real translator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources};

use crate::config::Snapshot;

pub fn resources(yaml: &str, node_id: &str, labels: &[(&str, &str)]) -> XdsResources {
    let set = ConfigSet::load([("test.yaml", yaml)], &LoadOptions::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = Registry::build(&set);
    let mut node = ProxyNode::parse_id(node_id).unwrap();
    for (k, v) in labels {
        node.labels.insert(k.to_string(), v.to_string());
    }
    translate(&set, &reg, &node)
}

pub fn sidecar_snapshot(yaml: &str) -> Snapshot {
    let x = resources(
        yaml,
        "sidecar~10.0.0.1~client-1.default~default.svc.cluster.local",
        &[("app", "client")],
    );
    Snapshot::from_xds(&x).unwrap()
}

pub fn gateway_snapshot(yaml: &str) -> Snapshot {
    let x = resources(
        yaml,
        "router~10.0.0.2~gw-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    );
    Snapshot::from_xds(&x).unwrap()
}

/// `httpbin` in namespace `foo`: a Service on port 8000 and its Pod (10.0.0.5, service
/// account `httpbin`), the destination of the authorization tests.
pub const HTTPBIN: &str = r#"
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
"#;

/// httpbin's inbound HTTP connection manager on port 8000, translated from `files`
/// (name, YAML) by the real translator and built as spar proxy builds it.
pub fn httpbin_inbound(
    files: &[(&str, &str)],
) -> std::sync::Arc<crate::config::listener::HttpManager> {
    use crate::config::listener::NetworkFilter;
    let set = ConfigSet::load(files.iter().copied(), &LoadOptions::default());
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let mut node =
        ProxyNode::parse_id("sidecar~10.0.0.5~httpbin-1.foo~foo.svc.cluster.local").unwrap();
    node.labels.insert("app".into(), "httpbin".into());
    let snap = Snapshot::from_xds(&translate(&set, &Registry::build(&set), &node)).unwrap();
    let chain = snap.listeners["virtualInbound"]
        .chains
        .iter()
        .find(|c| c.matcher.destination_port == Some(8000))
        .expect("an inbound chain for port 8000");
    let NetworkFilter::Http(hcm) = &chain.filter else {
        panic!("port 8000 is HTTP")
    };
    hcm.clone()
}

/// A GET-style request head to httpbin.
pub fn head<'a>(
    method: &'a str,
    path: &'a str,
    headers: &'a http::HeaderMap,
) -> crate::route::RequestHead<'a> {
    crate::route::RequestHead {
        method,
        scheme: "http",
        authority: "httpbin.foo:8000",
        path,
        headers,
        random: 0,
    }
}

/// What RBAC sees of `head` arriving at httpbin from 10.0.0.9 over a connection without
/// SNI, with the caller's `principal` and verified JWT payloads.
pub fn rbac_input<'a>(
    head: &'a crate::route::RequestHead<'a>,
    principal: Option<&'a str>,
    jwt: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> crate::http::rbac::RbacInput<'a> {
    crate::http::rbac::RbacInput {
        head: Some(head),
        dst: std::net::SocketAddr::new([10, 0, 0, 5].into(), 8000),
        direct_remote: [10, 0, 0, 9].into(),
        remote: [10, 0, 0, 9].into(),
        peer_principal: principal,
        sni: "",
        jwt,
    }
}

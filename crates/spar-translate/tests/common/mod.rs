//! Helpers shared by the translation tests: config from YAML, a node, lookups by name.

#![allow(clippy::unwrap_used, dead_code)]

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{route, Route, RouteAction, VirtualHost};
use envoy_types::pb::google::protobuf::Any;
use spar_model::{ConfigSet, LoadOptions};
use spar_registry::Registry;
use spar_translate::{translate, ProxyNode, XdsResources};

/// Two services in `default`: `web` (http 9080, v1/v2 deployments) and `db` (tcp 5432).
pub const BASE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, version: v1}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec: {containers: [{name: web}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v2, namespace: default}
spec:
  selector: {matchLabels: {app: web, version: v2}}
  template:
    metadata: {labels: {app: web, version: v2}}
    spec: {containers: [{name: web}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

pub fn config(extra: &str) -> ConfigSet {
    let set = ConfigSet::load(
        [("base.yaml", BASE), ("extra.yaml", extra)],
        &LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    set
}

pub fn client() -> ProxyNode {
    let mut n =
        ProxyNode::parse_id("sidecar~10.0.0.1~client-1.default~default.svc.cluster.local").unwrap();
    n.labels.insert("app".into(), "client".into());
    n
}

pub fn run(extra: &str) -> XdsResources {
    run_for(extra, &client())
}

pub fn run_for(extra: &str, node: &ProxyNode) -> XdsResources {
    let set = config(extra);
    let reg = Registry::build(&set);
    translate(&set, &reg, node)
}

pub fn cluster<'a>(x: &'a XdsResources, name: &str) -> &'a Cluster {
    x.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

pub fn listener<'a>(x: &'a XdsResources, name: &str) -> &'a Listener {
    x.listeners
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

pub fn vhost<'a>(x: &'a XdsResources, route_config: &str, name: &str) -> &'a VirtualHost {
    x.routes
        .iter()
        .find(|r| r.name == route_config)
        .unwrap_or_else(|| panic!("no route config {route_config}"))
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vhost {name}"))
}

pub const WEB: &str = "web.default.svc.cluster.local:9080";

pub fn web_routes(x: &XdsResources) -> &[Route] {
    &vhost(x, "9080", WEB).routes
}

pub fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

pub fn unpack<M: prost::Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice()).unwrap()
}

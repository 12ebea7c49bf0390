use std::sync::Arc;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, Listener as PbListener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::*;
use crate::config::listener::{NetworkFilter, Routes};
use crate::testutil::{gateway_snapshot, resources};

const GATEWAY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: echo, namespace: default}
subsets:
- addresses: [{ip: 127.0.0.1}]
  ports: [{name: http, port: 18080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: echo, port: {number: 8080}}}]
"#;

fn pack<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

#[test]
fn gateway_resources_become_a_snapshot() {
    let snap = gateway_snapshot(GATEWAY);
    assert!(snap.is_ready());
    let no_routes = snap
        .apply(spar_translate::type_url::ROUTE, &[], &[], true)
        .unwrap();
    assert!(
        !no_routes.is_ready(),
        "a listener's route configuration is missing"
    );
    let l = snap
        .listeners
        .get("0.0.0.0_8081")
        .expect("gateway listener");
    assert!(l.bind_to_port);
    assert_eq!(l.address.port(), 8081);
    let NetworkFilter::Http(hcm) = &l.chains[0].filter else {
        panic!("not HTTP")
    };
    assert!(matches!(&hcm.routes, Routes::Rds(n) if n == "http.8081"));
    assert!(hcm.fault && hcm.cors);
    assert!(snap.routes.contains_key("http.8081"));
    let c = "outbound|8080||echo.default.svc.cluster.local";
    let lb = snap.balancers.get(c).expect("balancer");
    assert_eq!(lb.hosts.len(), 1);
    assert_eq!(lb.hosts[0].authority, "127.0.0.1:18080");
    assert!(snap
        .wanted(spar_translate::type_url::ENDPOINT)
        .unwrap()
        .contains(c));
    assert!(snap
        .wanted(spar_translate::type_url::ROUTE)
        .unwrap()
        .contains("http.8081"));
}

#[test]
fn a_required_unknown_filter_is_refused_by_name_and_nothing_changes() {
    let x = resources(
        GATEWAY,
        "router~10.0.0.2~gw-1.istio-system~istio-system.svc.cluster.local",
        &[("istio", "ingressgateway")],
    );
    let store = Store::new(Snapshot::from_xds(&x).unwrap());
    let before = store.load();
    let l: PbListener = x.listeners[0].clone();
    let mut chain = l.filter_chains[0].clone();
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!()
    };
    let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let foo = HttpFilter {
        name: "envoy.filters.http.foo".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/foo.Foo".into(),
            value: vec![],
        })),
        is_optional: false,
        ..Default::default()
    };
    hcm.http_filters.insert(0, foo.clone());
    chain.filters[0] = Filter {
        name: chain.filters[0].name.clone(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
    };
    let bad = PbListener {
        filter_chains: vec![chain.clone()],
        ..l.clone()
    };
    let err = store
        .apply(
            spar_translate::type_url::LISTENER,
            &[pack(&bad)],
            &[],
            false,
        )
        .unwrap_err();
    assert!(err.contains("listener \"0.0.0.0_8081\""), "{err}");
    assert!(err.contains("filter chain 0"), "{err}");
    assert!(
        err.contains("\"envoy.filters.http.foo\" is required and not supported"),
        "{err}"
    );
    assert_eq!(store.load().version, before.version, "nothing changed");

    // Marked optional, it is skipped.
    hcm.http_filters[0] = HttpFilter {
        is_optional: true,
        ..foo
    };
    chain.filters[0].config_type = Some(filter::ConfigType::TypedConfig(pack(&hcm)));
    let l2 = PbListener {
        filter_chains: vec![chain.clone()],
        ..l
    };
    store
        .apply(spar_translate::type_url::LISTENER, &[pack(&l2)], &[], false)
        .unwrap();
    assert!(store.load().version > before.version);
}

#[test]
fn endpoint_updates_rebuild_only_their_cluster() {
    let snap = gateway_snapshot(GATEWAY);
    let c = "outbound|8080||echo.default.svc.cluster.local";
    let other = "BlackHoleCluster";
    let mut la: ClusterLoadAssignment = ClusterLoadAssignment {
        cluster_name: c.into(),
        ..Default::default()
    };
    la.endpoints.clear();
    let next = snap
        .apply(spar_translate::type_url::ENDPOINT, &[pack(&la)], &[], false)
        .unwrap();
    assert!(next.balancers[c].hosts.is_empty());
    assert!(Arc::ptr_eq(&snap.balancers[other], &next.balancers[other]));
    assert_eq!(
        snap.balancers[c].hosts.len(),
        1,
        "the old snapshot is untouched"
    );
    // Removing the cluster drops its balancer.
    let gone = next
        .apply(
            spar_translate::type_url::CLUSTER,
            &[],
            &[c.to_string()],
            false,
        )
        .unwrap();
    assert!(!gone.balancers.contains_key(c));
    let err = snap
        .apply("type.googleapis.com/foo", &[], &[], false)
        .unwrap_err();
    assert!(err.to_string().contains("foo"));
}

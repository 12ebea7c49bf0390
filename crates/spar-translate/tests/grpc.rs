//! Proxyless gRPC: API listeners named as the client's target, gRPC-safe clusters.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::route::v3::route;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

#[test]
fn api_listeners_for_requested_targets() {
    let set = config(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - route:
    - {destination: {host: web, subset: v1}, weight: 90}
    - {destination: {host: web, subset: v2}, weight: 10}
"#,
    );
    let reg = spar_registry::Registry::build(&set);
    let names = vec![
        "web.default.svc.cluster.local:9080".to_string(),
        "nothing.default:80".to_string(),
    ];
    let x = spar_translate::translate_grpc(&set, &reg, &client(), &names);
    assert_eq!(x.listeners.len(), 1);
    let l = &x.listeners[0];
    assert_eq!(l.name, "web.default.svc.cluster.local:9080");
    let hcm: HttpConnectionManager = unpack(
        l.api_listener
            .as_ref()
            .unwrap()
            .api_listener
            .as_ref()
            .unwrap(),
    );
    let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        ["envoy.filters.http.fault", "envoy.filters.http.router"]
    );
    let rc = &x.routes[0];
    assert_eq!(rc.name, l.name);
    assert!(format!("{:?}", rc.virtual_hosts[0].routes[0]).contains("WeightedClusters"));
    assert!(x
        .clusters
        .iter()
        .all(|c| c.lb_policy == LbPolicy::RoundRobin as i32));
    assert!(!x.clusters.iter().any(|c| c.name == "PassthroughCluster"));
    assert!(x
        .clusters
        .iter()
        .any(|c| c.name == "outbound|9080|v1|web.default.svc.cluster.local"));
}

#[test]
fn route_timeouts_are_grpc_deadlines() {
    let set = config(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /pkg.Svc/Slow}}]
    timeout: 1.5s
    route: [{destination: {host: web, subset: v1}}]
  - route: [{destination: {host: web, subset: v2}}]
"#,
    );
    let reg = spar_registry::Registry::build(&set);
    let names = vec!["web:9080".to_string()];
    let x = spar_translate::translate_grpc(&set, &reg, &client(), &names);
    let routes = &x.routes[0].virtual_hosts[0].routes;
    let action = |i: usize| match routes[i].action.as_ref().unwrap() {
        route::Action::Route(a) => a.clone(),
        other => panic!("{other:?}"),
    };
    let slow = action(0);
    let msd = slow
        .max_stream_duration
        .unwrap()
        .max_stream_duration
        .unwrap();
    assert_eq!((msd.seconds, msd.nanos), (1, 500_000_000));
    assert_eq!(
        slow.timeout.unwrap(),
        msd,
        "Envoy's field stays as istiod writes it"
    );
    // No timeout: no deadline (gRPC reads an absent max_stream_duration as none).
    assert_eq!(action(1).max_stream_duration, None);
}

#[test]
fn only_fault_filter_configs_reach_grpc() {
    let set = config(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    route: [{destination: {host: web, subset: v1}}]
"#,
    );
    let reg = spar_registry::Registry::build(&set);
    let names = vec!["web.default:9080".to_string()];
    let x = spar_translate::translate_grpc(&set, &reg, &client(), &names);
    let r = &x.routes[0].virtual_hosts[0].routes[0];
    let keys: Vec<&str> = r
        .typed_per_filter_config
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        ["envoy.filters.http.fault"],
        "gRPC NACKs a CORS config"
    );
    // The same rule for an Envoy sidecar keeps both.
    let envoy = run(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    route: [{destination: {host: web, subset: v1}}]
"#);
    let sidecar = format!("{:?}", envoy.routes);
    assert!(sidecar.contains("envoy.filters.http.cors"));
}

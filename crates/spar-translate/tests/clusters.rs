//! CDS and EDS: cluster kinds, DestinationRule traffic policies, subsets, inbound.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, UpstreamTlsContext,
};

const WEB: &str = "outbound|9080||web.default.svc.cluster.local";
const WEB_V1: &str = "outbound|9080|v1|web.default.svc.cluster.local";

fn kind(c: &envoy_types::pb::envoy::config::cluster::v3::Cluster) -> DiscoveryType {
    match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).unwrap(),
        _ => panic!("no type"),
    }
}

fn ports(x: &spar_translate::XdsResources, cluster: &str) -> Vec<String> {
    let la = x
        .endpoints
        .iter()
        .find(|e| e.cluster_name == cluster)
        .unwrap();
    la.endpoints
        .iter()
        .flat_map(|l| l.lb_endpoints.iter())
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().unwrap().address.as_ref().unwrap() {
                    address::Address::SocketAddress(s) => match s.port_specifier {
                        Some(socket_address::PortSpecifier::PortValue(p)) => {
                            format!("{}:{p}", s.address)
                        }
                        _ => unreachable!(),
                    },
                    _ => unreachable!(),
                }
            }
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn eds_clusters_per_port_and_subset_with_filtered_endpoints() {
    let x = run("");
    let c = cluster(&x, WEB);
    assert_eq!(kind(c), DiscoveryType::Eds);
    assert_eq!(c.eds_cluster_config.as_ref().unwrap().service_name, WEB);
    assert_eq!(c.connect_timeout.as_ref().unwrap().seconds, 10);
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
    assert_eq!(ports(&x, WEB).len(), 3, "two v1 replicas and one v2");
    assert_eq!(ports(&x, WEB_V1).len(), 2);
    assert_eq!(
        ports(&x, "outbound|9080|v2|web.default.svc.cluster.local").len(),
        1
    );
    assert!(cluster(&x, "outbound|5432||db.default.svc.cluster.local")
        .typed_extension_protocol_options
        .is_empty());
    for name in [
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughCluster",
    ] {
        cluster(&x, name);
    }
    assert_eq!(
        kind(cluster(&x, "PassthroughCluster")),
        DiscoveryType::OriginalDst
    );
    assert_eq!(kind(cluster(&x, "BlackHoleCluster")), DiscoveryType::Static);
}

const POLICY: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 200, maxRetries: 3, maxRequestsPerConnection: 5, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50, minHealthPercent: 20}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}
      tls: {mode: ISTIO_MUTUAL}
"#;

#[test]
fn destination_rule_policy_port_level_and_subset_overrides() {
    // The short-host rule of BASE and this FQDN rule are both in `default`: the first
    // read wins, so load this one alone.
    let set = spar_model::ConfigSet::load(
        [
            (
                "base.yaml",
                BASE.split("kind: DestinationRule")
                    .next()
                    .unwrap()
                    .trim_end_matches("apiVersion: networking.istio.io/v1\n"),
            ),
            ("dr.yaml", POLICY),
        ],
        &spar_model::LoadOptions::default(),
    );
    assert!(!set.has_errors(), "{:#?}", set.diagnostics());
    let reg = spar_registry::Registry::build(&set);
    let x = spar_translate::translate(&set, &reg, &client());
    let c = cluster(&x, WEB);
    assert_eq!(
        c.lb_policy,
        LbPolicy::Random as i32,
        "portLevelSettings win"
    );
    assert_eq!(c.connect_timeout.as_ref().unwrap().seconds, 2);
    let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(t.max_connections.as_ref().unwrap().value, 100);
    assert_eq!(t.max_pending_requests.as_ref().unwrap().value, 10);
    assert_eq!(t.max_requests.as_ref().unwrap().value, 200);
    assert_eq!(t.max_retries.as_ref().unwrap().value, 3);
    let o = c.outlier_detection.as_ref().unwrap();
    assert_eq!(o.consecutive_5xx.as_ref().unwrap().value, 7);
    assert_eq!(o.enforcing_consecutive_5xx.as_ref().unwrap().value, 100);
    assert_eq!(o.base_ejection_time.as_ref().unwrap().seconds, 60);
    assert_eq!(o.max_ejection_percent.as_ref().unwrap().value, 50);
    assert_eq!(
        c.common_lb_config
            .as_ref()
            .unwrap()
            .healthy_panic_threshold
            .as_ref()
            .unwrap()
            .value,
        20.0
    );
    assert!(c
        .typed_extension_protocol_options
        .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
    assert!(c.transport_socket.is_none());

    let v1 = cluster(&x, WEB_V1);
    assert_eq!(v1.lb_policy, LbPolicy::RingHash as i32);
    match &v1.lb_config {
        Some(LbConfig::RingHashLbConfig(r)) => {
            assert_eq!(r.minimum_ring_size.as_ref().unwrap().value, 2048)
        }
        other => panic!("{other:?}"),
    }
    // Inherited from the top level.
    assert_eq!(
        v1.circuit_breakers.as_ref().unwrap().thresholds[0]
            .max_connections
            .as_ref()
            .unwrap()
            .value,
        100
    );

    let v2 = cluster(&x, "outbound|9080|v2|web.default.svc.cluster.local");
    assert_eq!(v2.lb_policy, LbPolicy::Maglev as i32);
    let ts = v2.transport_socket.as_ref().unwrap();
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!()
    };
    let tls: UpstreamTlsContext = unpack(any);
    assert_eq!(tls.sni, "outbound_.9080_.v2_.web.default.svc.cluster.local");
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    match common.validation_context_type {
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            assert_eq!(
                c.validation_context_sds_secret_config.unwrap().name,
                "ROOTCA"
            )
        }
        other => panic!("{other:?}"),
    }
}

const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr, namespace: default}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: a.rr.example.com}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any, namespace: default}
spec:
  hosts: ["*.wild.example"]
  ports: [{number: 8443, name: https, protocol: HTTPS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: default}
spec:
  hosts: [db.static]
  addresses: [192.168.9.9]
  ports: [{number: 3306, name: mysql, protocol: MYSQL, targetPort: 13306}]
  resolution: STATIC
  endpoints: [{address: 10.0.9.1, locality: us/east/a, weight: 5}, {address: 10.0.9.2, locality: us/west/b}]
"#;

#[test]
fn service_entry_resolutions_map_to_cluster_types() {
    let x = run(ENTRIES);
    let dns = cluster(&x, "outbound|443||api.example.com");
    assert_eq!(kind(dns), DiscoveryType::StrictDns);
    assert_eq!(dns.load_assignment.as_ref().unwrap().endpoints.len(), 1);
    let rr = cluster(&x, "outbound|80||rr.example.com");
    assert_eq!(kind(rr), DiscoveryType::LogicalDns);
    let la = rr.load_assignment.as_ref().unwrap();
    assert_eq!(
        la.endpoints
            .iter()
            .map(|l| l.lb_endpoints.len())
            .sum::<usize>(),
        1
    );
    let none = cluster(&x, "outbound|8443||*.wild.example");
    assert_eq!(kind(none), DiscoveryType::OriginalDst);
    assert_eq!(none.lb_policy, LbPolicy::ClusterProvided as i32);
    let st = cluster(&x, "outbound|3306||db.static");
    assert_eq!(kind(st), DiscoveryType::Eds);
    assert_eq!(
        ports(&x, "outbound|3306||db.static"),
        ["10.0.9.1:13306", "10.0.9.2:13306"]
    );
    let la = x
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|3306||db.static")
        .unwrap();
    let loc: Vec<(String, u32)> = la
        .endpoints
        .iter()
        .map(|l| {
            (
                l.locality.as_ref().unwrap().zone.clone(),
                l.load_balancing_weight.as_ref().unwrap().value,
            )
        })
        .collect();
    assert_eq!(loc, [("east".to_string(), 5), ("west".to_string(), 1)]);
    // A TCP service with a VIP gets its own listener.
    listener(&x, "192.168.9.9_3306");
}

#[test]
fn inbound_clusters_and_virtual_inbound_for_the_workload() {
    let mut node = client();
    node.labels.insert("app".into(), "web".into());
    node.labels.insert("version".into(), "v1".into());
    let x = run_for("", &node);
    let c = cluster(&x, "inbound|9080||");
    assert_eq!(kind(c), DiscoveryType::Static);
    let l = listener(&x, "virtualInbound");
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .destination_port
            .as_ref()
            .unwrap()
            .value,
        9080
    );
    // The destination comes from the original_dst listener filter; virtualInbound does not
    // hand connections on (it would find the outbound listener of a service on the port).
    assert!(l.use_original_dst.is_none());
    assert!(l
        .listener_filters
        .iter()
        .any(|f| f.name == "envoy.filters.listener.original_dst"));
    // The client itself serves nothing.
    assert!(!run("")
        .clusters
        .iter()
        .any(|c| c.name.starts_with("inbound|")));
}

#[test]
fn tcp_services_get_tcp_proxy_listeners() {
    let x = run("");
    let l = listener(&x, "10.96.0.20_5432");
    assert_eq!(
        l.filter_chains[0].filters[0].name,
        "envoy.filters.network.tcp_proxy"
    );
    let http = listener(&x, "0.0.0.0_9080");
    assert!(!http.bind_to_port.as_ref().unwrap().value);
    let out = listener(&x, "virtualOutbound");
    assert_eq!(
        out.address
            .as_ref()
            .map(|a| format!("{a:?}").contains("15001")),
        Some(true)
    );
}

#[test]
fn tls_ports_route_by_sni_from_virtual_service_tls_rules() {
    let x = run(r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: default}
spec:
  hosts: [a.example.com]
  tls:
  - match: [{sniHosts: [a.example.com], port: 443, destinationSubnets: [10.0.0.0/8]}]
    route:
    - {destination: {host: a.example.com}, weight: 60}
    - {destination: {host: b.example.com}, weight: 40}
"#);
    let l = listener(&x, "0.0.0.0_443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let snis: Vec<Vec<String>> = l
        .filter_chains
        .iter()
        .map(|c| c.filter_chain_match.as_ref().unwrap().server_names.clone())
        .collect();
    assert_eq!(
        snis,
        [
            vec!["a.example.com".to_string()],
            vec!["a.example.com".to_string()],
            vec!["b.example.com".to_string()]
        ]
    );
    let first = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(first.prefix_ranges[0].address_prefix, "10.0.0.0");
    assert_eq!(first.prefix_ranges[0].prefix_len.as_ref().unwrap().value, 8);
}

#[test]
fn ports_without_a_protocol_are_sniffed() {
    let x = run(r#"
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec:
  selector: {app: plain}
  ports: [{port: 7070}]
"#);
    let l = listener(&x, "0.0.0.0_7070");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.http_inspector"
    );
    assert_eq!(l.filter_chains.len(), 2);
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .application_protocols,
        ["http/1.1", "h2c"]
    );
    vhost(&x, "7070", "plain.default.svc.cluster.local:7070");
}

#[test]
fn retry_budget_warmup_and_proxy_protocol() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig;
    use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
    let x = run(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    retryBudget: {percent: 25, minRetryConcurrency: 5}
    proxyProtocol: {version: V2}
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 30s, aggression: 2, minimumPercent: 5}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM, warmupDurationSecs: 10s}
"#);
    let c = cluster(&x, "outbound|9080|v1|web.default.svc.cluster.local");
    let budget = c.circuit_breakers.as_ref().unwrap().thresholds[0]
        .retry_budget
        .as_ref()
        .unwrap();
    assert_eq!(budget.budget_percent.as_ref().unwrap().value, 25.0);
    assert_eq!(budget.min_retry_concurrency.as_ref().unwrap().value, 5);
    let Some(LbConfig::RoundRobinLbConfig(rr)) = &c.lb_config else {
        panic!("{:?}", c.lb_config)
    };
    let ss = rr.slow_start_config.as_ref().unwrap();
    assert_eq!(ss.slow_start_window.as_ref().unwrap().seconds, 30);
    assert_eq!(ss.aggression.as_ref().unwrap().default_value, 2.0);
    assert_eq!(ss.min_weight_percent.as_ref().unwrap().value, 5.0);
    let ts = c.transport_socket.as_ref().unwrap();
    assert_eq!(ts.name, "envoy.transport_sockets.upstream_proxy_protocol");
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        a,
    )) = &ts.config_type
    else {
        panic!()
    };
    let pp: ProxyProtocolUpstreamTransport = unpack(a);
    assert_eq!(pp.config.unwrap().version, 1, "V2");
    assert_eq!(
        pp.transport_socket.unwrap().name,
        "envoy.transport_sockets.raw_buffer"
    );
    // RANDOM has no slow start in Envoy: the subset's warmup is not applied.
    let v2 = cluster(&x, "outbound|9080|v2|web.default.svc.cluster.local");
    assert!(v2.lb_config.is_none(), "{:?}", v2.lb_config);
}

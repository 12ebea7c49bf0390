//! Gateways: listeners from selected Gateway servers, VirtualService binding, TLS.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use spar_translate::ProxyNode;

fn gateway_node(labels: &[(&str, &str)]) -> ProxyNode {
    let mut n = ProxyNode::parse_id(
        "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local",
    )
    .unwrap();
    for (k, v) in labels {
        n.labels.insert(k.to_string(), v.to_string());
    }
    n
}

const GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["shop.example.com"]
    tls: {mode: SIMPLE, serverCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem}
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 5432, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com, other.org]
  gateways: [public]
  http:
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: web, subset: v1}}]
  tls:
  - match: [{sniHosts: [shop.example.com], port: 8443}]
    route: [{destination: {host: web, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: team}
spec:
  hosts: ["*"]
  gateways: [default/public]
  tcp:
  - route: [{destination: {host: db.default.svc.cluster.local, port: {number: 5432}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: not-bound, namespace: default}
spec:
  hosts: [shop.example.com]
  http:
  - route: [{destination: {host: web, subset: v2}}]
"#;

#[test]
fn http_server_with_https_redirect_binds_matching_hosts() {
    let x = run_for(GATEWAYS, &gateway_node(&[("istio", "ingressgateway")]));
    let l = listener(&x, "0.0.0.0_80");
    assert_eq!(l.filter_chains[0].name, "http.80");
    let vh = vhost(&x, "http.80", "shop.example.com:80");
    assert_eq!(vh.domains, ["shop.example.com", "shop.example.com:80"]);
    assert_eq!(vh.require_tls, 2, "httpsRedirect requires TLS (ALL)");
    let routes = &vh.routes;
    assert_eq!(
        routes.len(),
        1,
        "only the VirtualService bound to the gateway"
    );
    assert_eq!(
        action(&routes[0]).cluster_specifier,
        Some(
            envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier::Cluster(
                "outbound|9080|v1|web.default.svc.cluster.local".into()
            )
        )
    );
    // `other.org` is not a host of the server.
    let rc = x.routes.iter().find(|r| r.name == "http.80").unwrap();
    assert_eq!(rc.virtual_hosts.len(), 1);
}

#[test]
fn https_simple_terminates_with_file_certificates() {
    let x = run_for(GATEWAYS, &gateway_node(&[("istio", "ingressgateway")]));
    let l = listener(&x, "0.0.0.0_443");
    let chain = &l.filter_chains[0];
    assert_eq!(chain.name, "https.443.https.public.default");
    assert_eq!(
        chain.filter_chain_match.as_ref().unwrap().server_names,
        ["shop.example.com"]
    );
    let Some(ConfigType::TypedConfig(any)) = &chain.transport_socket.as_ref().unwrap().config_type
    else {
        panic!()
    };
    let tls: DownstreamTlsContext = unpack(any);
    let certs = &tls.common_tls_context.unwrap().tls_certificates;
    assert_eq!(certs.len(), 1);
    assert!(format!("{:?}", certs[0].certificate_chain).contains("/etc/certs/cert.pem"));
    vhost(&x, "https.443.https.public.default", "shop.example.com:443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
}

#[test]
fn tls_passthrough_routes_by_sni_and_tcp_servers_proxy() {
    let x = run_for(GATEWAYS, &gateway_node(&[("istio", "ingressgateway")]));
    let l = listener(&x, "0.0.0.0_8443");
    assert_eq!(l.filter_chains.len(), 1);
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        ["shop.example.com"]
    );
    let tcp = listener(&x, "0.0.0.0_5432");
    assert_eq!(tcp.filter_chains[0].name, "tcp.5432");
}

#[test]
fn gateways_whose_selector_does_not_match_give_nothing() {
    let x = run_for(GATEWAYS, &gateway_node(&[("istio", "egressgateway")]));
    assert!(x.listeners.is_empty());
    assert!(x.routes.is_empty());
    assert!(!x.clusters.is_empty(), "clusters are still sent");
}

#[test]
fn credential_name_secrets_are_served_over_sds() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: secure, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, credentialName: shop-cert}
---
apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: Q0VSVA==
  tls.key: S0VZ
  ca.crt: Q0E=
"#;
    let x = run_for(yaml, &gateway_node(&[("istio", "ingressgateway")]));
    let names: Vec<&str> = x.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop-cert", "shop-cert-cacert"]);
    assert!(
        format!("{:?}", x.secrets[0]).contains("[67, 69, 82, 84]"),
        "CERT"
    );
    let chain = &listener(&x, "0.0.0.0_443").filter_chains[0];
    let Some(ConfigType::TypedConfig(any)) = &chain.transport_socket.as_ref().unwrap().config_type
    else {
        panic!()
    };
    let tls: DownstreamTlsContext = unpack(any);
    assert!(tls.require_client_certificate.unwrap().value);
    assert_eq!(
        tls.common_tls_context
            .unwrap()
            .tls_certificate_sds_secret_configs[0]
            .name,
        "shop-cert"
    );
}

#[test]
fn auto_passthrough_routes_by_cluster_sni() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: eastwest, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
"#;
    let x = run_for(yaml, &gateway_node(&[("istio", "eastwestgateway")]));
    let l = listener(&x, "0.0.0.0_15443");
    let snis: Vec<&str> = l
        .filter_chains
        .iter()
        .map(|c| c.filter_chain_match.as_ref().unwrap().server_names[0].as_str())
        .collect();
    assert!(
        snis.contains(&"outbound_.9080_._.web.default.svc.cluster.local"),
        "{snis:?}"
    );
    assert!(
        snis.contains(&"outbound_.9080_.v2_.web.default.svc.cluster.local"),
        "{snis:?}"
    );
    assert!(
        snis.contains(&"outbound_.5432_._.db.default.svc.cluster.local"),
        "{snis:?}"
    );
}

#[test]
fn servers_with_nothing_bound_get_no_listener() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: lonely, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
"#;
    let x = run_for(yaml, &gateway_node(&[("istio", "ingressgateway")]));
    assert!(x.listeners.is_empty());
}

#[test]
fn virtual_services_sharing_a_gateway_host_merge_specific_routes_first() {
    use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
    let extra = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-api, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web, subset: v2}}]
"#;
    let x = run_for(
        &format!("{GATEWAYS}{extra}"),
        &gateway_node(&[("istio", "ingressgateway")]),
    );
    let routes = &vhost(&x, "http.80", "shop.example.com:80").routes;
    let paths: Vec<_> = routes
        .iter()
        .map(|r| match &r.r#match.as_ref().unwrap().path_specifier {
            Some(PathSpecifier::Prefix(p)) => p.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    // shop's catch-all `/` came first in config, but must not shadow shop-api's `/api`.
    assert_eq!(paths, ["/api", "/"]);
}

#[test]
fn several_certificates_by_credential_names_or_files() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: multi, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["a.example.com"]
    tls: {mode: SIMPLE, credentialNames: [rsa-cert, ecdsa-cert]}
  - port: {number: 8443, name: https-files, protocol: HTTPS}
    hosts: ["b.example.com"]
    tls:
      mode: SIMPLE
      tlsCertificates:
      - {serverCertificate: /certs/rsa.pem, privateKey: /certs/rsa.key}
      - {serverCertificate: /certs/ec.pem, privateKey: /certs/ec.key}
---
apiVersion: v1
kind: Secret
metadata: {name: rsa-cert, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: Q0VSVA==, tls.key: S0VZ}
---
apiVersion: v1
kind: Secret
metadata: {name: ecdsa-cert, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: Q0VSVA==, tls.key: S0VZ}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ab, namespace: istio-system}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [multi]
  http: [{route: [{destination: {host: web.default.svc.cluster.local}}]}]
"#;
    let x = run_for(yaml, &gateway_node(&[("istio", "ingressgateway")]));
    let names: Vec<&str> = x.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ecdsa-cert", "rsa-cert"]);
    let tls = |listener_name: &str| -> DownstreamTlsContext {
        let chain = &listener(&x, listener_name).filter_chains[0];
        let Some(ConfigType::TypedConfig(any)) =
            &chain.transport_socket.as_ref().unwrap().config_type
        else {
            panic!()
        };
        unpack(any)
    };
    let sds: Vec<String> = tls("0.0.0.0_443")
        .common_tls_context
        .unwrap()
        .tls_certificate_sds_secret_configs
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(sds, ["rsa-cert", "ecdsa-cert"]);
    let files = tls("0.0.0.0_8443")
        .common_tls_context
        .unwrap()
        .tls_certificates;
    assert_eq!(files.len(), 2);
    assert!(format!("{:?}", files[1].certificate_chain).contains("/certs/ec.pem"));
}

#[test]
fn connection_managers_allow_websocket_and_gateways_use_the_remote_address() {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let hcm_of = |x: &spar_translate::XdsResources, l: &str| -> HttpConnectionManager {
        let f = &listener(x, l).filter_chains[0].filters[0];
        let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
            panic!("{f:?}")
        };
        unpack(any)
    };
    let gw = hcm_of(
        &run_for(GATEWAYS, &gateway_node(&[("istio", "ingressgateway")])),
        "0.0.0.0_80",
    );
    assert_eq!(gw.upgrade_configs[0].upgrade_type, "websocket");
    assert_eq!(gw.use_remote_address.map(|b| b.value), Some(true));
    let sidecar = hcm_of(&run(""), "0.0.0.0_9080");
    assert_eq!(sidecar.upgrade_configs[0].upgrade_type, "websocket");
    assert_eq!(
        sidecar.use_remote_address, None,
        "sidecars keep the peer's XFF"
    );
}

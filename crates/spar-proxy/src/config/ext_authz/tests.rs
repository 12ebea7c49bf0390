#![allow(clippy::unwrap_used)]

use envoy_types::pb::envoy::config::core::v3::{
    grpc_service, GrpcService, HeaderValue as PbHeader,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings,
};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkProto;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    metadata_matcher::{path_segment::Segment, PathSegment},
    string_matcher::MatchPattern,
    value_matcher, MetadataMatcher, StringMatcher, ValueMatcher,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;

use super::*;

fn what() -> String {
    "listener \"x\": http filter ext_authz".into()
}

fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(s.into())),
        ignore_case: true,
    }
}

fn names(s: &[&str]) -> Option<ListStringMatcher> {
    Some(ListStringMatcher {
        patterns: s.iter().map(|n| exact(n)).collect(),
    })
}

fn enabled_on(filter: &str) -> MetadataMatcher {
    MetadataMatcher {
        filter: filter.into(),
        path: vec![PathSegment {
            segment: Some(Segment::Key(
                "istio_ext_authz_shadow_effective_policy_id".into(),
            )),
        }],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(MatchPattern::Prefix("istio-ext-authz-".into())),
                ignore_case: false,
            })),
        }),
        invert: false,
    }
}

/// What istiod (and Spar's translator) sends for an `envoyExtAuthzHttp` provider.
fn http_proto() -> Proto {
    Proto {
        services: Some(ext_authz::Services::HttpService(HttpService {
            server_uri: Some(HttpUri {
                uri: "http://authz.foo.svc.cluster.local".into(),
                timeout: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 0,
                    nanos: 600_000_000,
                }),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                    "outbound|8000||authz.foo.svc.cluster.local".into(),
                )),
            }),
            path_prefix: "/check".into(),
            authorization_request: Some(AuthorizationRequest {
                headers_to_add: vec![PbHeader {
                    key: "X-Added".into(),
                    value: "yes".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            authorization_response: Some(AuthorizationResponse {
                allowed_upstream_headers: names(&["x-ext-authz-check-result"]),
                allowed_client_headers: names(&["x-ext-authz-check-result"]),
                ..Default::default()
            }),
            ..Default::default()
        })),
        allowed_headers: names(&["x-ext-authz"]),
        filter_enabled_metadata: Some(enabled_on(RBAC)),
        transport_api_version: 2,
        ..Default::default()
    }
}

#[test]
fn an_http_provider_converts_with_istio_defaults() {
    let f = ExtAuthz::from_proto(&http_proto(), &what).unwrap();
    let Service::Http(h) = &f.service else {
        panic!("http")
    };
    assert_eq!(h.cluster, "outbound|8000||authz.foo.svc.cluster.local");
    assert_eq!(h.timeout, Duration::from_millis(600));
    assert_eq!(h.path_prefix, "/check");
    assert_eq!(h.headers_to_add[0].0.as_str(), "x-added");
    assert!(any_matches(
        h.allowed_upstream.as_ref().unwrap(),
        "x-ext-authz-check-result"
    ));
    assert!(h.allowed_client_on_success.is_none());
    assert!(any_matches(
        f.allowed_headers.as_ref().unwrap(),
        "x-ext-authz"
    ));
    assert!(!any_matches(f.allowed_headers.as_ref().unwrap(), "cookie"));
    assert_eq!(f.status_on_error, 403);
    assert!(!f.failure_mode_allow);
    let m = f.enabled_metadata.as_ref().unwrap();
    assert_eq!(m.filter, RBAC);
    assert!(f.with_body.is_none());
    let mut p = http_proto();
    p.with_request_body = Some(BufferSettings {
        max_request_bytes: 4096,
        allow_partial_message: true,
        pack_as_bytes: false,
    });
    let f = ExtAuthz::from_proto(&p, &what).unwrap();
    assert_eq!(
        f.with_body,
        Some(BodySettings {
            max_bytes: 4096,
            allow_partial: true,
            pack_as_bytes: false
        })
    );
}

/// The gRPC authorizer `authz.foo`'s port 9000, as istiod names it.
fn authz_grpc_service() -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: "outbound|9000||authz.foo.svc.cluster.local".into(),
                authority: "authz.foo.svc.cluster.local".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

#[test]
fn a_grpc_provider_converts_with_envoys_default_timeout() {
    let p = Proto {
        services: Some(ext_authz::Services::GrpcService(authz_grpc_service())),
        failure_mode_allow: true,
        status_on_error: Some(HttpStatus { code: 503 }),
        ..Default::default()
    };
    let f = ExtAuthz::from_proto(&p, &what).unwrap();
    let Service::Grpc(g) = &f.service else {
        panic!("grpc")
    };
    assert_eq!(g.cluster, "outbound|9000||authz.foo.svc.cluster.local");
    assert_eq!(g.authority, "authz.foo.svc.cluster.local");
    assert_eq!(g.timeout, DEFAULT_GRPC_TIMEOUT);
    assert!(f.failure_mode_allow);
    assert_eq!(f.status_on_error, 503);
    assert!(f.enabled_metadata.is_none());
}

#[test]
fn what_spar_proxy_does_not_implement_is_refused_by_name() {
    let refused = |p: Proto, field: &str| {
        let e = ExtAuthz::from_proto(&p, &what).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    };
    let mut p = http_proto();
    p.with_request_body = Some(BufferSettings::default());
    refused(p, "max_request_bytes must be greater than 0");
    let mut p = http_proto();
    p.shadow_mode = true;
    refused(p, "shadow_mode");
    let mut p = http_proto();
    p.filter_enabled_metadata = Some(enabled_on("envoy.filters.http.header_to_metadata"));
    refused(p, "header_to_metadata");
    let mut p = http_proto();
    if let Some(ext_authz::Services::HttpService(h)) = &mut p.services {
        h.path_override = "/x".into();
    }
    refused(p, "path_override");
    let p = Proto {
        services: Some(ext_authz::Services::GrpcService(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::GoogleGrpc(Default::default())),
            ..Default::default()
        })),
        ..Default::default()
    };
    refused(p, "google_grpc");
    refused(Proto::default(), "no http_service or grpc_service");
    let mut p = http_proto();
    p.status_on_error = Some(HttpStatus { code: 42 });
    refused(p, "status_on_error");
}

/// What istiod (and Spar's translator) sends on TCP chains for an `envoyExtAuthzGrpc`
/// provider.
fn network_proto() -> NetworkProto {
    NetworkProto {
        stat_prefix: "tcp.".into(),
        grpc_service: Some(authz_grpc_service()),
        failure_mode_allow: true,
        transport_api_version: 2,
        filter_enabled_metadata: Some(enabled_on("envoy.filters.network.rbac")),
        ..Default::default()
    }
}

#[test]
fn the_network_filter_converts_and_refuses_what_it_does_not_implement() {
    let f = NetworkExtAuthz::from_proto(&network_proto(), &what).unwrap();
    assert_eq!(f.stat_prefix, "tcp.");
    assert_eq!(
        f.service.cluster,
        "outbound|9000||authz.foo.svc.cluster.local"
    );
    assert_eq!(f.service.timeout, DEFAULT_GRPC_TIMEOUT);
    assert!(f.failure_mode_allow);
    assert_eq!(
        f.enabled_metadata.as_ref().unwrap().filter,
        "envoy.filters.network.rbac"
    );
    let refused = |p: NetworkProto, field: &str| {
        let e = NetworkExtAuthz::from_proto(&p, &what)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    };
    let mut p = network_proto();
    p.bootstrap_metadata_labels_key = "labels".into();
    refused(p, "bootstrap_metadata_labels_key");
    let mut p = network_proto();
    p.send_tls_alert_on_denial = true;
    refused(p, "send_tls_alert_on_denial");
    // The HTTP RBAC filter's metadata never exists on a connection.
    let mut p = network_proto();
    p.filter_enabled_metadata = Some(enabled_on("envoy.filters.http.rbac"));
    refused(p, "envoy.filters.http.rbac");
    let mut p = network_proto();
    p.grpc_service = None;
    refused(p, "no grpc_service");
}

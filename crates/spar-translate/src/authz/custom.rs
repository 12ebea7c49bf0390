//! `action: CUSTOM` → `envoy.filters.http.ext_authz` (and on TCP chains, for a gRPC
//! authorizer, `envoy.filters.network.ext_authz`), as istiod builds it: an RBAC filter
//! with only *shadow* rules (policies named `istio-ext-authz-ns[..]-policy[..]-rule[..]`)
//! marks the requests the CUSTOM rules select in dynamic metadata, and the ext_authz filter
//! after it runs only for those (`filter_enabled_metadata`). The authorizer is the
//! MeshConfig `extensionProviders` entry the policy names (`envoyExtAuthzHttp` or
//! `envoyExtAuthzGrpc`), reached through its outbound cluster.

use envoy_types::pb::envoy::config::core::v3::{grpc_service, http_uri, GrpcService, HttpUri};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ext_authz, AuthorizationRequest, AuthorizationResponse, BufferSettings, ExtAuthz, HttpService,
};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::r#type::matcher::v3::{ListStringMatcher, MetadataMatcher};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use spar_model::mesh::{ExtensionProvider, Provider, RequestBody};

use super::matchers::{self as m};
use super::AuthzError;
use crate::util::{self, any};

pub const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";
pub const NETWORK_EXT_AUTHZ_FILTER: &str = "envoy.filters.network.ext_authz";
/// The shadow-rule stat prefix; Envoy writes `<prefix>shadow_effective_policy_id`.
pub const SHADOW_PREFIX: &str = "istio_ext_authz_";
/// Policy names of CUSTOM rules start with this.
pub const POLICY_PREFIX: &str = "istio-ext-authz-";

/// The ext_authz filter config for `provider`.
pub fn ext_authz(
    provider: &ExtensionProvider,
) -> Result<envoy_types::pb::google::protobuf::Any, AuthzError> {
    let enabled = enabled(super::RBAC_FILTER);
    let body = |b: &Option<RequestBody>| {
        b.as_ref().map(|b| BufferSettings {
            max_request_bytes: b.max_request_bytes.unwrap_or(0),
            allow_partial_message: b.allow_partial_message.unwrap_or(false),
            pack_as_bytes: b.pack_as_bytes.unwrap_or(false),
        })
    };
    let cfg = match provider.provider() {
        Some(Provider::EnvoyExtAuthzHttp(h)) => {
            let (host, cluster) = target(&h.service, h.port)?;
            let timeout = util::parse_duration(h.timeout.as_deref())
                .unwrap_or_else(|| util::duration(std::time::Duration::from_millis(600)));
            let headers: Vec<String> = h
                .include_request_headers_in_check
                .iter()
                .chain(h.include_headers_in_check.iter())
                .cloned()
                .collect();
            ExtAuthz {
                services: Some(ext_authz::Services::HttpService(HttpService {
                    server_uri: Some(HttpUri {
                        uri: format!("http://{host}"),
                        timeout: Some(timeout),
                        http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
                    }),
                    path_prefix: h.path_prefix.clone().unwrap_or_default(),
                    authorization_request: Some(AuthorizationRequest {
                        headers_to_add: h
                            .include_additional_headers_in_check
                            .iter()
                            .map(
                                |(k, v)| envoy_types::pb::envoy::config::core::v3::HeaderValue {
                                    key: k.clone(),
                                    value: v.clone(),
                                    ..Default::default()
                                },
                            )
                            .collect(),
                        ..Default::default()
                    }),
                    authorization_response: Some(AuthorizationResponse {
                        allowed_upstream_headers: list(&h.headers_to_upstream_on_allow),
                        allowed_client_headers: list(&h.headers_to_downstream_on_deny),
                        allowed_client_headers_on_success: list(&h.headers_to_downstream_on_allow),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                allowed_headers: list(&headers),
                failure_mode_allow: h.fail_open.unwrap_or(false),
                status_on_error: status(h.status_on_error.as_deref()),
                clear_route_cache: h.clear_route_cache.unwrap_or(false),
                with_request_body: body(&h.include_request_body_in_check),
                filter_enabled_metadata: Some(enabled),
                transport_api_version: 2, // V3
                ..Default::default()
            }
        }
        Some(Provider::EnvoyExtAuthzGrpc(g)) => {
            let (host, cluster) = target(&g.service, g.port)?;
            ExtAuthz {
                services: Some(ext_authz::Services::GrpcService(grpc_service(
                    &host,
                    cluster,
                    g.timeout.as_deref(),
                ))),
                failure_mode_allow: g.fail_open.unwrap_or(false),
                status_on_error: status(g.status_on_error.as_deref()),
                clear_route_cache: g.clear_route_cache.unwrap_or(false),
                with_request_body: body(&g.include_request_body_in_check),
                filter_enabled_metadata: Some(enabled),
                transport_api_version: 2,
                ..Default::default()
            }
        }
        _ => return Err(AuthzError::NotExtAuthz(provider.name.clone())),
    };
    Ok(any(&cfg))
}

/// The network ext_authz filter config for `provider` on TCP chains: a gRPC authorizer
/// checks each connection; `None` for an HTTP authorizer (istiod builds none either).
pub fn network_ext_authz(
    provider: &ExtensionProvider,
) -> Result<Option<envoy_types::pb::google::protobuf::Any>, AuthzError> {
    match provider.provider() {
        Some(Provider::EnvoyExtAuthzGrpc(g)) => {
            let (host, cluster) = target(&g.service, g.port)?;
            let cfg = NetworkExtAuthz {
                stat_prefix: "tcp.".to_string(),
                grpc_service: Some(grpc_service(&host, cluster, g.timeout.as_deref())),
                failure_mode_allow: g.fail_open.unwrap_or(false),
                filter_enabled_metadata: Some(enabled(super::NETWORK_RBAC_FILTER)),
                transport_api_version: 2, // V3
                ..Default::default()
            };
            Ok(Some(any(&cfg)))
        }
        Some(Provider::EnvoyExtAuthzHttp(_)) => Ok(None),
        _ => Err(AuthzError::NotExtAuthz(provider.name.clone())),
    }
}

/// Runs the filter only where the shadow RBAC filter `rbac_filter` matched a CUSTOM rule.
fn enabled(rbac_filter: &str) -> MetadataMatcher {
    m::metadata(
        rbac_filter,
        &format!("{SHADOW_PREFIX}shadow_effective_policy_id"),
        m::prefix(POLICY_PREFIX),
    )
}

fn grpc_service(host: &str, cluster: String, timeout: Option<&str>) -> GrpcService {
    GrpcService {
        timeout: util::parse_duration(timeout),
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster,
                authority: host.to_string(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// `service` (`host` or `namespace/host`) and `port` → (host, outbound cluster).
fn target(service: &str, port: Option<u32>) -> Result<(String, String), AuthzError> {
    let host = service.rsplit('/').next().unwrap_or(service).to_string();
    let port = port.ok_or_else(|| AuthzError::ProviderPort(service.to_string()))?;
    let cluster = util::outbound(port, "", &host);
    Ok((host, cluster))
}

fn list(names: &[String]) -> Option<ListStringMatcher> {
    (!names.is_empty()).then(|| ListStringMatcher {
        patterns: names
            .iter()
            .map(|n| {
                let mut s = m::istio_value(n);
                s.ignore_case = true;
                s
            })
            .collect(),
    })
}

/// `statusOnError` (default 403, as Istio).
fn status(code: Option<&str>) -> Option<HttpStatus> {
    let code = code
        .and_then(|c| c.trim().parse::<i32>().ok())
        .unwrap_or(403);
    Some(HttpStatus { code })
}

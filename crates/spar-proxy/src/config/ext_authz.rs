//! `envoy.filters.http.ext_authz` as the proxy keeps it: the authorizer (an HTTP service or
//! an `envoy.service.auth.v3.Authorization` gRPC service, each reached through a cluster of
//! the snapshot), which request headers it is sent, which of its answer's headers go
//! upstream or back to the client, what a failure means, and when the filter runs
//! (`filter_enabled_metadata`, which istiod points at the shadow RBAC filter's result).
//!
//! The subset is what istiod and Spar's translator emit for `action: CUSTOM`. Anything
//! else that changes the decision or the request is refused with a message naming the
//! field, so the listener is NACKed rather than half-enforced.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{grpc_service, http_uri, GrpcService, HttpUri};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ext_authz, ExtAuthz as Proto, HttpService,
};
use envoy_types::pb::envoy::r#type::matcher::v3::ListStringMatcher;
use http::{HeaderName, HeaderValue};

use super::matcher::{duration, StringMatch};
use super::metadata::{MetadataMatch, JWT_AUTHN, RBAC};
use super::ConfigError;

/// Envoy's default timeout of a gRPC authorizer call (`grpc_service.timeout` unset).
pub const DEFAULT_GRPC_TIMEOUT: Duration = Duration::from_millis(200);

/// One ext_authz filter.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    pub service: Service,
    /// Request headers sent to the authorizer besides the ones always sent; `None`: all.
    pub allowed_headers: Option<Vec<StringMatch>>,
    /// An authorizer that fails (unreachable, timeout, 5xx, bad answer) allows the request.
    pub failure_mode_allow: bool,
    /// With `failure_mode_allow`: tell the upstream (`x-envoy-auth-failure-mode-allowed`).
    pub failure_mode_allow_header_add: bool,
    /// The status a client gets when the authorizer fails (and the failure denies).
    pub status_on_error: u16,
    /// Kept for the record: spar proxy selects the route after authorization anyway.
    pub clear_route_cache: bool,
    /// The filter runs only for requests whose dynamic metadata matches (else: always).
    pub enabled_metadata: Option<MetadataMatch>,
    /// At most this much of a denial's body goes to the client (0: all of it).
    pub max_denied_body: usize,
    /// `with_request_body`: the authorizer gets the request body's first bytes.
    pub with_body: Option<BodySettings>,
}

/// `with_request_body` (Istio's `includeRequestBodyInCheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySettings {
    /// The most bytes sent; a longer body is refused (413) unless `allow_partial`.
    pub max_bytes: usize,
    /// A longer body is checked by its first `max_bytes` bytes.
    pub allow_partial: bool,
    /// gRPC: the bytes go in `raw_body` instead of `body`.
    pub pack_as_bytes: bool,
}

#[derive(Debug, Clone)]
pub enum Service {
    Http(HttpAuthz),
    Grpc(GrpcAuthz),
}

/// `http_service`: the request is replayed (no body) to `cluster` at `path_prefix` + path.
#[derive(Debug, Clone)]
pub struct HttpAuthz {
    pub cluster: String,
    pub timeout: Duration,
    pub path_prefix: String,
    /// `authorization_request.headers_to_add`.
    pub headers_to_add: Vec<(HeaderName, HeaderValue)>,
    /// Answer headers of an allowed check set on the upstream request (`None`: none).
    pub allowed_upstream: Option<Vec<StringMatch>>,
    /// Answer headers of a denial sent to the client (`None`: all but `host`; else these
    /// and `:status`, `content-length`, `www-authenticate`, `location`).
    pub allowed_client: Option<Vec<StringMatch>>,
    /// Answer headers of an allowed check added to the client's response (`None`: none).
    pub allowed_client_on_success: Option<Vec<StringMatch>>,
}

/// `grpc_service.envoy_grpc`: `Authorization/Check` on `cluster` with `:authority`.
#[derive(Debug, Clone)]
pub struct GrpcAuthz {
    pub cluster: String,
    pub authority: String,
    pub timeout: Duration,
    /// `grpc_service.initial_metadata`, sent as request headers.
    pub initial_metadata: Vec<(HeaderName, HeaderValue)>,
}

type Ctx<'a> = &'a dyn Fn() -> String;

pub(super) fn unsupported(what: Ctx<'_>, field: &str) -> ConfigError {
    ConfigError::Unsupported {
        what: what(),
        feature: format!("ext_authz field {field} is not supported by spar proxy"),
    }
}

fn invalid(what: Ctx<'_>, why: String) -> ConfigError {
    ConfigError::Invalid { what: what(), why }
}

fn list(
    l: Option<&ListStringMatcher>,
    what: Ctx<'_>,
) -> Result<Option<Vec<StringMatch>>, ConfigError> {
    l.map(|l| {
        l.patterns
            .iter()
            .map(|p| StringMatch::from_proto(p, what))
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()
}

fn header(key: &str, value: &str, what: Ctx<'_>) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let name = HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes())
        .map_err(|_| invalid(what, format!("{key:?} is not a header name")))?;
    let value = HeaderValue::from_str(value).map_err(|_| {
        invalid(
            what,
            format!("header {key}: {value:?} is not a header value"),
        )
    })?;
    Ok((name, value))
}

impl ExtAuthz {
    #[allow(deprecated)]
    pub fn from_proto(p: &Proto, what: Ctx<'_>) -> Result<Self, ConfigError> {
        // Fields that would change what is checked or how the answer is applied.
        let refused: [(bool, &str); 15] = [
            (p.filter_enabled.is_some(), "filter_enabled"),
            (p.deny_at_disable.is_some(), "deny_at_disable"),
            (p.validate_mutations, "validate_mutations"),
            (
                !p.metadata_context_namespaces.is_empty(),
                "metadata_context_namespaces",
            ),
            (
                !p.typed_metadata_context_namespaces.is_empty(),
                "typed_metadata_context_namespaces",
            ),
            (
                !p.route_metadata_context_namespaces.is_empty(),
                "route_metadata_context_namespaces",
            ),
            (
                !p.route_typed_metadata_context_namespaces.is_empty(),
                "route_typed_metadata_context_namespaces",
            ),
            (p.include_peer_certificate, "include_peer_certificate"),
            (
                !p.bootstrap_metadata_labels_key.is_empty(),
                "bootstrap_metadata_labels_key",
            ),
            (p.disallowed_headers.is_some(), "disallowed_headers"),
            (p.include_tls_session, "include_tls_session"),
            (p.encode_raw_headers, "encode_raw_headers"),
            (
                p.decoder_header_mutation_rules.is_some(),
                "decoder_header_mutation_rules",
            ),
            (p.filter_metadata.is_some(), "filter_metadata"),
            (p.shadow_mode, "shadow_mode"),
        ];
        if let Some((_, field)) = refused.iter().find(|(set, _)| *set) {
            return Err(unsupported(what, field));
        }
        let enabled_metadata = p
            .filter_enabled_metadata
            .as_ref()
            .map(|m| MetadataMatch::from_proto_on(m, &[RBAC, JWT_AUTHN], what))
            .transpose()?;
        let mut allowed_headers = list(p.allowed_headers.as_ref(), what)?;
        let service = match &p.services {
            Some(ext_authz::Services::HttpService(h)) => {
                // The deprecated per-service list counts as well.
                if let Some(more) = list(
                    h.authorization_request
                        .as_ref()
                        .and_then(|r| r.allowed_headers.as_ref()),
                    what,
                )? {
                    allowed_headers.get_or_insert_with(Vec::new).extend(more);
                }
                Service::Http(http_service(h, what)?)
            }
            Some(ext_authz::Services::GrpcService(g)) => Service::Grpc(grpc(g, what)?),
            None => {
                return Err(invalid(
                    what,
                    "ext_authz names no http_service or grpc_service".into(),
                ))
            }
        };
        let status_on_error = match &p.status_on_error {
            Some(s) if s.code != 0 => u16::try_from(s.code)
                .ok()
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| {
                    invalid(
                        what,
                        format!("status_on_error {} is not an HTTP status", s.code),
                    )
                })?,
            _ => 403,
        };
        let with_body = match &p.with_request_body {
            None => None,
            Some(b) if b.max_request_bytes == 0 => {
                return Err(invalid(
                    what,
                    "with_request_body.max_request_bytes must be greater than 0 (Istio: set includeRequestBodyInCheck.maxRequestBytes)".into(),
                ))
            }
            Some(b) => Some(BodySettings {
                max_bytes: b.max_request_bytes as usize,
                allow_partial: b.allow_partial_message,
                pack_as_bytes: b.pack_as_bytes,
            }),
        };
        Ok(ExtAuthz {
            with_body,
            service,
            allowed_headers,
            failure_mode_allow: p.failure_mode_allow,
            failure_mode_allow_header_add: p.failure_mode_allow_header_add,
            status_on_error,
            clear_route_cache: p.clear_route_cache,
            enabled_metadata,
            max_denied_body: p.max_denied_response_body_bytes as usize,
        })
    }
}

fn http_service(h: &HttpService, what: Ctx<'_>) -> Result<HttpAuthz, ConfigError> {
    if !h.path_override.is_empty() {
        return Err(unsupported(what, "http_service.path_override"));
    }
    if h.retry_policy.is_some() {
        return Err(unsupported(what, "http_service.retry_policy"));
    }
    let HttpUri {
        timeout,
        http_upstream_type,
        ..
    } = h
        .server_uri
        .as_ref()
        .ok_or_else(|| invalid(what, "http_service has no server_uri".into()))?;
    let cluster = match http_upstream_type {
        Some(http_uri::HttpUpstreamType::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => {
            return Err(invalid(
                what,
                "http_service.server_uri names no cluster".into(),
            ))
        }
    };
    let timeout = timeout
        .as_ref()
        .and_then(duration)
        .ok_or_else(|| invalid(what, "http_service.server_uri has no timeout".into()))?;
    let mut headers_to_add = Vec::new();
    if let Some(r) = &h.authorization_request {
        for v in &r.headers_to_add {
            headers_to_add.push(header(&v.key, &v.value, what)?);
        }
    }
    let resp = h.authorization_response.clone().unwrap_or_default();
    if resp.allowed_upstream_headers_to_append.is_some() {
        return Err(unsupported(
            what,
            "http_service.authorization_response.allowed_upstream_headers_to_append",
        ));
    }
    if resp.dynamic_metadata_from_headers.is_some() {
        return Err(unsupported(
            what,
            "http_service.authorization_response.dynamic_metadata_from_headers",
        ));
    }
    Ok(HttpAuthz {
        cluster,
        timeout,
        path_prefix: h.path_prefix.clone(),
        headers_to_add,
        allowed_upstream: list(resp.allowed_upstream_headers.as_ref(), what)?,
        allowed_client: list(resp.allowed_client_headers.as_ref(), what)?,
        allowed_client_on_success: list(resp.allowed_client_headers_on_success.as_ref(), what)?,
    })
}

pub(super) fn grpc(g: &GrpcService, what: Ctx<'_>) -> Result<GrpcAuthz, ConfigError> {
    let e = match &g.target_specifier {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(e)) => e,
        Some(grpc_service::TargetSpecifier::GoogleGrpc(_)) => {
            return Err(unsupported(
                what,
                "grpc_service.google_grpc (use envoy_grpc)",
            ))
        }
        None => return Err(invalid(what, "grpc_service names no cluster".into())),
    };
    if e.cluster_name.is_empty() {
        return Err(invalid(
            what,
            "grpc_service.envoy_grpc names no cluster".into(),
        ));
    }
    if e.retry_policy.is_some() || g.retry_policy.is_some() {
        return Err(unsupported(what, "grpc_service.retry_policy"));
    }
    let initial_metadata = g
        .initial_metadata
        .iter()
        .map(|h| header(&h.key, &h.value, what))
        .collect::<Result<_, _>>()?;
    Ok(GrpcAuthz {
        cluster: e.cluster_name.clone(),
        authority: if e.authority.is_empty() {
            e.cluster_name.clone()
        } else {
            e.authority.clone()
        },
        timeout: g
            .timeout
            .as_ref()
            .and_then(duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_GRPC_TIMEOUT),
        initial_metadata,
    })
}

/// Whether any matcher of `list` takes `name` (already lower case).
pub fn any_matches(list: &[StringMatch], name: &str) -> bool {
    list.iter().any(|m| m.matches(name))
}

mod network;
pub use network::NetworkExtAuthz;

#[cfg(test)]
mod tests;

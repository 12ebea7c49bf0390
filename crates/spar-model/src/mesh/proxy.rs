//! `ProxyConfig`: the proxy defaults in `defaultConfig` (also the shape of the
//! `proxy.istio.io/config` pod annotation).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TcpKeepalive;

/// The proxy settings Istio puts under `defaultConfig`. The commonly used fields are
/// typed; rarely used ones are kept opaque; anything else is reported as an unknown field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing_service_name: Option<TracingServiceName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_duration: Option<String>,
    /// `host:port` of the xDS server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_refresh_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zipkin_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_udp_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_metrics_service_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_admin_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_auth_policy: Option<AuthenticationPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_config_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat_name_length: Option<i32>,
    /// Worker threads; 0 means one per CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_bootstrap_template_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interception_mode: Option<InterceptionMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sds: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_access_log_service: Option<RemoteService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_metrics_service: Option<RemoteService>,
    /// Environment variables for the proxy (`ISTIO_META_DNS_CAPTURE: "true"`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runtime_values: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_port: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_stat_tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_topology: Option<Topology>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_drain_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_stats_matcher: Option<ProxyStatsMatcher>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_application_until_proxy_starts: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates_pem: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_provider: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_headers: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_flush_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_flush_min_size_kb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_compression: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_settings: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TracingServiceName {
    #[default]
    AppLabelAndNamespace,
    CanonicalNameOnly,
    CanonicalNameAndNamespace,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthenticationPolicy {
    #[default]
    None,
    MutualTls,
    Inherit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InterceptionMode {
    #[default]
    Redirect,
    Tproxy,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForwardClientCertDetails {
    #[default]
    Undefined,
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

/// The legacy, per-proxy tracing settings (`Telemetry` plus extension providers are the
/// current way). At most one tracer is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Tracing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<TracerAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightstep: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datadog: Option<TracerAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stackdriver: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_census_agent: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_path_tag_length: Option<u32>,
    /// Percentage of requests traced, 0.0 to 100.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_settings: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TracerAddress {
    pub address: String,
}

/// A span tag from a literal, an environment variable or a request header (exactly one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CustomTag {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub literal: Option<LiteralTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<NamedTagSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedTagSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LiteralTag {
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NamedTagSource {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RemoteService {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_settings: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
}

/// How a gateway sits behind load balancers (trusted hops, XFCC handling, PROXY protocol).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Topology {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_trusted_proxies: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_client_cert_details: Option<ForwardClientCertDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<Value>,
}

/// Extra proxy stats to expose beyond the default set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyStatsMatcher {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inclusion_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inclusion_suffixes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inclusion_regexps: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProxyImage {
    /// `default`, `debug`, `distroless`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
}

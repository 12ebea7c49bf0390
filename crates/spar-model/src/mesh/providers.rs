//! Extension providers: named external services for tracing, metrics, access logs and
//! external authorization, referred to by `Telemetry`, `AuthorizationPolicy` (CUSTOM)
//! and `defaultProviders`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One named provider. Exactly one of the provider fields must be set (a protobuf
/// `oneof`); [`ExtensionProvider::provider`] returns it and validation reports
/// zero or several.
///
/// `statsd` is a Spar extension, not part of Istio's API: Spar's proxy pushes its
/// metrics to a StatsD/DogStatsD collector when a `Telemetry` resource names such a
/// provider. istiod refuses mesh configs with fields it does not know, so keep it out
/// of a mesh config that istiod also reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtensionProvider {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<EnvoyExtAuthzHttp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_grpc: Option<EnvoyExtAuthzGrpc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<ZipkinProvider>,
    /// Deprecated in Istio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightstep: Option<TracingService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datadog: Option<TracingService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stackdriver: Option<StackdriverProvider>,
    /// Deprecated in Istio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opencensus: Option<OpenCensusProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skywalking: Option<TracingService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opentelemetry: Option<OpenTelemetryProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_file_access_log: Option<EnvoyFileAccessLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_http_als: Option<GrpcAccessLogService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_tcp_als: Option<GrpcAccessLogService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_otel_als: Option<EnvoyOtelAls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsProvider>,
    /// Spar extension (see the type's documentation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd: Option<StatsdProvider>,
}

/// The provider an [`ExtensionProvider`] configures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Provider<'a> {
    EnvoyExtAuthzHttp(&'a EnvoyExtAuthzHttp),
    EnvoyExtAuthzGrpc(&'a EnvoyExtAuthzGrpc),
    Zipkin(&'a ZipkinProvider),
    Lightstep(&'a TracingService),
    Datadog(&'a TracingService),
    Stackdriver(&'a StackdriverProvider),
    OpenCensus(&'a OpenCensusProvider),
    SkyWalking(&'a TracingService),
    OpenTelemetry(&'a OpenTelemetryProvider),
    Prometheus(&'a PrometheusProvider),
    EnvoyFileAccessLog(&'a EnvoyFileAccessLog),
    EnvoyHttpAls(&'a GrpcAccessLogService),
    EnvoyTcpAls(&'a GrpcAccessLogService),
    EnvoyOtelAls(&'a EnvoyOtelAls),
    Sds(&'a SdsProvider),
    Statsd(&'a StatsdProvider),
}

impl ExtensionProvider {
    /// Every provider field that is set, with its JSON name, in declaration order.
    pub fn providers(&self) -> Vec<(&'static str, Provider<'_>)> {
        let mut out = Vec::new();
        macro_rules! push {
            ($($field:ident => $name:literal, $variant:ident;)*) => {$(
                if let Some(p) = &self.$field {
                    out.push(($name, Provider::$variant(p)));
                }
            )*};
        }
        push! {
            envoy_ext_authz_http => "envoyExtAuthzHttp", EnvoyExtAuthzHttp;
            envoy_ext_authz_grpc => "envoyExtAuthzGrpc", EnvoyExtAuthzGrpc;
            zipkin => "zipkin", Zipkin;
            lightstep => "lightstep", Lightstep;
            datadog => "datadog", Datadog;
            stackdriver => "stackdriver", Stackdriver;
            opencensus => "opencensus", OpenCensus;
            skywalking => "skywalking", SkyWalking;
            opentelemetry => "opentelemetry", OpenTelemetry;
            prometheus => "prometheus", Prometheus;
            envoy_file_access_log => "envoyFileAccessLog", EnvoyFileAccessLog;
            envoy_http_als => "envoyHttpAls", EnvoyHttpAls;
            envoy_tcp_als => "envoyTcpAls", EnvoyTcpAls;
            envoy_otel_als => "envoyOtelAls", EnvoyOtelAls;
            sds => "sds", Sds;
            statsd => "statsd", Statsd;
        }
        out
    }

    /// The configured provider, when exactly one is set.
    pub fn provider(&self) -> Option<Provider<'_>> {
        match self.providers().as_slice() {
            [(_, p)] => Some(*p),
            _ => None,
        }
    }
}

impl Provider<'_> {
    /// `(service, port)` for providers that talk to a remote service.
    pub fn endpoint(&self) -> Option<(&str, Option<u32>)> {
        match self {
            Provider::EnvoyExtAuthzHttp(p) => Some((&p.service, p.port)),
            Provider::EnvoyExtAuthzGrpc(p) => Some((&p.service, p.port)),
            Provider::Zipkin(p) => Some((&p.service, p.port)),
            Provider::Lightstep(p) | Provider::Datadog(p) | Provider::SkyWalking(p) => {
                Some((&p.service, p.port))
            }
            Provider::OpenCensus(p) => Some((&p.service, p.port)),
            Provider::OpenTelemetry(p) => Some((&p.service, p.port)),
            Provider::EnvoyHttpAls(p) | Provider::EnvoyTcpAls(p) => Some((&p.service, p.port)),
            Provider::EnvoyOtelAls(p) => Some((&p.service, p.port)),
            Provider::Statsd(p) => Some((&p.service, p.port)),
            Provider::Stackdriver(_)
            | Provider::Prometheus(_)
            | Provider::EnvoyFileAccessLog(_)
            | Provider::Sds(_) => None,
        }
    }
}

/// External authorization over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvoyExtAuthzHttp {
    /// `[namespace/]hostname` of the authorization service.
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_route_cache: Option<bool>,
    /// HTTP status returned when the service cannot be reached (default 403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    /// Deprecated in Istio in favour of `includeRequestHeadersInCheck`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include_headers_in_check: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<RequestBody>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// External authorization over gRPC (`envoy.service.auth.v3.Authorization`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvoyExtAuthzGrpc {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_route_cache: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<RequestBody>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_partial_message: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_as_bytes: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceContextOption {
    #[default]
    UseB3,
    UseB3WithW3cPropagation,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ZipkinProvider {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_64bit_trace_id: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_context_option: Option<TraceContextOption>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

/// The `service`/`port` shape shared by Lightstep, Datadog and SkyWalking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TracingService {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StackdriverProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_number_of_attributes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_number_of_annotations: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_number_of_message_events: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<StackdriverLogging>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StackdriverLogging {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OpenCensusProvider {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceAttributeEnrichment {
    #[default]
    IstioCanonical,
    OtelSemanticConventions,
}

/// OpenTelemetry tracing (OTLP over gRPC by default, over HTTP when `http` is set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OpenTelemetryProvider {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_detectors: Option<ResourceDetectors>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_attribute_enrichment: Option<ServiceAttributeEnrichment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynatrace_sampler: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpService {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcService {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initial_metadata: Vec<HttpHeader>,
}

/// A header with a literal value or one taken from an environment variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_name: Option<String>,
}

/// Which resource detectors are on; each is an empty object when enabled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceDetectors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynatrace: Option<Value>,
}

/// Prometheus metrics (scraped from the proxy); no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PrometheusProvider {}

/// Access logs written to a file (`/dev/stdout` for the container log).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvoyFileAccessLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omit_empty_values: Option<bool>,
}

/// A text format string (Envoy's `%COMMAND%` syntax) or JSON labels (exactly one for
/// file logs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogFormat {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Map<String, Value>>,
}

/// Envoy's gRPC access log service (HTTP or TCP variant).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcAccessLogService {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_state_objects_to_log: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_request_headers_to_log: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_response_headers_to_log: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_response_trailers_to_log: Vec<String>,
}

/// Access logs sent as OpenTelemetry logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvoyOtelAls {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// A secret discovery service other than the proxy's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SdsProvider {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// Spar extension: a StatsD (UDP) metrics sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatsdProvider {
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Prepended to every metric name (default `spar`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

//! Route configurations as the proxy uses them: virtual hosts, routes, matches and actions,
//! converted from `RouteConfiguration` protos. The route's Istio source
//! (`metadata.filter_metadata["istio"]["config"]`) is kept for `spar ctl explain`.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::matcher::{PerMillion, StringMatch};

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub ignore_port_in_host_matching: bool,
}

#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-cased, as Envoy compares them.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub require_tls: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: Action,
    /// The Istio resource this route came from (`/apis/.../namespaces/ns/.../name`).
    pub istio_config: Option<String>,
    pub headers: HeaderOps,
    pub fault: Option<Fault>,
    pub cors: Option<Cors>,
}

/// Header edits: (name, value, append) to add, and names to remove.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    /// Append to an existing value instead of overwriting it.
    pub append: bool,
    /// Only when absent (`ADD_IF_ABSENT`).
    pub if_absent: bool,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    SeparatedPrefix(String),
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
    pub runtime_fraction: Option<PerMillion>,
}

#[derive(Debug, Clone)]
pub enum HeaderMatch {
    String(StringMatch),
    Present(bool),
    /// `range_match`: start inclusive, end exclusive.
    Range(i64, i64),
}

#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    pub name: String,
    pub matcher: HeaderMatch,
    pub invert: bool,
    pub treat_missing_as_empty: bool,
}

#[derive(Debug, Clone)]
pub struct QueryMatcher {
    pub name: String,
    /// `None`: present.
    pub matcher: Option<StringMatch>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Arc<Forward>),
    Redirect(Redirect),
    Direct { status: u16, body: bytes::Bytes },
}

#[derive(Debug, Clone)]
pub enum Target {
    Cluster(String),
    Weighted(Vec<WeightedTarget>),
    /// A cluster named by a request header.
    Header(http::HeaderName),
}

#[derive(Debug, Clone)]
pub struct WeightedTarget {
    pub cluster: String,
    pub weight: u32,
    pub headers: HeaderOps,
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub target: Target,
    /// `None`: no timeout (Envoy's 0); Envoy's default 15s when the proto says nothing.
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: Option<String>,
    pub mirrors: Vec<Mirror>,
    pub hash_policy: Vec<HashPolicy>,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub cluster: String,
    pub fraction: PerMillion,
}

#[derive(Debug, Clone)]
pub enum HashPolicy {
    Header { name: String, terminal: bool },
    Cookie { name: String, terminal: bool },
    SourceIp { terminal: bool },
    Query { name: String, terminal: bool },
}

#[derive(Debug, Clone, Default)]
pub struct RetryOn {
    pub five_xx: bool,
    pub gateway_error: bool,
    pub connect_failure: bool,
    pub reset: bool,
    pub refused_stream: bool,
    pub retriable_status_codes: bool,
    pub retriable_4xx: bool,
    /// gRPC statuses in response headers: cancelled, deadline-exceeded, internal,
    /// resource-exhausted, unavailable.
    pub grpc: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub on: RetryOn,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub status_codes: Vec<u16>,
    pub base_interval: Duration,
    pub max_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub strip_query: bool,
    pub https: bool,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub enum Abort {
    Http(u16),
    Grpc(u32),
}

#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub delay: Option<(Duration, PerMillion)>,
    pub abort: Option<(Abort, PerMillion)>,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Vec<StringMatch>,
    pub methods: String,
    pub headers: String,
    pub expose: String,
    pub max_age: String,
    pub credentials: bool,
}

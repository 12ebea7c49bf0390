//! Istio's validating-webhook rules: what the CRD schema cannot say.
//!
//! One file per kind. Each `check_*` function receives the typed spec and a [`Ctx`]
//! and returns diagnostics whose paths start at `spec` (`spec.http[0].route[1].weight`);
//! the loader fills in file, line and resource. Messages say what is wrong and, where
//! it helps, what to write instead.

mod authorization_policy;
mod common;
mod destination_rule;
mod envoy_filter;
mod extensions;
mod gateway;
mod peer_authentication;
mod proxy_config;
mod request_authentication;
mod service_entry;
mod sidecar;
mod telemetry;
mod virtual_service;
mod workload;

use crate::FieldPath;

/// What a rule may need beyond the spec.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Namespace of the resource (defaulted by the loader).
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Ctx<'_> {
    /// The root of every path a rule reports.
    pub fn spec(&self) -> FieldPath {
        FieldPath::root().field("spec")
    }
}

pub use authorization_policy::check as check_authorization_policy;
pub use destination_rule::check as check_destination_rule;
pub use envoy_filter::check as check_envoy_filter;
pub use extensions::{check_traffic_extension, check_wasm};
pub use gateway::check as check_gateway;
pub use peer_authentication::check as check_peer_authentication;
pub use proxy_config::check as check_proxy_config;
pub use request_authentication::check as check_request_authentication;
pub use service_entry::check as check_service_entry;
pub use sidecar::check as check_sidecar;
pub use telemetry::check as check_telemetry;
pub use virtual_service::check as check_virtual_service;
pub use workload::{check_entry as check_workload_entry, check_group as check_workload_group};

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions.
pub(crate) const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

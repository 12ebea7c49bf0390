//! DestinationRule settings applied to a cluster once it is built: the retry budget,
//! warmup (Envoy's slow start), and the PROXY protocol on upstream connections.

use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers::thresholds, cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    proxy_protocol_config, transport_socket, ProxyProtocolConfig, RuntimeDouble, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::r#type::v3::Percent;
use spar_model::istio::types::{LoadBalancerSettings, ProxyProtocol, RetryBudget};

use crate::util::{any, parse_duration, u32v};

pub const PROXY_PROTOCOL_SOCKET: &str = "envoy.transport_sockets.upstream_proxy_protocol";
pub const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";

/// `retryBudget` → the circuit breaker's retry budget (Envoy then ignores `max_retries`).
/// Istio's defaults: 20% of active requests, at least 3 concurrent retries.
pub fn retry_budget(c: &mut Cluster, budget: Option<&RetryBudget>) {
    let Some(b) = budget else {
        return;
    };
    let Some(t) = c
        .circuit_breakers
        .as_mut()
        .and_then(|cb| cb.thresholds.first_mut())
    else {
        return;
    };
    t.retry_budget = Some(thresholds::RetryBudget {
        budget_percent: Some(Percent {
            value: b.percent.unwrap_or(20.0),
        }),
        min_retry_concurrency: Some(u32v(b.min_retry_concurrency.unwrap_or(3))),
        budget_interval: parse_duration(b.budget_interval.as_deref()),
    });
}

/// `warmup` / `warmupDurationSecs` → slow start for ROUND_ROBIN and LEAST_REQUEST (the only
/// policies Envoy ramps); the minimum weight defaults to 10% and aggression to 1.0.
pub fn warmup(c: &mut Cluster, lb: Option<&LoadBalancerSettings>) {
    let Some(lb) = lb else {
        return;
    };
    let (window, aggression, minimum) = match &lb.warmup {
        Some(w) => (
            parse_duration(w.duration.as_deref()),
            w.aggression,
            w.minimum_percent,
        ),
        None => (
            parse_duration(lb.warmup_duration_secs.as_deref()),
            None,
            None,
        ),
    };
    let Some(window) = window else {
        return;
    };
    let slow_start = cluster::SlowStartConfig {
        slow_start_window: Some(window),
        aggression: Some(RuntimeDouble {
            default_value: aggression.unwrap_or(1.0),
            runtime_key: String::new(),
        }),
        min_weight_percent: Some(Percent {
            value: minimum.unwrap_or(10.0),
        }),
    };
    if c.lb_policy == cluster::LbPolicy::RoundRobin as i32 {
        c.lb_config = Some(cluster::LbConfig::RoundRobinLbConfig(
            cluster::RoundRobinLbConfig {
                slow_start_config: Some(slow_start),
            },
        ));
    } else if c.lb_policy == cluster::LbPolicy::LeastRequest as i32 {
        c.lb_config = Some(cluster::LbConfig::LeastRequestLbConfig(
            cluster::LeastRequestLbConfig {
                slow_start_config: Some(slow_start),
                ..Default::default()
            },
        ));
    }
}

/// Envoy's plaintext transport socket, named.
pub fn raw_buffer() -> TransportSocket {
    TransportSocket {
        name: RAW_BUFFER_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(
            &RawBuffer {},
        ))),
    }
}

/// `proxyProtocol` → the upstream PROXY protocol socket wrapping whatever socket the cluster
/// had (plaintext when none).
pub fn proxy_protocol(c: &mut Cluster, pp: Option<&ProxyProtocol>) {
    let Some(pp) = pp else {
        return;
    };
    let version = match pp.version.map(|v| v.as_str()) {
        Some("V2") => proxy_protocol_config::Version::V2,
        _ => proxy_protocol_config::Version::V1,
    };
    let inner = c.transport_socket.take().unwrap_or_else(raw_buffer);
    let wrapped = ProxyProtocolUpstreamTransport {
        config: Some(ProxyProtocolConfig {
            version: version as i32,
            ..Default::default()
        }),
        transport_socket: Some(inner),
        ..Default::default()
    };
    c.transport_socket = Some(TransportSocket {
        name: PROXY_PROTOCOL_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&wrapped))),
    });
}

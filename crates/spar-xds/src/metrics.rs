//! Control-plane metrics with Istio's names, in Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Istio's short type name: `cds`, `eds`, `lds`, `rds`, `sds`.
    pub r#type: String,
}

/// A count that only goes up but keeps Istio's exact name: prometheus-client appends
/// `_total` to counters, which would break dashboards written for istiod.
pub type Count = Gauge<u64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    /// `pilot_xds_pushes{type}`: responses sent.
    pub pushes: Family<TypeLabel, Count>,
    /// `pilot_proxy_convergence_time`: from a config change to the proxy's ACK, seconds.
    pub convergence: Histogram,
    /// `pilot_xds`: connected proxies.
    pub connected: Gauge,
    /// `pilot_total_xds_rejects{type}`: NACKs.
    pub rejects: Family<TypeLabel, Count>,
    /// `spar_config_errors`: config files whose latest version is invalid (the last good one
    /// stays in force).
    pub config_errors: Gauge,
    /// `pilot_jwks_resolver_network_fetch_success_total`: `jwksUri` fetches that returned a
    /// usable key set (istiod's name).
    pub jwks_fetch_ok: Count,
    /// `pilot_jwks_resolver_network_fetch_fail_total`: `jwksUri` fetches that failed
    /// (network, HTTP status, timeout, or a body that is not a JWKS; istiod's name).
    pub jwks_fetch_failed: Count,
    /// `spar_jwks_unresolved`: `jwksUri`s in the config never fetched successfully, whose
    /// rules reject every token until they are.
    pub jwks_unresolved: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let pushes = Family::<TypeLabel, Count>::default();
        let convergence = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0,
        ]);
        let connected = Gauge::default();
        let rejects = Family::<TypeLabel, Count>::default();
        let config_errors = Gauge::default();
        registry.register(
            "pilot_xds_pushes",
            "xDS responses sent, by type",
            pushes.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a config change to the proxy accepting it",
            convergence.clone(),
        );
        registry.register("pilot_xds", "Connected xDS clients", connected.clone());
        registry.register(
            "pilot_total_xds_rejects",
            "xDS responses rejected by proxies (NACKs), by type",
            rejects.clone(),
        );
        registry.register(
            "spar_config_errors",
            "Config files whose latest version is invalid; the last good version is served",
            config_errors.clone(),
        );
        let jwks_fetch_ok = Count::default();
        let jwks_fetch_failed = Count::default();
        let jwks_unresolved = Gauge::default();
        registry.register(
            "pilot_jwks_resolver_network_fetch_success_total",
            "RequestAuthentication jwksUri fetches that returned a usable key set",
            jwks_fetch_ok.clone(),
        );
        registry.register(
            "pilot_jwks_resolver_network_fetch_fail_total",
            "RequestAuthentication jwksUri fetches that failed; the last good keys stay in force",
            jwks_fetch_failed.clone(),
        );
        registry.register(
            "spar_jwks_unresolved",
            "jwksUris never fetched successfully; their rules reject every token",
            jwks_unresolved.clone(),
        );
        Metrics {
            registry,
            pushes,
            convergence,
            connected,
            rejects,
            config_errors,
            jwks_fetch_ok,
            jwks_fetch_failed,
            jwks_unresolved,
        }
    }

    /// Counts a push of `type_url` (`pilot_xds_pushes`) on the counter kept in `cached`,
    /// looked up in the family only the first time.
    pub fn count_push(&self, cached: &mut Option<Count>, type_url: &str) {
        cached
            .get_or_insert_with(|| self.pushes.get_or_create(&Self::label(type_url)).clone())
            .inc();
    }

    pub fn label(type_url: &str) -> TypeLabel {
        TypeLabel {
            r#type: crate::resources::short_name(type_url).to_string(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

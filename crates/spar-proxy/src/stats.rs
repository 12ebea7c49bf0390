//! Counters the proxy keeps and the admin server prints in Prometheus text format
//! (Envoy's stat names where one exists).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Response;

use crate::http::body::{Body, Flag, Flags};

#[derive(Debug, Default)]
pub struct Stats {
    pub downstream_cx_total: AtomicU64,
    /// Connections open now.
    pub active_cx: AtomicU64,
    pub downstream_rq_total: AtomicU64,
    /// By status class 1xx..5xx.
    pub downstream_rq_xx: [AtomicU64; 5],
    pub upstream_rq_retry: AtomicU64,
    pub no_filter_chain_match: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_bytes_sent: AtomicU64,
    pub tcp_bytes_received: AtomicU64,
    /// By [`Flag::ALL`] index.
    pub flags: [AtomicU64; 11],
    pub config_accepted: AtomicU64,
    pub config_rejected: AtomicU64,
    pub detection: Detection,
    /// Network ext_authz outcomes, over all such filters.
    pub ext_authz_tcp: NetworkExtAuthzStats,
}

/// Envoy's network ext_authz counters (`ext_authz.<stat_prefix>.*`).
#[derive(Debug, Default)]
pub struct NetworkExtAuthzStats {
    pub total: AtomicU64,
    pub ok: AtomicU64,
    pub denied: AtomicU64,
    pub error: AtomicU64,
    pub failure_mode_allowed: AtomicU64,
    pub cx_closed: AtomicU64,
    /// Connections the filter skipped (`filter_enabled_metadata` did not match).
    pub disabled: AtomicU64,
}

/// Protocol detection outcomes on sniffed listeners (Envoy's `tls_inspector.*`,
/// `http_inspector.*` and `downstream_pre_cx_timeout`).
#[derive(Debug, Default)]
pub struct Detection {
    pub tls_found: AtomicU64,
    pub tls_not_found: AtomicU64,
    pub http11_found: AtomicU64,
    pub http2_found: AtomicU64,
    pub http_not_found: AtomicU64,
    pub pre_cx_timeout: AtomicU64,
}

impl Detection {
    pub fn record(&self, d: &crate::listener::inspect::Detected) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match d.tls_found {
            Some(true) => bump(&self.tls_found),
            Some(false) => bump(&self.tls_not_found),
            None => {}
        }
        match d.http {
            Some("http/1.1") => bump(&self.http11_found),
            Some("h2c") => bump(&self.http2_found),
            Some(_) => bump(&self.http_not_found),
            None => {}
        }
        if d.timed_out {
            bump(&self.pre_cx_timeout);
        }
    }
}

impl Stats {
    pub fn record(&self, r: &Response<Body>) {
        let class = (r.status().as_u16() / 100) as usize;
        if (1..=5).contains(&class) {
            self.downstream_rq_xx[class - 1].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(f) = r.extensions().get::<Flags>() {
            for flag in &f.0 {
                if let Some(i) = Flag::ALL.iter().position(|x| x == flag) {
                    self.flags[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn flag_count(&self, flag: Flag) -> u64 {
        Flag::ALL
            .iter()
            .position(|x| *x == flag)
            .map_or(0, |i| self.flags[i].load(Ordering::Relaxed))
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, labels: &str, v: u64| {
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{labels} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "envoy_http_downstream_cx_total",
            "",
            get(&self.downstream_cx_total),
        );
        let _ = writeln!(out, "# TYPE envoy_server_total_connections gauge");
        let _ = writeln!(
            out,
            "envoy_server_total_connections {}",
            get(&self.active_cx)
        );
        counter(
            &mut out,
            "envoy_http_downstream_rq_total",
            "",
            get(&self.downstream_rq_total),
        );
        for (i, c) in self.downstream_rq_xx.iter().enumerate() {
            counter(
                &mut out,
                "envoy_http_downstream_rq_xx",
                &format!("{{envoy_response_code_class=\"{}\"}}", i + 1),
                get(c),
            );
        }
        counter(
            &mut out,
            "envoy_cluster_upstream_rq_retry",
            "",
            get(&self.upstream_rq_retry),
        );
        counter(
            &mut out,
            "envoy_listener_no_filter_chain_match",
            "",
            get(&self.no_filter_chain_match),
        );
        counter(
            &mut out,
            "envoy_tcp_downstream_cx_total",
            "",
            get(&self.tcp_connections),
        );
        counter(
            &mut out,
            "envoy_tcp_downstream_cx_tx_bytes_total",
            "",
            get(&self.tcp_bytes_sent),
        );
        counter(
            &mut out,
            "envoy_tcp_downstream_cx_rx_bytes_total",
            "",
            get(&self.tcp_bytes_received),
        );
        for (f, c) in Flag::ALL.iter().zip(&self.flags) {
            counter(
                &mut out,
                "spar_response_flags_total",
                &format!("{{flag=\"{}\"}}", f.name()),
                get(c),
            );
        }
        let d = &self.detection;
        for (name, c) in [
            ("envoy_tls_inspector_tls_found", &d.tls_found),
            ("envoy_tls_inspector_tls_not_found", &d.tls_not_found),
            ("envoy_http_inspector_http11_found", &d.http11_found),
            ("envoy_http_inspector_http2_found", &d.http2_found),
            ("envoy_http_inspector_http_not_found", &d.http_not_found),
            (
                "envoy_listener_downstream_pre_cx_timeout",
                &d.pre_cx_timeout,
            ),
        ] {
            counter(&mut out, name, "", get(c));
        }
        let e = &self.ext_authz_tcp;
        for (name, c) in [
            ("envoy_ext_authz_tcp_total", &e.total),
            ("envoy_ext_authz_tcp_ok", &e.ok),
            ("envoy_ext_authz_tcp_denied", &e.denied),
            ("envoy_ext_authz_tcp_error", &e.error),
            (
                "envoy_ext_authz_tcp_failure_mode_allowed",
                &e.failure_mode_allowed,
            ),
            ("envoy_ext_authz_tcp_cx_closed", &e.cx_closed),
            ("envoy_ext_authz_tcp_disabled", &e.disabled),
        ] {
            counter(&mut out, name, "", get(c));
        }
        counter(
            &mut out,
            "spar_xds_config_accepted_total",
            "",
            get(&self.config_accepted),
        );
        counter(
            &mut out,
            "spar_xds_config_rejected_total",
            "",
            get(&self.config_rejected),
        );
        out
    }
}

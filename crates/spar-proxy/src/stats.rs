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

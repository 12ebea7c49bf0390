//! `spar proxy`, the data plane. It interprets the subset of Envoy's xDS configuration
//! that Spar's translator (and istiod) emit for sidecars and gateways, and carries the
//! traffic: listeners with filter-chain matching, the HTTP connection manager with
//! routes, faults, CORS and retries, TCP proxying, and load balancing that picks the same
//! hosts as Envoy.
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | domain types from xDS protos (`TryFrom`-style, typed errors), the immutable [`config::Snapshot`] and its [`config::Store`] |
//! | [`route`] | pure route selection (`select`), shared with `spar ctl explain` |
//! | [`lb`] | hosts, balancers (round robin, least request, random, ring hash, Maglev), outlier detection |
//! | [`listener`] | binding listeners, inspecting the first bytes, choosing a filter chain |
//! | [`http`] | the HTTP connection manager: route, filters, upstream with retries and timeouts |
//! | [`tcp`] | the TCP proxy |
//! | [`admin`] | the admin server (`/ready`, `/config_dump`, `/stats/prometheus`, ...) |
//! | [`xds_handler`] | applies the xDS client's updates to the store (NACK text on refusal) |

pub mod admin;
mod admin_certs;
pub mod config;
pub mod forward;
pub mod http;
pub mod identity;
pub mod lb;
pub mod listener;
pub mod proxy;
pub mod route;
pub mod stats;
pub mod tcp;
#[cfg(test)]
mod testutil;
pub mod tls;
pub mod xds_handler;

pub use config::{Snapshot, Store};
pub use proxy::{Proxy, ProxyOptions};
pub use xds_handler::ProxyHandler;

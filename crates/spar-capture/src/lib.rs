//! Transparent capture for a sidecar, the way Istio does it in a pod: iptables `nat` rules
//! that REDIRECT the workload's outbound TCP to the proxy's outbound port (15001) and its
//! inbound TCP to the inbound port (15006), leaving the proxy's own traffic alone (matched
//! by its uid/gid); and [`original_dst`], which tells the proxy where a redirected
//! connection was going.
//!
//! [`rules`] is pure (golden-tested); [`apply`] and [`clean`] run `iptables-restore` /
//! `iptables`, optionally inside a network namespace (`ip netns exec`).

mod original_dst;
mod rules;
mod run;

pub use original_dst::{original_dst, original_dst_fd};
pub use rules::{restore_text, rules, rules_for, CaptureConfig, Family, InboundPorts, CHAINS};
pub use run::{apply, clean, CaptureError};

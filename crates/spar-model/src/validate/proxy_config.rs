//! Webhook rules for `ProxyConfig`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::ProxyConfig;

pub fn check(spec: &ProxyConfig, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

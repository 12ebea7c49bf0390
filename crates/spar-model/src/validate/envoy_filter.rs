//! Webhook rules for `EnvoyFilter`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::EnvoyFilter;

pub fn check(spec: &EnvoyFilter, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

//! Webhook rules for `Sidecar`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::Sidecar;

pub fn check(spec: &Sidecar, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

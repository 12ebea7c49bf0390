//! Webhook rules for `Telemetry`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::Telemetry;

pub fn check(spec: &Telemetry, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

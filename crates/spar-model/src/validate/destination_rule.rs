//! Webhook rules for `DestinationRule`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::DestinationRule;

pub fn check(spec: &DestinationRule, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

//! Webhook rules for `Gateway`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::Gateway;

pub fn check(spec: &Gateway, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

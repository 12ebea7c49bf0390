//! Webhook rules for `VirtualService`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::VirtualService;

pub fn check(spec: &VirtualService, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

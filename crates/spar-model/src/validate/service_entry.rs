//! Webhook rules for `ServiceEntry`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::ServiceEntry;

pub fn check(spec: &ServiceEntry, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

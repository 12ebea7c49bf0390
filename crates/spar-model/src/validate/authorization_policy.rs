//! Webhook rules for `AuthorizationPolicy`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::AuthorizationPolicy;

pub fn check(spec: &AuthorizationPolicy, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

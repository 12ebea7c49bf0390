//! Webhook rules for `RequestAuthentication`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::RequestAuthentication;

pub fn check(spec: &RequestAuthentication, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

//! Webhook rules for `PeerAuthentication`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::PeerAuthentication;

pub fn check(spec: &PeerAuthentication, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

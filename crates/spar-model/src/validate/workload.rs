//! Webhook rules for `WorkloadEntry` and `WorkloadGroup`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{WorkloadEntry, WorkloadGroup};

pub fn check_entry(spec: &WorkloadEntry, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

pub fn check_group(spec: &WorkloadGroup, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

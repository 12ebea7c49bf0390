//! Webhook rules for `WasmPlugin` and `TrafficExtension`.

use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{TrafficExtension, WasmPlugin};

pub fn check_wasm(spec: &WasmPlugin, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

pub fn check_traffic_extension(spec: &TrafficExtension, ctx: &Ctx) -> Vec<Diagnostic> {
    let _ = (spec, ctx);
    Vec::new()
}

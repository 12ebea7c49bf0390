//! Cross-resource analysis of Istio configuration, as `istioctl analyze` does it.
//!
//! [`analyze`] takes a validated [`ConfigSet`] and returns findings, each a
//! [`Diagnostic`] with a stable code from [`codes`]. The analyzers are pure functions of
//! the input; checks that depend on which workloads exist run only when the input
//! describes workloads (Deployments, Pods, WorkloadEntries).

pub mod codes;
mod gateways;
mod index;
mod routing;
mod security;
mod services;

use spar_model::{ConfigSet, Diagnostic, FieldPath};

use crate::codes::Code;
use crate::index::Index;

/// Runs every analyzer over `set`.
pub fn analyze(set: &ConfigSet) -> Vec<Diagnostic> {
    let idx = Index::build(set);
    let mut out = Vec::new();
    routing::analyze(&idx, &mut out);
    gateways::analyze(&idx, &mut out);
    services::analyze(&idx, &mut out);
    security::analyze(&idx, &mut out);
    out.sort_by(|a, b| (&a.file, a.line, &a.code).cmp(&(&b.file, b.line, &b.code)));
    out.dedup();
    out
}

/// A finding about `r` at `path`.
fn finding(
    code: Code,
    r: &spar_model::resource::Resource,
    path: FieldPath,
    message: String,
) -> Diagnostic {
    let line = r.line_of(&path);
    Diagnostic::new(code.severity, path, message)
        .with_code(code.code)
        .with_resource(r.reference())
        .with_location(Some(&r.origin.file), Some(line))
}

#[cfg(test)]
mod tests;

//! Validation of YAML trees against Istio's CRD (OpenAPI v3) schemas.
//!
//! This is what a Kubernetes API server checks before Istio's webhook sees a resource:
//! types, required fields, enums, lengths, patterns, ranges, list-map uniqueness, Istio's
//! "at most one of" `oneOf`s and its CEL rules (`x-kubernetes-validations`, re-implemented
//! in Rust by rule text, see `cel.rs`). Messages use the API server's wording so that
//! Istio users recognise them.
//!
//! Scalars are read as our deserializer reads them (`crate::yaml`): a string field takes any
//! non-null scalar, integer and number fields also take quoted numbers, a boolean must be a
//! YAML boolean. Unknown fields are skipped here; the deserializer reports them.

mod cel;
mod check;
mod go;
mod model;
mod value;

use std::sync::OnceLock;

use crate::istio::SCHEMA_JSON;
use crate::yaml::Node;
use crate::{Diagnostic, FieldPath};

use model::Schemas;

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        // The schema is compiled in and a unit test loads it, so this cannot fail at run time.
        Schemas::parse(SCHEMA_JSON).expect("compiled-in istio/schema.json is valid")
    })
}

/// Checks `spec` of an Istio `kind` against its CRD schema. `base` is the path of `spec`
/// in its resource (usually `spec`). Returns no diagnostics for a kind that is not Istio's.
pub fn validate_spec(kind: &str, spec: &Node, base: &FieldPath) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(k) = schemas().by_kind.get(kind) {
        check::Walker::new(&mut out).check(&k.spec, spec, &mut base.clone());
    }
    out
}

/// The diagnostic for a `resource` of `kind` that has no `spec` at all, if its CRD requires
/// one (`spec: Required value`, at the resource's line).
pub fn missing_spec(kind: &str, base: &FieldPath, resource: &Node) -> Option<Diagnostic> {
    let k = schemas().by_kind.get(kind)?;
    k.spec_required.then(|| {
        Diagnostic::error(base.clone(), "Required value")
            .with_location(None, Some(resource.mark.line))
    })
}

/// Whether `kind` has a schema here.
pub fn has_schema(kind: &str) -> bool {
    schemas().by_kind.contains_key(kind)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod istio_cases;

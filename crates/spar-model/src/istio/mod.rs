//! Istio resource types generated from Istio's CRD schemas (see `tools/gen_istio_model.py`).
//!
//! - [`types`]: serde types for each kind's `spec`, with Istio's exact JSON field names.
//!   Scalars and objects are `Option`s because presence matters to validation (proto3
//!   `has()`); lists and maps are plain and read `null` as empty.
//! - [`KINDS`]: every kind with the API versions its CRD serves, so a resource written
//!   against any served version (`networking.istio.io/v1alpha3`, `.../v1beta1`, `.../v1`)
//!   is accepted.
//! - `schema.json`: the description-free OpenAPI schemas that [`crate::schema`] checks.

mod kinds;
pub mod types;

pub use kinds::KINDS;
pub use types::*;

/// The structural schemas of every kind's `spec`, as the generator wrote them.
pub(crate) const SCHEMA_JSON: &str = include_str!("schema.json");

/// An Istio kind and the versions of its API group that serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub group: &'static str,
    pub kind: &'static str,
    /// Served versions, newest first.
    pub versions: &'static [&'static str],
    pub storage_version: &'static str,
}

impl KindInfo {
    /// Whether `api_version` (`group/version`) serves this kind.
    pub fn serves(&self, api_version: &str) -> bool {
        api_version
            .split_once('/')
            .is_some_and(|(g, v)| g == self.group && self.versions.contains(&v))
    }

    /// The newest served `group/version`.
    pub fn preferred_api_version(&self) -> String {
        format!(
            "{}/{}",
            self.group,
            self.versions
                .first()
                .copied()
                .unwrap_or(self.storage_version)
        )
    }
}

/// The kind named `kind`, if Istio has one.
pub fn kind_info(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// The kind `kind` served at `api_version`; `None` if the pair is not an Istio resource.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    kind_info(kind).filter(|k| k.serves(api_version))
}

#[cfg(test)]
mod tests;

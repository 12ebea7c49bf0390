//! Spar's model of Istio configuration.
//!
//! Everything Spar reads passes through here: YAML/JSON text becomes positioned
//! [`yaml::Node`] trees, then typed resources with Istio's exact field names, which are
//! checked against Istio's CRD schemas and the rules of Istio's validating webhook.
//! This crate does no I/O; `spar-config` reads files and directories.

pub mod config_set;
pub mod diag;
pub mod duration;
pub mod path;
pub mod resource;
pub mod yaml;

pub use diag::{Diagnostic, ResourceRef, Severity};
pub use path::{FieldPath, PathSeg};
pub mod istio;
pub mod k8s;
pub mod kind;
pub mod legacy;
pub mod load;
pub mod mesh;
pub mod names;
pub mod schema;
pub mod validate;

pub use config_set::ConfigSet;
pub use kind::Kind;
pub use load::{load_text, LoadOptions, Loaded};
pub use resource::{Body, ObjectMeta, Resource};

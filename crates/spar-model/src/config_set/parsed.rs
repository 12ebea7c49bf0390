//! One config file read on its own: the first half of [`ConfigSet::load`].
//!
//! Parsing (YAML, schema, typed bodies, webhook rules) is per file and is nearly all of the
//! cost of loading; what needs every file (duplicates, the mesh config, the 2019 APIs) is
//! [`ConfigSet::assemble`]. Splitting the two lets a watcher keep each file's parse and
//! redo only the files that changed.

use std::sync::Arc;

use crate::diag::Diagnostic;
use crate::load::{load_text, LoadOptions};
use crate::mesh::MeshConfig;
use crate::resource::{Body, Resource};
use crate::yaml::parse_documents;
use crate::FieldPath;

#[cfg(doc)]
use super::ConfigSet;

/// What one file holds, read alone: its resources, or (for `mesh.yaml` and friends) a bare
/// MeshConfig, with the diagnostics found while reading it.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    name: Arc<str>,
    pub(super) content: Content,
    pub(super) diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone)]
pub(super) enum Content {
    Resources(Vec<Arc<Resource>>),
    /// A bare MeshConfig file; `None` when it is invalid (its diagnostics say why).
    Mesh(Option<Box<MeshConfig>>),
}

impl ParsedFile {
    /// Reads one file's text; `name` is what diagnostics and origins call it.
    pub fn parse(name: &str, text: &str, opts: &LoadOptions) -> ParsedFile {
        if is_mesh_file(name) && !looks_like_resources(text) {
            let mut diagnostics = Vec::new();
            let mesh = load_mesh_file(name, text, &mut diagnostics);
            return ParsedFile {
                name: Arc::from(name),
                content: Content::Mesh(mesh.map(Box::new)),
                diagnostics,
            };
        }
        let loaded = load_text(name, text, opts);
        ParsedFile {
            name: Arc::from(name),
            content: Content::Resources(loaded.resources.into_iter().map(Arc::new).collect()),
            diagnostics: loaded.diagnostics,
        }
    }

    /// [`ParsedFile::parse`] for every `(name, text)` pair on every core. Results come back in
    /// the input's order, so the outcome does not depend on timing.
    pub fn parse_all(files: &[(&str, &str)], opts: &LoadOptions) -> Vec<ParsedFile> {
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(files.len())
            .max(1);
        if workers == 1 {
            return files
                .iter()
                .map(|(name, text)| ParsedFile::parse(name, text, opts))
                .collect();
        }
        let chunk = files.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(name, text)| ParsedFile::parse(name, text, opts))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(results) => results,
                    // A panic in a worker is a bug; surface it where it happened.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's resources (none for a bare MeshConfig file).
    pub fn resources(&self) -> &[Arc<Resource>] {
        match &self.content {
            Content::Resources(r) => r,
            Content::Mesh(_) => &[],
        }
    }

    /// What reading this file alone found (cross-file findings come from assembling).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether this is a bare MeshConfig file (`mesh.yaml` holding no `kind`).
    pub fn is_mesh_config(&self) -> bool {
        matches!(self.content, Content::Mesh(_))
    }

    /// Drops the positioned YAML trees ([`Resource::drop_source_tree`]) of resources that
    /// assembling does not read again, for a holder that keeps parsed files to serve, not
    /// to analyse. The `istio` ConfigMap keeps its tree: its `data.mesh` is read (with
    /// lines) when a set is assembled.
    pub fn drop_source_trees(&mut self) {
        if let Content::Resources(resources) = &mut self.content {
            for r in resources.iter_mut() {
                if !is_mesh_configmap(r) && r.has_source_tree() {
                    Arc::make_mut(r).drop_source_tree();
                }
            }
        }
    }
}

/// The ConfigMap [`ConfigSet::assemble`] reads the mesh config from.
pub(super) fn is_mesh_configmap(r: &Resource) -> bool {
    matches!(&r.body, Body::ConfigMap(cm) if r.meta.name == "istio" && cm.data.contains_key("mesh"))
}

/// Files named like this that hold no `kind` are read as a bare MeshConfig, as Istio's
/// `--meshConfig` flag reads `mesh.yaml`.
fn is_mesh_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(
        base,
        "mesh.yaml" | "mesh.yml" | "meshconfig.yaml" | "meshconfig.yml" | "mesh.json"
    )
}

fn looks_like_resources(text: &str) -> bool {
    parse_documents(text).is_ok_and(|docs| docs.iter().any(|d| d.root.get("kind").is_some()))
}

fn load_mesh_file(name: &str, text: &str, diags: &mut Vec<Diagnostic>) -> Option<MeshConfig> {
    let mut local = Vec::new();
    let mesh = super::mesh_result(
        crate::mesh::parse_mesh_config(text),
        FieldPath::root(),
        &mut local,
    );
    for d in local {
        diags.push(d.with_location(Some(name), None));
    }
    mesh
}

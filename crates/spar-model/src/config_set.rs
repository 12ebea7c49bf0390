//! All resources read from a set of files, checked together: duplicates, the mesh-wide
//! `MeshConfig`, and the 2019 APIs converted to today's.
//!
//! Loading has two steps, both public: [`ParsedFile::parse`] reads one file alone (nearly
//! all of the cost), and [`ConfigSet::assemble`] puts parsed files together in file-name
//! order (the mesh config from `mesh.yaml` or the `istio` ConfigMap, duplicates across
//! files, the 2019 APIs, diagnostics sorted). [`ConfigSet::load`] is both, parsing on
//! every core; a watcher keeps each file's [`ParsedFile`] and re-parses only what changed.

mod parsed;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity};
use crate::kind::Kind;
use crate::load::{load_node, LoadOptions, Loaded};
use crate::mesh::MeshConfig;
use crate::resource::{Body, Resource};
use crate::yaml::node_from_json;
use crate::FieldPath;

use parsed::Content;
pub use parsed::ParsedFile;

/// The checked resources of a config directory (or any set of texts), with every
/// diagnostic found on the way.
///
/// Cloning is cheap next to loading: resources are shared, diagnostics and the mesh config
/// are copied.
#[derive(Debug, Default, Clone)]
pub struct ConfigSet {
    /// Shared with the parsed files they came from: assembling a set again after one file
    /// changed copies pointers, not every resource's tree of small allocations.
    resources: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
    mesh: MeshConfig,
    /// [`LoadOptions::workload_identities`].
    workload_identities: bool,
    /// [`ConfigSet::resolved_jwks`].
    resolved_jwks: Arc<BTreeMap<String, String>>,
}

impl ConfigSet {
    /// Reads `(file name, text)` pairs in order: every file parsed on its own (on every
    /// core), then [`ConfigSet::assemble`]d.
    pub fn load<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
        opts: &LoadOptions,
    ) -> Self {
        let files: Vec<(&str, &str)> = sources.into_iter().collect();
        let parsed = ParsedFile::parse_all(&files, opts);
        ConfigSet::assemble(&parsed, opts)
    }

    /// Puts files parsed alone together, in the order given (file-name order, as `load`
    /// reads them): the mesh config from the last valid bare MeshConfig file or else the
    /// `istio` ConfigMap, later definitions replacing earlier ones, the 2019 APIs converted,
    /// diagnostics sorted by file and line. The result equals `load` of the same texts.
    pub fn assemble<'a>(
        files: impl IntoIterator<Item = &'a ParsedFile>,
        opts: &LoadOptions,
    ) -> Self {
        let files: Vec<&ParsedFile> = files.into_iter().collect();
        let mut diagnostics = Vec::new();
        let mut mesh: Option<MeshConfig> = None;
        // Mesh files' diagnostics first, then the others', as one pass used to collect them
        // (the sort below is stable).
        for f in &files {
            if let Content::Mesh(m) = &f.content {
                diagnostics.extend(f.diagnostics.iter().cloned());
                if let Some(m) = m {
                    mesh = Some((**m).clone());
                }
            }
        }
        let resources = clone_resources(&files);
        for f in &files {
            if let Content::Resources(_) = &f.content {
                diagnostics.extend(f.diagnostics.iter().cloned());
            }
        }
        let mut set = ConfigSet {
            resources: Vec::new(),
            diagnostics,
            mesh: MeshConfig::istio_defaults(),
            workload_identities: opts.workload_identities,
            resolved_jwks: Arc::default(),
        };
        set.take_mesh_from_configmap(&resources, mesh);
        set.resources = dedupe(resources, &mut set.diagnostics);
        set.convert_legacy(opts);
        set.diagnostics
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        set
    }

    pub fn resources(&self) -> &[Arc<Resource>] {
        &self.resources
    }

    /// Drops every resource's positioned YAML tree ([`Resource::drop_source_tree`]): for a
    /// set that is served, not analysed; field lines fall back to each document's first line.
    pub fn drop_source_trees(&mut self) {
        for r in &mut self.resources {
            if r.has_source_tree() {
                Arc::make_mut(r).drop_source_tree();
            }
        }
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The mesh config in force: `mesh.yaml` or the `istio` ConfigMap laid over
    /// Istio's defaults, or the defaults alone.
    pub fn mesh(&self) -> &MeshConfig {
        &self.mesh
    }

    /// Whether proxies of this mesh hold workload certificates
    /// ([`LoadOptions::workload_identities`]).
    pub fn workload_identities(&self) -> bool {
        self.workload_identities
    }

    /// Auto mTLS in force: MeshConfig `enableAutoMtls` (Istio's default: on) in a mesh
    /// with [`ConfigSet::workload_identities`].
    pub fn auto_mtls(&self) -> bool {
        self.workload_identities && self.mesh.enable_auto_mtls != Some(false)
    }

    /// The key sets fetched for RequestAuthentication `jwksUri`s, by URI (the JWKS text as
    /// served). Loading never fills it (it does no I/O): the control plane sets it before it
    /// publishes a config, and translation inlines these keys; a URI missing here is
    /// unresolved and its rule rejects every token.
    pub fn resolved_jwks(&self) -> &BTreeMap<String, String> {
        &self.resolved_jwks
    }

    /// Replaces [`ConfigSet::resolved_jwks`].
    pub fn set_resolved_jwks(&mut self, jwks: Arc<BTreeMap<String, String>>) {
        self.resolved_jwks = jwks;
    }

    /// The namespace whose policies apply mesh-wide (`istio-system` unless configured).
    pub fn root_namespace(&self) -> &str {
        self.mesh
            .root_namespace
            .as_deref()
            .unwrap_or("istio-system")
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .map(|r| &**r)
            .filter(move |r| r.kind == kind)
    }

    /// A MeshConfig from `mesh.yaml`, else from a ConfigMap `istio` (key `mesh`), else defaults.
    fn take_mesh_from_configmap(&mut self, resources: &[Arc<Resource>], file: Option<MeshConfig>) {
        if let Some(m) = file {
            self.mesh = m;
            return;
        }
        for r in resources {
            let Body::ConfigMap(cm) = &r.body else {
                continue;
            };
            if r.meta.name != "istio" {
                continue;
            }
            if !cm.data.contains_key("mesh") {
                continue;
            }
            let mut diags = Vec::new();
            let parsed = crate::mesh::mesh_from_configmap(&r.node);
            if let Some(m) = mesh_result(
                parsed,
                FieldPath::root().field("data").field("mesh"),
                &mut diags,
            ) {
                self.mesh = m;
            }
            for d in diags {
                self.diagnostics.push(
                    d.with_resource(r.reference())
                        .with_location(Some(&r.origin.file), Some(r.origin.line)),
                );
            }
        }
    }

    /// Converts every 2019 API resource (together: bindings need their roles and the
    /// RbacConfig) and loads the result through the same checks as hand-written YAML.
    fn convert_legacy(&mut self, opts: &LoadOptions) {
        let legacy: Vec<crate::legacy::LegacyResource> = self
            .resources
            .iter()
            .filter_map(|r| match &r.body {
                Body::Legacy(l) => {
                    let mut l = (**l).clone();
                    l.file = Some(r.origin.file.to_string());
                    l.line = Some(r.origin.line);
                    Some(l)
                }
                _ => None,
            })
            .collect();
        if legacy.is_empty() {
            return;
        }
        let mut options = crate::legacy::ConvertOptions::new(self.root_namespace());
        options.services = self
            .resources
            .iter()
            .filter_map(|r| {
                r.body.service().map(|svc| crate::legacy::KnownService {
                    namespace: r.meta.namespace.clone(),
                    name: r.meta.name.clone(),
                    service: svc.clone(),
                })
            })
            .collect();
        let output = crate::legacy::convert_with(&legacy, &options);
        let mut converted = Loaded::default();
        for item in &output.resources {
            let source = item.sources.first();
            let file: Arc<str> = Arc::from(
                source
                    .and_then(|s| s.file.as_deref())
                    .unwrap_or("<converted>"),
            );
            let line = source.and_then(|s| s.line).unwrap_or(1);
            let node = node_from_json(&item.value, crate::yaml::Mark { line, col: 1 });
            load_node(&file, &node, opts, &mut converted);
        }
        self.diagnostics.extend(output.diagnostics);
        self.diagnostics.extend(converted.diagnostics);
        let all = std::mem::take(&mut self.resources)
            .into_iter()
            .chain(converted.resources.into_iter().map(Arc::new))
            .collect();
        self.resources = dedupe(all, &mut self.diagnostics);
    }
}

/// Every file's resources, in order (shared, not copied).
fn clone_resources(files: &[&ParsedFile]) -> Vec<Arc<Resource>> {
    let count: usize = files.iter().map(|f| f.resources().len()).sum();
    let mut out = Vec::with_capacity(count);
    for f in files {
        out.extend(f.resources().iter().cloned());
    }
    out
}

/// A parsed mesh config's notices and validation as diagnostics; `None` if it is invalid
/// (Istio's defaults stay in force then).
fn mesh_result(
    parsed: Result<crate::mesh::ParsedMesh, crate::mesh::MeshConfigError>,
    base: FieldPath,
    diags: &mut Vec<Diagnostic>,
) -> Option<MeshConfig> {
    match parsed {
        Ok(p) => {
            for n in p.notices {
                let (path, mark, msg) = match n {
                    crate::yaml::Notice::UnknownField { path, mark, .. } => {
                        (path, mark, "unknown field (ignored)")
                    }
                    crate::yaml::Notice::DuplicateKey { path, mark } => (
                        path,
                        mark,
                        "key given more than once; the last value is used",
                    ),
                };
                diags.push(Diagnostic::warning(path, msg).with_location(None, Some(mark.line)));
            }
            let problems = crate::mesh::validate_mesh_config(&p.config, &base);
            let bad = problems.iter().any(Diagnostic::is_error);
            diags.extend(problems);
            (!bad).then(|| p.config.effective())
        }
        Err(e) => {
            diags.push(Diagnostic::error(FieldPath::root(), e.to_string()));
            None
        }
    }
}

/// Two resources with one kind, namespace and name: the later one replaces the earlier,
/// as applying the files in order with `kubectl apply` would, and a warning says so.
fn dedupe(resources: Vec<Arc<Resource>>, diags: &mut Vec<Diagnostic>) -> Vec<Arc<Resource>> {
    // Keyed by borrowed names: no copies of every name on every assemble.
    let mut last: HashMap<(Kind, &str, &str), usize> = HashMap::with_capacity(resources.len());
    let mut replaced = vec![false; resources.len()];
    for (i, r) in resources.iter().enumerate() {
        let key = (r.kind, r.meta.namespace.as_str(), r.meta.name.as_str());
        if let Some(earlier) = last.insert(key, i) {
            replaced[earlier] = true;
            let prev = &resources[earlier];
            diags.push(
                Diagnostic::new(
                    Severity::Warning,
                    FieldPath::root().field("metadata").field("name"),
                    format!(
                        "defined more than once: this replaces the definition at {}:{} (files are applied in order, as kubectl apply would)",
                        prev.origin.file, prev.origin.line
                    ),
                )
                .with_resource(r.reference())
                .with_location(Some(&r.origin.file), Some(r.origin.line)),
            );
        }
    }
    drop(last);
    resources
        .into_iter()
        .zip(replaced)
        .filter_map(|(r, gone)| (!gone).then_some(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_source_trees_keeps_bodies_and_document_lines() {
        let text = "# leading comment\n\
                    apiVersion: networking.istio.io/v1\n\
                    kind: VirtualService\n\
                    metadata: {name: a, namespace: default}\n\
                    spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n";
        let mut set = ConfigSet::load([("a.yaml", text)], &LoadOptions::default());
        assert!(!set.has_errors(), "{:?}", set.diagnostics());
        let path = FieldPath::root().field("spec").field("http");
        let before = (*set.resources()[0]).clone();
        assert_eq!(before.line_of(&path), 8, "the http list starts on line 8");
        set.drop_source_trees();
        let after = &set.resources()[0];
        assert_eq!(after.body, before.body);
        assert_eq!(after.meta, before.meta);
        assert_eq!(after.origin, before.origin);
        assert_eq!(after.line_of(&path), before.node.mark.line);
        assert!(after.node.as_map().is_some_and(|m| m.is_empty()));
    }
}

//! A legacy resource as read from a file: kind, name, namespace, typed body, origin.

use std::fmt;

use super::types::{Policy, RbacConfig, ServiceRole, ServiceRoleBinding};
use crate::yaml::{self, DeError, Node, Notice, YamlError};
use crate::{Diagnostic, FieldPath, ResourceRef};

pub const AUTHN_API_VERSION: &str = "authentication.istio.io/v1alpha1";
pub const RBAC_API_VERSION: &str = "rbac.istio.io/v1alpha1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LegacyKind {
    Policy,
    MeshPolicy,
    RbacConfig,
    ClusterRbacConfig,
    ServiceRole,
    ServiceRoleBinding,
}

impl LegacyKind {
    pub const ALL: [LegacyKind; 6] = [
        LegacyKind::Policy,
        LegacyKind::MeshPolicy,
        LegacyKind::RbacConfig,
        LegacyKind::ClusterRbacConfig,
        LegacyKind::ServiceRole,
        LegacyKind::ServiceRoleBinding,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LegacyKind::Policy => "Policy",
            LegacyKind::MeshPolicy => "MeshPolicy",
            LegacyKind::RbacConfig => "RbacConfig",
            LegacyKind::ClusterRbacConfig => "ClusterRbacConfig",
            LegacyKind::ServiceRole => "ServiceRole",
            LegacyKind::ServiceRoleBinding => "ServiceRoleBinding",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            LegacyKind::Policy | LegacyKind::MeshPolicy => AUTHN_API_VERSION,
            _ => RBAC_API_VERSION,
        }
    }

    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            LegacyKind::Policy | LegacyKind::ServiceRole | LegacyKind::ServiceRoleBinding
        )
    }

    /// The kind for an `apiVersion`/`kind` pair. The kind is matched without regard to
    /// case, because Istio's own documentation of the time (and the book) wrote
    /// `RBACConfig`; the returned flag is false when the spelling was not exact.
    pub fn from_type(api_version: &str, kind: &str) -> Option<(LegacyKind, bool)> {
        LegacyKind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.name().eq_ignore_ascii_case(kind))
            .map(|k| (k, k.name() == kind))
    }
}

impl fmt::Display for LegacyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LegacyBody {
    Policy(Policy),
    MeshPolicy(Policy),
    RbacConfig(RbacConfig),
    ClusterRbacConfig(RbacConfig),
    ServiceRole(ServiceRole),
    ServiceRoleBinding(ServiceRoleBinding),
}

impl LegacyBody {
    pub fn kind(&self) -> LegacyKind {
        match self {
            LegacyBody::Policy(_) => LegacyKind::Policy,
            LegacyBody::MeshPolicy(_) => LegacyKind::MeshPolicy,
            LegacyBody::RbacConfig(_) => LegacyKind::RbacConfig,
            LegacyBody::ClusterRbacConfig(_) => LegacyKind::ClusterRbacConfig,
            LegacyBody::ServiceRole(_) => LegacyKind::ServiceRole,
            LegacyBody::ServiceRoleBinding(_) => LegacyKind::ServiceRoleBinding,
        }
    }

    /// Reads the `spec` of a resource of `kind` (paths in errors start at `spec`).
    pub fn read(
        kind: LegacyKind,
        spec: &Node,
        notices: &mut Vec<Notice>,
    ) -> Result<LegacyBody, DeError> {
        let at = FieldPath::root().field("spec");
        let n = Some(notices);
        Ok(match kind {
            LegacyKind::Policy => LegacyBody::Policy(yaml::from_node_at(spec, at, n)?),
            LegacyKind::MeshPolicy => LegacyBody::MeshPolicy(yaml::from_node_at(spec, at, n)?),
            LegacyKind::RbacConfig => LegacyBody::RbacConfig(yaml::from_node_at(spec, at, n)?),
            LegacyKind::ClusterRbacConfig => {
                LegacyBody::ClusterRbacConfig(yaml::from_node_at(spec, at, n)?)
            }
            LegacyKind::ServiceRole => LegacyBody::ServiceRole(yaml::from_node_at(spec, at, n)?),
            LegacyKind::ServiceRoleBinding => {
                LegacyBody::ServiceRoleBinding(yaml::from_node_at(spec, at, n)?)
            }
        })
    }
}

/// A legacy resource and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyResource {
    pub name: String,
    /// Empty for the cluster-scoped kinds; `default` when a namespaced one omits it.
    pub namespace: String,
    pub file: Option<String>,
    /// Line where the resource's document starts.
    pub line: Option<u32>,
    pub body: LegacyBody,
}

impl LegacyResource {
    pub fn kind(&self) -> LegacyKind {
        self.body.kind()
    }

    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind().name().to_string(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// A diagnostic about this resource, located at its document.
    pub(crate) fn diag(&self, d: Diagnostic) -> Diagnostic {
        d.with_resource(self.resource_ref())
            .with_location(self.file.as_deref(), self.line)
    }

    /// Reads one document. `Ok(None)` when it is not one of the legacy kinds. Unknown
    /// fields and a non-canonical kind spelling come back as warnings.
    pub fn from_document(
        root: &Node,
        file: Option<&str>,
    ) -> Result<Option<LegacyDocument>, LegacyReadError> {
        let api_version = root
            .get("apiVersion")
            .and_then(Node::as_str)
            .unwrap_or_default();
        let kind_text = root.get("kind").and_then(Node::as_str).unwrap_or_default();
        let Some((kind, exact)) = LegacyKind::from_type(api_version, kind_text) else {
            return Ok(None);
        };
        let metadata = root.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(LegacyReadError::MissingName {
                kind: kind.name(),
                line: root.mark.line,
            });
        }
        let namespace = match metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str)
        {
            Some(ns) => ns.to_string(),
            None if kind.is_namespaced() => "default".to_string(),
            None => String::new(),
        };
        let mut notices = Vec::new();
        let null = Node::null(root.mark);
        let spec = root.get("spec").unwrap_or(&null);
        let body = LegacyBody::read(kind, spec, &mut notices)?;
        let resource = LegacyResource {
            name,
            namespace,
            file: file.map(str::to_string),
            line: Some(root.mark.line),
            body,
        };
        let mut diagnostics = Vec::new();
        if !exact {
            let msg = format!(
                "{kind_text:?} is spelt {:?} in {api_version}; read as such",
                kind.name()
            );
            diagnostics
                .push(resource.diag(Diagnostic::warning(FieldPath::root().field("kind"), msg)));
        }
        for n in notices {
            let (path, mark, msg) = match n {
                Notice::UnknownField {
                    path,
                    mark,
                    did_you_mean,
                } => {
                    let hint = did_you_mean
                        .map(|h| format!(" (did you mean {h:?}?)"))
                        .unwrap_or_default();
                    (path, mark, format!("unknown field, ignored{hint}"))
                }
                Notice::DuplicateKey { path, mark } => {
                    (path, mark, "repeated key; the last one is used".to_string())
                }
            };
            let d = Diagnostic::warning(path, msg).with_location(file, Some(mark.line));
            diagnostics.push(d.with_resource(resource.resource_ref()));
        }
        Ok(Some(LegacyDocument {
            resource,
            diagnostics,
        }))
    }
}

/// A legacy resource read from a document, with the warnings found while reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyDocument {
    pub resource: LegacyResource,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LegacyReadError {
    #[error("{kind} has no metadata.name")]
    MissingName { kind: &'static str, line: u32 },
    #[error("{0}")]
    Shape(#[from] DeError),
}

/// Reads every legacy resource of a YAML stream, skipping other kinds. What cannot be
/// read is reported as an error diagnostic and left out.
pub fn read_legacy_documents(
    text: &str,
    file: Option<&str>,
) -> (Vec<LegacyResource>, Vec<Diagnostic>) {
    let docs = match yaml::parse_documents(text) {
        Ok(d) => d,
        Err(YamlError { mark, message }) => {
            let d =
                Diagnostic::error(FieldPath::root(), message).with_location(file, Some(mark.line));
            return (Vec::new(), vec![d]);
        }
    };
    let mut resources = Vec::new();
    let mut diagnostics = Vec::new();
    for doc in docs {
        match LegacyResource::from_document(&doc.root, file) {
            Ok(Some(read)) => {
                resources.push(read.resource);
                diagnostics.extend(read.diagnostics);
            }
            Ok(None) => {}
            Err(LegacyReadError::Shape(e)) => diagnostics.push(
                Diagnostic::error(e.path.clone(), e.message.clone())
                    .with_location(file, Some(e.mark.line)),
            ),
            Err(e @ LegacyReadError::MissingName { line, .. }) => diagnostics.push(
                Diagnostic::error(FieldPath::root(), e.to_string()).with_location(file, Some(line)),
            ),
        }
    }
    (resources, diagnostics)
}

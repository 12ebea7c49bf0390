//! The Kubernetes objects a mesh reads: Service, Endpoints, EndpointSlice, Namespace,
//! ServiceAccount, Deployment and Pod.
//!
//! Each type is the whole object minus `apiVersion`, `kind` and `metadata`, which the
//! caller reads (they are common to every kind). [`read_object`] reads a type from a
//! document's root node, skipping those three keys so they are not reported as unknown.
//! Fields a mesh does not look at are still accepted (kept as opaque JSON values) so
//! that real manifests read without warnings; a misspelt field is still reported.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::yaml::{self, DeError, Node, NodeKind, Notice};
use crate::FieldPath;

mod intstr;
mod service;
mod validate;
mod workload;

#[cfg(test)]
mod tests;

pub use intstr::IntOrString;
pub use service::{
    Endpoint, EndpointAddress, EndpointConditions, EndpointPort, EndpointSlice, EndpointSubset,
    Endpoints, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
pub use validate::{is_iana_svc_name, validate_deployment, validate_pod, validate_service};
pub use workload::{
    Container, ContainerPort, Deployment, DeploymentSpec, EnvVar, LabelSelector,
    LabelSelectorRequirement, LocalObjectReference, Namespace, NamespaceSpec, Pod, PodCondition,
    PodIp, PodSpec, PodStatus, PodTemplateSpec, ServiceAccount, TemplateMetadata,
};

/// A part of an object Spar keeps as written without interpreting it.
pub type Opaque = serde_json::Value;

/// Kubernetes' `ObjectReference` (`targetRef` of an endpoint, a service account's secrets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// Reads `T` from a whole object (a document's root), ignoring `apiVersion`, `kind` and
/// `metadata`. Unknown and repeated keys go to `notices`, with paths from the root
/// (`spec.ports[0].portt`).
pub fn read_object<T: DeserializeOwned>(
    root: &Node,
    notices: Option<&mut Vec<Notice>>,
) -> Result<T, DeError> {
    match &root.kind {
        NodeKind::Map(entries) => {
            let body: Vec<_> = entries
                .iter()
                .filter(|(k, _)| !matches!(k.text.as_str(), "apiVersion" | "kind" | "metadata"))
                .cloned()
                .collect();
            let node = Node::new(NodeKind::Map(body), root.mark);
            yaml::from_node_at(&node, FieldPath::root(), notices)
        }
        _ => yaml::from_node_at(root, FieldPath::root(), notices),
    }
}

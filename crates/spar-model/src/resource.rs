//! A resource as Spar holds it: kind, metadata, typed body, and where it came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diag::ResourceRef;
use crate::istio::types as istio;
use crate::k8s;
use crate::kind::Kind;
use crate::yaml::{Node, NodeKind};

/// The parts of Kubernetes' `metadata` Spar uses; other keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
}

/// A Kubernetes ConfigMap: Spar reads `data` (the `istio` ConfigMap's `mesh` key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigMap {
    pub data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// A Kubernetes Secret: TLS material a Gateway's `credentialName` refers to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Secret {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64-encoded values, as Kubernetes stores them.
    pub data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// Where a resource was read from, for diagnostics and `spar ctl explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    /// Line of the document's first key (1-based).
    pub line: u32,
}

macro_rules! bodies {
    ($( $variant:ident($ty:ty) ),* $(,)?) => {
        /// The typed content of a resource. Istio kinds hold their `spec`; Kubernetes
        /// kinds hold the whole object minus `apiVersion`, `kind` and `metadata`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Body {
            $( $variant(Box<$ty>), )*
            /// A Kubernetes `ConfigMap` (only `data` is read).
            ConfigMap(Box<ConfigMap>),
            /// A Kubernetes `Secret` (TLS material for `credentialName`).
            Secret(Box<Secret>),
            /// A 2019 API resource; it is converted and its modern form is loaded too.
            Legacy(Box<crate::legacy::LegacyResource>),
            /// A kind Spar recognises but does not apply (Gateway API).
            Unsupported,
        }
    };
}

bodies! {
    VirtualService(istio::VirtualService),
    DestinationRule(istio::DestinationRule),
    Gateway(istio::Gateway),
    ServiceEntry(istio::ServiceEntry),
    WorkloadEntry(istio::WorkloadEntry),
    WorkloadGroup(istio::WorkloadGroup),
    Sidecar(istio::Sidecar),
    ProxyConfig(istio::ProxyConfig),
    EnvoyFilter(istio::EnvoyFilter),
    PeerAuthentication(istio::PeerAuthentication),
    AuthorizationPolicy(istio::AuthorizationPolicy),
    RequestAuthentication(istio::RequestAuthentication),
    Telemetry(istio::Telemetry),
    WasmPlugin(istio::WasmPlugin),
    TrafficExtension(istio::TrafficExtension),
    Service(k8s::Service),
    Endpoints(k8s::Endpoints),
    EndpointSlice(k8s::EndpointSlice),
    Namespace(k8s::Namespace),
    ServiceAccount(k8s::ServiceAccount),
    Deployment(k8s::Deployment),
    Pod(k8s::Pod),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: Kind,
    /// As written (`networking.istio.io/v1alpha3`); all served versions read the same.
    pub api_version: String,
    pub meta: ObjectMeta,
    pub body: Body,
    pub origin: Origin,
    /// The document it was read from, kept so later checks can point at lines; only its
    /// root is left after [`Resource::drop_source_tree`].
    pub node: Arc<Node>,
}

impl Resource {
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn namespace(&self) -> &str {
        &self.meta.namespace
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.kind_name().to_string(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Line of a field in this resource's source (the closest existing parent); the
    /// document's first line once the tree was dropped.
    pub fn line_of(&self, path: &crate::FieldPath) -> u32 {
        self.node.locate(path).mark.line
    }

    /// Whether the positioned YAML tree is still held (see [`Resource::drop_source_tree`]).
    pub fn has_source_tree(&self) -> bool {
        !matches!(&self.node.kind, NodeKind::Map(m) if m.is_empty())
    }

    /// Drops the positioned YAML tree (about 14 bytes per byte of YAML), keeping the root's
    /// position. For holders that never ask for a field's line again, such as a long-running
    /// control plane: diagnostics are produced while loading, before this is called.
    pub fn drop_source_tree(&mut self) {
        if !self.has_source_tree() {
            return;
        }
        self.node = Arc::new(Node {
            kind: NodeKind::Map(Vec::new()),
            mark: self.node.mark,
        });
    }
}

macro_rules! accessors {
    ($( $fn:ident => $variant:ident($ty:ty) ),* $(,)?) => {
        impl Body {
            $(
                pub fn $fn(&self) -> Option<&$ty> {
                    match self {
                        Body::$variant(b) => Some(b),
                        _ => None,
                    }
                }
            )*
        }
    };
}

accessors! {
    virtual_service => VirtualService(istio::VirtualService),
    destination_rule => DestinationRule(istio::DestinationRule),
    gateway => Gateway(istio::Gateway),
    service_entry => ServiceEntry(istio::ServiceEntry),
    workload_entry => WorkloadEntry(istio::WorkloadEntry),
    sidecar => Sidecar(istio::Sidecar),
    peer_authentication => PeerAuthentication(istio::PeerAuthentication),
    authorization_policy => AuthorizationPolicy(istio::AuthorizationPolicy),
    request_authentication => RequestAuthentication(istio::RequestAuthentication),
    telemetry => Telemetry(istio::Telemetry),
    service => Service(k8s::Service),
    endpoints => Endpoints(k8s::Endpoints),
    endpoint_slice => EndpointSlice(k8s::EndpointSlice),
    deployment => Deployment(k8s::Deployment),
    pod => Pod(k8s::Pod),
}

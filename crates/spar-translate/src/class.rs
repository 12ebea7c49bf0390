//! [`NodeClass`]: the part of a [`ProxyNode`] that translation reads.
//!
//! `translate(config, registry, node)` reads the node's `kind`, `namespace`, `labels` and
//! `locality`,
//! and (sidecars only, for named `targetPort`s of inbound clusters) the named container
//! ports of the node's own workload, found by IP or labels. Nothing else: not the id, pod
//! name, service account, workload name, cluster or mesh id. Two nodes of the same class get
//! byte-identical output from the same snapshot, so a cache keyed by class translates once
//! per workload, not once per pod. `tests/node_class.rs` keeps this honest.

use std::collections::BTreeMap;

use spar_registry::{Registry, Workload};

use crate::{ProxyKind, ProxyNode};

/// What translation reads from a node (see the module docs). Only meaningful against the
/// registry it was computed with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeClass {
    pub kind: ProxyKind,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Named container ports of the node's own workload (sidecars; empty when none is found).
    pub own_named_ports: BTreeMap<String, u32>,
    /// Locality load balancing ranks endpoints by the proxy's locality.
    pub locality: String,
}

impl NodeClass {
    /// The class of `node` against `registry`.
    pub fn of(registry: &Registry, node: &ProxyNode) -> NodeClass {
        let own_named_ports = match node.kind {
            ProxyKind::Sidecar => own_workload(registry, node)
                .map(|w| w.named_ports.clone())
                .unwrap_or_default(),
            // Gateways have no inbound clusters; their workload is never read.
            ProxyKind::Router => BTreeMap::new(),
        };
        NodeClass {
            kind: node.kind,
            namespace: node.namespace.clone(),
            labels: node.labels.clone(),
            own_named_ports,
            locality: node.locality.clone(),
        }
    }
}

/// The workload the node runs in: same namespace, and its address is the node's IP or its
/// labels are the node's labels. Shared with the inbound-cluster builder so the class and
/// the translation can never look the workload up differently.
pub(crate) fn own_workload<'a>(registry: &'a Registry, node: &ProxyNode) -> Option<&'a Workload> {
    registry.own_workload(&node.namespace, &node.ip, &node.labels)
}

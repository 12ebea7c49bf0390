//! Who is asking: Istio's node id (`sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local`)
//! and node metadata (labels, namespace, service account, workload name, ...).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    Sidecar,
    /// A gateway (`router~...`).
    Router,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxyNode {
    /// The node id as sent.
    pub id: String,
    pub kind: ProxyKind,
    pub ip: String,
    /// `<pod>.<namespace>` part's pod name.
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub workload_name: String,
    pub cluster_id: String,
    pub mesh_id: String,
    /// `region/zone/subzone` (Envoy's node locality, else the topology labels); empty when
    /// unknown.
    pub locality: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("node id {0:?} is not Istio's form `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local` (or `router~...`)")]
    Malformed(String),
    #[error("node id {0:?}: proxy type must be `sidecar` or `router`")]
    UnknownType(String),
}

impl ProxyNode {
    /// Parses Istio's node id; metadata fields get Istio's defaults; callers fill them from the node metadata.
    pub fn parse_id(id: &str) -> Result<ProxyNode, NodeError> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod_ns, _domain] = parts.as_slice() else {
            return Err(NodeError::Malformed(id.to_string()));
        };
        let kind = match *kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            _ => return Err(NodeError::UnknownType(id.to_string())),
        };
        let (name, namespace) = pod_ns
            .rsplit_once('.')
            .ok_or_else(|| NodeError::Malformed(id.to_string()))?;
        Ok(ProxyNode {
            id: id.to_string(),
            kind,
            ip: (*ip).to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            labels: BTreeMap::new(),
            service_account: "default".to_string(),
            workload_name: name.to_string(),
            cluster_id: "Kubernetes".to_string(),
            mesh_id: "cluster.local".to_string(),
            locality: String::new(),
        })
    }

    /// The locality from Istio's labels when the node sent none: `istio-locality`
    /// (`region.zone.subzone`), else `topology.kubernetes.io/region` / `zone` and
    /// `topology.istio.io/subzone`.
    pub fn locality_from_labels(&self) -> String {
        if let Some(l) = self.labels.get("istio-locality") {
            return l.replace('.', "/");
        }
        let get = |k: &str| self.labels.get(k).cloned().unwrap_or_default();
        let parts = [
            get("topology.kubernetes.io/region"),
            get("topology.kubernetes.io/zone"),
            get("topology.istio.io/subzone"),
        ];
        if parts.iter().all(String::is_empty) {
            return String::new();
        }
        parts.join("/").trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_ids() {
        let n = ProxyNode::parse_id(
            "sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local",
        )
        .unwrap();
        assert_eq!(
            (n.kind, n.ip.as_str(), n.name.as_str(), n.namespace.as_str()),
            (ProxyKind::Sidecar, "10.1.2.3", "reviews-v1-abc", "default")
        );
        let g = ProxyNode::parse_id(
            "router~10.0.0.9~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
        )
        .unwrap();
        assert_eq!(g.kind, ProxyKind::Router);
        assert!(ProxyNode::parse_id("nonsense").is_err());
        assert!(ProxyNode::parse_id("waypoint~1~a.b~c").is_err());
    }

    #[test]
    fn locality_comes_from_istio_or_topology_labels() {
        let mut n = ProxyNode::parse_id("sidecar~1~a.b~b.svc.cluster.local").unwrap();
        assert_eq!(n.locality_from_labels(), "");
        n.labels
            .insert("topology.kubernetes.io/region".into(), "us-east".into());
        n.labels
            .insert("topology.kubernetes.io/zone".into(), "us-east-1a".into());
        assert_eq!(n.locality_from_labels(), "us-east/us-east-1a");
        n.labels.insert("istio-locality".into(), "eu.w.r1".into());
        assert_eq!(n.locality_from_labels(), "eu/w/r1");
    }
}

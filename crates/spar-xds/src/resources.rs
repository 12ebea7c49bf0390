//! Translation output encoded once per proxy: every resource as an `Any` with a content
//! version (a hash of its bytes), grouped by type URL. Comparing these is how the server
//! decides whether a proxy's output changed.
//!
//! Each type's resources sit behind an `Arc`, so the connections of one node class, and
//! what the status registry remembers they were sent, share one copy of the bytes instead
//! of one per proxy.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use spar_translate::{type_url, XdsResources};

/// The order Envoy warms types in: clusters (and their endpoints) before the listeners and
/// routes that refer to them, so a push never points at something the proxy lacks.
pub const WARMING_ORDER: [&str; 5] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
    type_url::SECRET,
];

/// One encoded resource and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResource {
    pub any: Any,
    /// A hash of the encoded bytes: equal bytes, equal version (Delta xDS per-resource version).
    pub version: String,
}

/// Resources of one type, by name.
pub type TypeResources = BTreeMap<String, EncodedResource>;

/// Everything one proxy is sent, encoded, by type URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub types: BTreeMap<&'static str, Arc<TypeResources>>,
}

impl Encoded {
    /// The resources of `type_url` (empty when there are none).
    pub fn of(&self, type_url: &str) -> Option<&TypeResources> {
        self.types.get(type_url).map(|r| &**r)
    }

    /// The shared resources of `type_url`, to hand on without copying.
    pub fn shared(&self, type_url: &str) -> Option<&Arc<TypeResources>> {
        self.types.get(type_url)
    }

    /// Adds (or replaces) resources of `type_url`; used by overlays and tests.
    pub fn insert<M: Message>(&mut self, type_url: &'static str, name: &str, msg: &M) {
        Arc::make_mut(self.types.entry(type_url).or_default())
            .insert(name.to_string(), encode_one(type_url, msg));
    }
}

/// Encodes translation output.
pub fn encode(res: &XdsResources) -> Encoded {
    let mut out = Encoded::default();
    for t in WARMING_ORDER {
        out.types.entry(t).or_default();
    }
    for c in &res.clusters {
        out.insert(type_url::CLUSTER, &c.name, c);
    }
    for e in &res.endpoints {
        out.insert(type_url::ENDPOINT, &e.cluster_name, e);
    }
    for l in &res.listeners {
        out.insert(type_url::LISTENER, &l.name, l);
    }
    for r in &res.routes {
        out.insert(type_url::ROUTE, &r.name, r);
    }
    for s in &res.secrets {
        out.insert(type_url::SECRET, &s.name, s);
    }
    out
}

fn encode_one<M: Message>(type_url: &str, msg: &M) -> EncodedResource {
    let mut value = msg.encode_to_vec();
    if type_url == type_url::ROUTE {
        value = spar_translate::canonical::route_configuration(value);
    }
    let version = format!("{:016x}", fnv1a(&value));
    EncodedResource {
        any: Any {
            type_url: type_url.to_string(),
            value,
        },
        version,
    }
}

/// FNV-1a: stable across builds and Rust versions (unlike `DefaultHasher`), so versions
/// survive a control-plane restart and a reconnecting Delta client is not resent everything.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Types a proxy subscribes to without naming resources (LDS and CDS); the others (RDS, EDS,
/// SDS) are asked for by name.
pub fn is_wildcard_type(type_url: &str) -> bool {
    type_url == type_url::LISTENER || type_url == type_url::CLUSTER
}

/// Istio's short names for the types, used in status and metrics labels.
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        type_url::CLUSTER => "cds",
        type_url::ENDPOINT => "eds",
        type_url::LISTENER => "lds",
        type_url::ROUTE => "rds",
        type_url::SECRET => "sds",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    #[test]
    fn equal_resources_have_equal_versions() {
        let c = |n: &str| Cluster {
            name: n.to_string(),
            ..Default::default()
        };
        let a = encode(&XdsResources {
            clusters: vec![c("a"), c("b")],
            ..Default::default()
        });
        let b = encode(&XdsResources {
            clusters: vec![c("a"), c("b")],
            ..Default::default()
        });
        assert_eq!(a, b);
        let ca = a.of(type_url::CLUSTER).expect("cds");
        assert_ne!(ca["a"].version, ca["b"].version);
        assert!(a.of(type_url::LISTENER).expect("lds").is_empty());
    }
}

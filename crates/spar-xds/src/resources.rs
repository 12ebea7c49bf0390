//! Translation output encoded once per node class: every resource as the bytes of a
//! `google.protobuf.Any` with a content version (a hash of its bytes), grouped by type URL.
//! Comparing these is how the server decides whether a proxy's output changed.
//!
//! Nothing here is copied per proxy: each type's map sits behind an `Arc` (shared by every
//! connection of the node class and by what the status registry remembers they were sent),
//! each resource is an `Arc` (so an output derived from the previous one shares what did
//! not change, and "unchanged" is a pointer comparison), and the encoded bytes are
//! [`Bytes`], which the response encoders ([`crate::wire`]) write straight into the
//! stream's buffer: one copy per proxy, made by the gRPC encoder.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
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
    /// The encoded `Any`: field 1 the type URL, field 2 the resource's bytes.
    any: Bytes,
    /// Where the resource's bytes start inside `any`.
    value_at: usize,
    type_url: &'static str,
    /// A hash of the encoded bytes: equal bytes, equal version (Delta xDS per-resource version).
    pub version: Arc<str>,
}

impl EncodedResource {
    /// Wraps a resource's encoded bytes.
    pub fn new(type_url: &'static str, value: &[u8]) -> EncodedResource {
        let version: Arc<str> = Arc::from(format!("{:016x}", fnv1a(value)));
        let header = 1 + encoded_len_varint(type_url.len() as u64) + type_url.len();
        let value_header = 1 + encoded_len_varint(value.len() as u64);
        let mut buf = Vec::with_capacity(header + value_header + value.len());
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(type_url.len() as u64, &mut buf);
        buf.put_slice(type_url.as_bytes());
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(value.len() as u64, &mut buf);
        let value_at = buf.len();
        buf.put_slice(value);
        EncodedResource {
            any: Bytes::from(buf),
            value_at,
            type_url,
            version,
        }
    }

    /// The encoded `google.protobuf.Any`, as it goes on the wire.
    pub fn any_bytes(&self) -> &Bytes {
        &self.any
    }

    /// The resource's own encoded bytes (the `Any`'s value).
    pub fn value(&self) -> &[u8] {
        &self.any[self.value_at..]
    }

    pub fn type_url(&self) -> &'static str {
        self.type_url
    }

    /// A decoded copy of the `Any` (tools and tests; the push path never decodes).
    pub fn to_any(&self) -> Any {
        Any {
            type_url: self.type_url.to_string(),
            value: self.value().to_vec(),
        }
    }
}

/// Resources of one type, by name.
pub type TypeResources = BTreeMap<Arc<str>, Arc<EncodedResource>>;

/// What changed in one type between the output a class had before and this one, when the
/// store derived this output from that one (endpoint-only changes). A connection that holds
/// exactly `previous` needs only `changed`; every other connection compares in full.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeChange {
    pub previous: Arc<TypeResources>,
    /// Names whose resource differs from `previous` (none were added or removed).
    pub changed: Vec<Arc<str>>,
}

/// Everything one proxy is sent, encoded, by type URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub types: BTreeMap<&'static str, Arc<TypeResources>>,
    /// Per type, how this output differs from the one it was derived from (if it was).
    pub changes: BTreeMap<&'static str, TypeChange>,
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

    /// How `type_url` changed since the output this one was derived from.
    pub fn change(&self, type_url: &str) -> Option<&TypeChange> {
        self.changes.get(type_url)
    }

    /// Adds (or replaces) resources of `type_url`; used by overlays and tests.
    pub fn insert<M: Message>(&mut self, type_url: &'static str, name: &str, msg: &M) {
        Arc::make_mut(self.types.entry(type_url).or_default())
            .insert(Arc::from(name), Arc::new(encode_one(type_url, msg)));
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

/// Encodes one resource the way [`encode`] does.
pub fn encode_one<M: Message>(type_url: &'static str, msg: &M) -> EncodedResource {
    let mut value = msg.encode_to_vec();
    if type_url == type_url::ROUTE {
        value = spar_translate::canonical::route_configuration(value);
    }
    EncodedResource::new(type_url, &value)
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
        assert_eq!(ca["a"].type_url(), type_url::CLUSTER);
        let any = Any::decode(ca["a"].any_bytes().clone()).expect("an Any");
        assert_eq!(any.type_url, type_url::CLUSTER);
        assert_eq!(any.value, ca["a"].value());
        assert_eq!(
            Cluster::decode(ca["a"].value()).expect("a cluster").name,
            "a"
        );
        assert!(a.of(type_url::LISTENER).expect("lds").is_empty());
    }
}

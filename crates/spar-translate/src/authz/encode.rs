//! Deterministic `Any`s for messages with protobuf maps (RBAC `policies`, jwt_authn
//! `providers`). prost writes map entries in `HashMap` order; a protobuf parser merges
//! repeated occurrences of a message, so a base message followed by one single-entry
//! message per map entry, in name order, encodes the whole map canonically.

use envoy_types::pb::google::protobuf::Any;

/// `base` then each of `entries` (already in order), concatenated.
pub fn merged<M: prost::Message + prost::Name>(base: &M, entries: &[M]) -> Any {
    let mut value = base.encode_to_vec();
    for e in entries {
        e.encode(&mut value).unwrap_or_default();
    }
    Any {
        type_url: M::type_url(),
        value,
    }
}

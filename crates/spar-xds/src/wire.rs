//! The two ADS response messages, encoded from shared resources.
//!
//! `DiscoveryResponse` and `DeltaDiscoveryResponse` as envoy-types generates them own their
//! resources (`Any { value: Vec<u8> }`), so sending one node class's output to a hundred
//! proxies would copy every resource a hundred times before gRPC copies it again into the
//! stream. These two types write the same wire format (field numbers from
//! `envoy/service/discovery/v3/discovery.proto`) from [`EncodedResource`]s held by `Arc`:
//! the only per-proxy copy is the encoder's. They are never decoded here; clients decode
//! them as the standard messages (the tests do exactly that).

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use crate::body::Protocol;
use crate::held::Items;
use crate::resources::EncodedResource;
use crate::transport::{Out, CHUNK};

/// A response message that can be written a part at a time.
pub(crate) trait WireMessage: Send + 'static {
    /// The encoded length (for the gRPC length prefix).
    fn encoded_len(&self) -> usize;
    /// Writes the next part of the message into `out`, stopping once `out` holds `limit`
    /// bytes; returns whether the message is complete.
    fn write_some(&self, state: &mut WriteState, out: &mut Out, limit: usize) -> bool;
}

/// How far [`WireMessage::write_some`] got: whether the leading fields are out, how many
/// resources, and the last one's name (to resume a walk of a map).
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    started: bool,
    written: usize,
    last: Option<Arc<str>>,
    /// How much of a shared body is out.
    body_at: usize,
}

/// `envoy.service.discovery.v3.DiscoveryResponse` (state of the world).
#[derive(Debug, Default)]
pub struct SotwResponse {
    pub version_info: String,
    pub resources: Items,
    /// `resources` encoded, when they are a whole map ([`crate::body`]): sent instead.
    pub body: Option<Bytes>,
    pub type_url: String,
    pub nonce: String,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
#[derive(Debug, Default)]
pub struct DeltaResponse {
    pub system_version_info: String,
    /// Each as a `Resource { name, version, resource }`.
    pub resources: Items,
    /// `resources` encoded, when they are a whole map ([`crate::body`]): sent instead.
    pub body: Option<Bytes>,
    pub type_url: String,
    pub removed_resources: Vec<Arc<str>>,
    pub nonce: String,
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        bytes_field_len(tag, s.len())
    }
}

fn bytes_field_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

pub(crate) fn put_string(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        put_bytes(tag, s.as_bytes(), buf);
    }
}

pub(crate) fn put_bytes(tag: u32, b: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.put_slice(b);
}

/// Field `tag` holding the shared bytes of an encoded `Any`.
fn put_any(tag: u32, r: &EncodedResource, out: &mut Out) {
    encode_key(tag, WireType::LengthDelimited, &mut out.buf);
    encode_varint(r.any_bytes().len() as u64, &mut out.buf);
    out.put_shared(r.any_bytes());
}

impl WireMessage for SotwResponse {
    fn encoded_len(&self) -> usize {
        string_len(1, &self.version_info)
            + listed_len(Protocol::Sotw, &self.resources, self.body.as_ref())
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
    }

    fn write_some(&self, state: &mut WriteState, out: &mut Out, limit: usize) -> bool {
        if !state.started {
            put_string(1, &self.version_info, &mut out.buf);
            state.started = true;
        }
        let listed = match &self.body {
            Some(body) => write_body(body, state, out, limit),
            None => write_resources(&self.resources, state, out, limit, |_, r, out| {
                put_any(2, r, out);
            }),
        };
        if !listed {
            return false;
        }
        put_string(4, &self.type_url, &mut out.buf);
        put_string(5, &self.nonce, &mut out.buf);
        true
    }
}

/// The body of one `Resource`: version (1), resource (2, the `Any`), name (3).
pub(crate) fn resource_len(name: &str, r: &EncodedResource) -> usize {
    string_len(1, &r.version) + bytes_field_len(2, r.any_bytes().len()) + string_len(3, name)
}

impl WireMessage for DeltaResponse {
    fn encoded_len(&self) -> usize {
        string_len(1, &self.system_version_info)
            + listed_len(Protocol::Delta, &self.resources, self.body.as_ref())
            + string_len(4, &self.type_url)
            + string_len(5, &self.nonce)
            + self
                .removed_resources
                .iter()
                .map(|n| bytes_field_len(6, n.len()))
                .sum::<usize>()
    }

    fn write_some(&self, state: &mut WriteState, out: &mut Out, limit: usize) -> bool {
        if !state.started {
            put_string(1, &self.system_version_info, &mut out.buf);
            state.started = true;
        }
        let listed = match &self.body {
            Some(body) => write_body(body, state, out, limit),
            None => write_resources(&self.resources, state, out, limit, |name, r, out| {
                encode_key(2, WireType::LengthDelimited, &mut out.buf);
                encode_varint(resource_len(name, r) as u64, &mut out.buf);
                put_string(1, &r.version, &mut out.buf);
                put_any(2, r, out);
                put_string(3, name, &mut out.buf);
            }),
        };
        if !listed {
            return false;
        }
        put_string(4, &self.type_url, &mut out.buf);
        put_string(5, &self.nonce, &mut out.buf);
        for n in &self.removed_resources {
            // A repeated string is written even when empty.
            put_bytes(6, n.as_bytes(), &mut out.buf);
        }
        true
    }
}

/// Writes `resources` one by one with `put` until `out` holds `limit` bytes; returns
/// whether all of them are out (`state` says where to resume).
fn write_resources(
    resources: &Items,
    state: &mut WriteState,
    out: &mut Out,
    limit: usize,
    put: impl Fn(&Arc<str>, &EncodedResource, &mut Out),
) -> bool {
    let mut prev: Option<&Arc<str>> = None;
    for (name, r) in resources.after(state.last.as_deref(), state.written) {
        if out.pending() >= limit {
            // Only a pause records where to resume (one reference count per chunk).
            if let Some(p) = prev {
                state.last = Some(p.clone());
            }
            return false;
        }
        put(name, r, out);
        state.written += 1;
        prev = Some(name);
    }
    true
}

/// The bytes of the repeated resources field: the shared body's, or each resource's.
fn listed_len(protocol: Protocol, resources: &Items, body: Option<&Bytes>) -> usize {
    match body {
        Some(b) => b.len(),
        None => resources
            .iter()
            .map(|(n, r)| resource_entry_len(protocol, n, r))
            .sum(),
    }
}

/// The bytes of one field-2 entry of `protocol`'s response for resource `r` named `name`.
pub(crate) fn resource_entry_len(protocol: Protocol, name: &str, r: &EncodedResource) -> usize {
    match protocol {
        Protocol::Sotw => bytes_field_len(2, r.any_bytes().len()),
        Protocol::Delta => bytes_field_len(2, resource_len(name, r)),
    }
}

/// Hands out the rest of a shared body in [`CHUNK`]-sized slices (no copy); returns whether
/// all of it is out.
fn write_body(body: &Bytes, state: &mut WriteState, out: &mut Out, limit: usize) -> bool {
    while state.body_at < body.len() {
        if out.pending() >= limit {
            return false;
        }
        let end = body.len().min(state.body_at + CHUNK);
        out.put_shared(&body.slice(state.body_at..end));
        state.body_at = end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse,
    };
    use prost::Message;
    use spar_translate::type_url;

    fn cluster(name: &str) -> Arc<EncodedResource> {
        let c = Cluster {
            name: name.to_string(),
            ..Default::default()
        };
        Arc::new(crate::resources::encode_one(type_url::CLUSTER, &c))
    }

    /// The whole message, written in small parts as the transport does.
    fn to_vec(msg: &dyn WireMessage) -> Vec<u8> {
        let mut out = Out::default();
        let mut state = WriteState::default();
        let mut bytes = Vec::new();
        loop {
            let done = msg.write_some(&mut state, &mut out, 16);
            out.flush();
            for b in out.ready.drain(..) {
                bytes.extend_from_slice(&b);
            }
            if done {
                return bytes;
            }
        }
    }

    #[test]
    fn sotw_decodes_as_the_standard_message() {
        let a = cluster("a");
        let resp = SotwResponse {
            version_info: "7".into(),
            resources: Items::All(Arc::new(
                [
                    ("a", a.clone()),
                    ("b", cluster("b")),
                    ("c", cluster(&"c".repeat(10_000))),
                ]
                .into_iter()
                .map(|(n, r)| (Arc::from(n), r))
                .collect(),
            )),
            body: None,
            type_url: type_url::CLUSTER.into(),
            nonce: "7-1".into(),
        };
        let bytes = to_vec(&resp);
        assert_eq!(bytes.len(), resp.encoded_len());
        let std = DiscoveryResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(std.version_info, "7");
        assert_eq!(std.type_url, type_url::CLUSTER);
        assert_eq!(std.nonce, "7-1");
        assert_eq!(std.resources.len(), 3);
        assert_eq!(std.resources[0], a.to_any());
    }

    fn whole_map() -> Arc<crate::resources::TypeResources> {
        // Big enough that the shared list goes out in several slices.
        Arc::new(
            (0..200)
                .map(|i| {
                    let name = format!("cluster-{i:03}-{}", "x".repeat(300));
                    (Arc::from(name.as_str()), cluster(&name))
                })
                .collect(),
        )
    }

    #[test]
    fn a_shared_list_is_the_same_message_as_the_resources() {
        let map = whole_map();
        let bodies = crate::body::Bodies::default();
        let by_resource = SotwResponse {
            version_info: "7".into(),
            resources: Items::All(map.clone()),
            body: None,
            type_url: type_url::CLUSTER.into(),
            nonce: "7-1".into(),
        };
        let shared = SotwResponse {
            body: Some(bodies.get(&map, Protocol::Sotw)),
            resources: Items::All(map.clone()),
            ..SotwResponse::default()
        };
        let shared = SotwResponse {
            version_info: "7".into(),
            type_url: type_url::CLUSTER.into(),
            nonce: "7-1".into(),
            ..shared
        };
        let bytes = to_vec(&shared);
        assert!(bytes.len() > 2 * CHUNK);
        assert_eq!(bytes.len(), shared.encoded_len());
        assert_eq!(bytes, to_vec(&by_resource));

        let by_resource = DeltaResponse {
            system_version_info: "3".into(),
            resources: Items::All(map.clone()),
            body: None,
            type_url: type_url::CLUSTER.into(),
            removed_resources: vec![Arc::from("gone")],
            nonce: "3-9".into(),
        };
        let shared = DeltaResponse {
            system_version_info: "3".into(),
            resources: Items::All(map.clone()),
            body: Some(bodies.get(&map, Protocol::Delta)),
            type_url: type_url::CLUSTER.into(),
            removed_resources: vec![Arc::from("gone")],
            nonce: "3-9".into(),
        };
        let bytes = to_vec(&shared);
        assert_eq!(bytes.len(), shared.encoded_len());
        assert_eq!(bytes, to_vec(&by_resource));
        let std = DeltaDiscoveryResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(std.resources.len(), 200);
        assert_eq!(
            std.resources[0].name.as_str(),
            &**map.keys().next().expect("one")
        );
    }

    #[test]
    fn delta_decodes_as_the_standard_message() {
        let a = cluster("a");
        let resp = DeltaResponse {
            system_version_info: "3".into(),
            resources: Items::Some(vec![(Arc::from("a"), a.clone())]),
            body: None,
            type_url: type_url::CLUSTER.into(),
            removed_resources: vec![Arc::from("gone"), Arc::from("")],
            nonce: "3-9".into(),
        };
        let bytes = to_vec(&resp);
        assert_eq!(bytes.len(), resp.encoded_len());
        let std = DeltaDiscoveryResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(std.system_version_info, "3");
        assert_eq!(std.nonce, "3-9");
        assert_eq!(
            std.removed_resources,
            vec!["gone".to_string(), String::new()]
        );
        let r = &std.resources[0];
        assert_eq!(r.name, "a");
        assert_eq!(r.version, *a.version);
        assert_eq!(r.resource.as_ref(), Some(&a.to_any()));
    }
}

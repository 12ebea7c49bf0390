//! The state-of-the-world request as the server reads it.
//!
//! Envoy repeats its whole EDS subscription in every SotW ACK: 1,200 names for 1,000
//! services, from each of 2,000 proxies after every endpoint change. Decoded as
//! envoy-types' `DiscoveryRequest` that was 2.4 million `String`s per change, each
//! allocated, UTF-8 checked and freed, only to learn that the subscription had not
//! changed. Here the names are slices of the received message ([`Bytes`]); they become
//! strings only when a subscription really changes. The field numbers are
//! `envoy/service/discovery/v3/discovery.proto`'s; `resource_locators` (7) is skipped, as
//! before (xDS-TP locators are not served).

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;
use prost::Message;

/// Why a request could not be read (prost's words for the same faults).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("buffer underflow: the message ends inside a field")]
    Truncated,
    #[error("invalid varint")]
    Varint,
    #[error("invalid wire type {0}")]
    WireType(u64),
    #[error("invalid string value: field {0} is not UTF-8 encoded")]
    Utf8(u64),
    #[error("the message is too large")]
    TooLarge,
    #[error(transparent)]
    Field(#[from] prost::DecodeError),
}

/// A `DiscoveryRequest` whose `resource_names` (field 3) are spans of the received
/// message: no allocation and no reference count per name (an earlier version kept each
/// as a `Bytes` slice, two atomic operations per name, 4.8 million per change).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SotwRequest {
    pub version_info: String,
    pub node: Option<Node>,
    message: Bytes,
    names: Vec<(u32, u32)>,
    pub type_url: String,
    pub response_nonce: String,
    pub error_detail: Option<Status>,
}

impl SotwRequest {
    /// The names, as bytes of the message, in the order sent.
    pub(crate) fn resource_names(&self) -> Vec<&[u8]> {
        self.names
            .iter()
            .map(|&(at, len)| &self.message[at as usize..(at + len) as usize])
            .collect()
    }

    /// Reads the message; the same fields and errors as prost's decode of
    /// `DiscoveryRequest` (strings must be UTF-8; unknown fields are skipped).
    pub(crate) fn decode(message: Bytes) -> Result<SotwRequest, DecodeError> {
        let mut out = SotwRequest::default();
        let data = &message[..];
        let mut at = 0usize;
        while at < data.len() {
            let key = varint(data, &mut at)?;
            let (tag, wire) = (key >> 3, key & 7);
            if wire != 2 {
                // Every field this message defines is length-delimited.
                if (1..=7).contains(&tag) {
                    return Err(DecodeError::WireType(wire));
                }
                skip(data, &mut at, wire)?;
                continue;
            }
            let len = usize::try_from(varint(data, &mut at)?).map_err(|_| DecodeError::TooLarge)?;
            let end = at
                .checked_add(len)
                .filter(|e| *e <= data.len())
                .ok_or(DecodeError::Truncated)?;
            let field = &data[at..end];
            match tag {
                1 => out.version_info = string(field, tag)?,
                2 => out.node.get_or_insert_with(Node::default).merge(field)?,
                3 => out.names.push((
                    u32::try_from(at).map_err(|_| DecodeError::TooLarge)?,
                    u32::try_from(len).map_err(|_| DecodeError::TooLarge)?,
                )),
                4 => out.type_url = string(field, tag)?,
                5 => out.response_nonce = string(field, tag)?,
                6 => out
                    .error_detail
                    .get_or_insert_with(Status::default)
                    .merge(field)?,
                // 7: resource_locators (xDS-TP) are not served; others are unknown.
                _ => {}
            }
            at = end;
        }
        out.message = message;
        Ok(out)
    }
}

fn string(b: &[u8], tag: u64) -> Result<String, DecodeError> {
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| DecodeError::Utf8(tag))
}

fn varint(data: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).ok_or(DecodeError::Truncated)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Varint)
}

/// Skips a field of wire type `wire` (not length-delimited).
fn skip(data: &[u8], at: &mut usize, wire: u64) -> Result<(), DecodeError> {
    let n = match wire {
        0 => {
            varint(data, at)?;
            return Ok(());
        }
        1 => 8,
        5 => 4,
        _ => return Err(DecodeError::WireType(wire)),
    };
    *at = at
        .checked_add(n)
        .filter(|e| *e <= data.len())
        .ok_or(DecodeError::Truncated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Message;

    #[test]
    fn reads_what_envoy_sends() {
        let std = DiscoveryRequest {
            version_info: "3".into(),
            node: Some(Node {
                id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
                ..Default::default()
            }),
            resource_names: vec!["outbound|80||a".into(), "outbound|80||b".into()],
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "3-7".into(),
            error_detail: Some(Status {
                code: 3,
                message: "rejected".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = Bytes::from(std.encode_to_vec());
        let ours = SotwRequest::decode(bytes.clone()).expect("decodes");
        assert_eq!(ours.resource_names().len(), 2);
        assert_eq!(ours.version_info, "3");
        assert_eq!(ours.node, std.node);
        assert_eq!(
            ours.resource_names(),
            [&b"outbound|80||a"[..], &b"outbound|80||b"[..]]
        );
        assert_eq!(ours.type_url, std.type_url);
        assert_eq!(ours.response_nonce, "3-7");
        assert_eq!(ours.error_detail, std.error_detail);
        // The names point into the received message: no copies.
        let at = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(at.contains(&(ours.resource_names()[0].as_ptr() as usize)));
    }

    #[test]
    fn bad_messages_are_refused_as_prost_refuses_them() {
        let good = DiscoveryRequest {
            type_url: "t".into(),
            resource_names: vec!["a".into()],
            ..Default::default()
        }
        .encode_to_vec();
        for cut in 1..good.len() {
            let part = Bytes::copy_from_slice(&good[..cut]);
            assert_eq!(
                SotwRequest::decode(part.clone()).is_err(),
                DiscoveryRequest::decode(part).is_err(),
                "cut at {cut}"
            );
        }
        // A non-UTF-8 type URL; an unknown varint field and a fixed64 field are skipped.
        let mut bad = vec![0x22, 1, 0xff];
        assert!(SotwRequest::decode(Bytes::from(bad.clone())).is_err());
        bad = vec![
            0x50, 0x96, 0x01, 0x59, 0, 0, 0, 0, 0, 0, 0, 0, 0x22, 1, b't',
        ];
        let r = SotwRequest::decode(Bytes::from(bad)).expect("skips unknown fields");
        assert_eq!(r.type_url, "t");
        // A defined field with the wrong wire type, as prost refuses it.
        let wrong = Bytes::from_static(&[0x20, 1]);
        assert!(DiscoveryRequest::decode(wrong.clone()).is_err());
        assert!(SotwRequest::decode(wrong).is_err());
    }
}

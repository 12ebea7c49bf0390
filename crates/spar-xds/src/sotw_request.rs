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

use bytes::{Buf, Bytes};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;
use prost::encoding::{self, check_wire_type, DecodeContext, WireType};
use prost::DecodeError;

/// A `DiscoveryRequest` whose `resource_names` (field 3) are spans of the received
/// message: no allocation and no reference count per name (an earlier version kept each
/// as a `Bytes` slice, two atomic operations per name, 4.8 million per change).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SotwRequest {
    pub version_info: String,
    pub node: Option<Node>,
    message: Bytes,
    /// Where each name is in `message`: offset and length.
    names: Vec<(usize, usize)>,
    pub type_url: String,
    pub response_nonce: String,
    pub error_detail: Option<Status>,
}

impl SotwRequest {
    /// The names, as bytes of the message, in the order sent.
    pub(crate) fn resource_names(&self) -> Vec<&[u8]> {
        self.names
            .iter()
            .map(|&(at, len)| &self.message[at..at + len])
            .collect()
    }

    /// Reads the message with prost's own wire-format functions, so it accepts and refuses
    /// what prost's decode of `DiscoveryRequest` does (strings must be UTF-8, a defined field
    /// must have its wire type, unknown fields are skipped); only field 3 is kept as spans.
    pub(crate) fn decode(message: Bytes) -> Result<SotwRequest, DecodeError> {
        let mut out = SotwRequest::default();
        let mut buf: &[u8] = &message;
        let ctx = DecodeContext::default;
        while buf.has_remaining() {
            let (tag, wire) = encoding::decode_key(&mut buf)?;
            match tag {
                1 => encoding::string::merge(wire, &mut out.version_info, &mut buf, ctx())?,
                2 => encoding::message::merge(
                    wire,
                    out.node.get_or_insert_with(Node::default),
                    &mut buf,
                    ctx(),
                )?,
                3 => {
                    check_wire_type(WireType::LengthDelimited, wire)?;
                    // prost checks the length and passes over the name; the span is what
                    // it passed over after the length prefix.
                    let mut name = buf;
                    encoding::skip_field(wire, tag, &mut buf, ctx())?;
                    encoding::decode_varint(&mut name)?;
                    let at = message.len() - name.remaining();
                    out.names.push((at, name.remaining() - buf.remaining()));
                }
                4 => encoding::string::merge(wire, &mut out.type_url, &mut buf, ctx())?,
                5 => encoding::string::merge(wire, &mut out.response_nonce, &mut buf, ctx())?,
                6 => encoding::message::merge(
                    wire,
                    out.error_detail.get_or_insert_with(Status::default),
                    &mut buf,
                    ctx(),
                )?,
                // 7: resource_locators (xDS-TP) are not served; others are unknown.
                _ => encoding::skip_field(wire, tag, &mut buf, ctx())?,
            }
        }
        out.message = message;
        Ok(out)
    }
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

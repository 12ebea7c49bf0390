//! The ADS responses as this tool reads them: each message as the received [`Bytes`],
//! read in place with [`crate::scan`] (no per-resource allocation, no UTF-8 check of every
//! name). A simulated proxy only looks at its resources, and 2,000 of them share two cores
//! with the control plane under test, so reading must cost as little as possible. The
//! field numbers are `envoy/service/discovery/v3/discovery.proto`'s. The gRPC stream
//! itself is [`crate::grpc`].

use bytes::{Buf, Bytes};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use crate::scan::{fields, ScanError, Value};

/// One response (`DiscoveryResponse` or `DeltaDiscoveryResponse`), its fields borrowed
/// from the message. `resources` are the `Any` values (state of the world) or the
/// `Resource` messages (delta).
#[derive(Debug, Default)]
pub struct Response<'a> {
    pub version: &'a [u8],
    pub resources: Vec<&'a [u8]>,
    pub type_url: &'a [u8],
    pub nonce: &'a [u8],
    pub removed: Vec<&'a [u8]>,
}

impl<'a> Response<'a> {
    /// Reads a `DiscoveryResponse`; `resources` are the `Any`s' values.
    pub fn sotw(msg: &'a [u8]) -> Result<Response<'a>, ScanError> {
        let mut r = Response::default();
        let mut anys = Vec::new();
        fields(msg, |n, v| match (n, v) {
            (1, Value::Bytes(b)) => r.version = b,
            (2, Value::Bytes(b)) => anys.push(b),
            (4, Value::Bytes(b)) => r.type_url = b,
            (5, Value::Bytes(b)) => r.nonce = b,
            _ => {}
        })?;
        r.resources.reserve_exact(anys.len());
        for any in anys {
            r.resources.push(any_value(any)?);
        }
        Ok(r)
    }

    /// Reads a `DeltaDiscoveryResponse`; `resources` are the `Resource` messages.
    pub fn delta(msg: &'a [u8]) -> Result<Response<'a>, ScanError> {
        let mut r = Response::default();
        fields(msg, |n, v| match (n, v) {
            (1, Value::Bytes(b)) => r.version = b,
            (2, Value::Bytes(b)) => r.resources.push(b),
            (4, Value::Bytes(b)) => r.type_url = b,
            (5, Value::Bytes(b)) => r.nonce = b,
            (6, Value::Bytes(b)) => r.removed.push(b),
            _ => {}
        })?;
        Ok(r)
    }

    pub fn type_url(&self) -> String {
        String::from_utf8_lossy(self.type_url).into_owned()
    }

    pub fn nonce(&self) -> String {
        String::from_utf8_lossy(self.nonce).into_owned()
    }

    pub fn version(&self) -> String {
        String::from_utf8_lossy(self.version).into_owned()
    }
}

/// The value (field 2) of an encoded `google.protobuf.Any`.
fn any_value(any: &[u8]) -> Result<&[u8], ScanError> {
    let mut value: &[u8] = &[];
    fields(any, |n, v| {
        if let (2, Value::Bytes(b)) = (n, v) {
            value = b;
        }
    })?;
    Ok(value)
}

/// A delta `Resource`'s name (field 3) and its `Any`'s value (field 2 of field 2).
pub fn delta_resource(resource: &[u8]) -> Result<(&[u8], Option<&[u8]>), ScanError> {
    let (mut name, mut any): (&[u8], Option<&[u8]>) = (&[], None);
    fields(resource, |n, v| match (n, v) {
        (3, Value::Bytes(b)) => name = b,
        (2, Value::Bytes(b)) => any = Some(b),
        _ => {}
    })?;
    Ok((name, any.map(any_value).transpose()?))
}

/// A state-of-the-world request whose `resource_names` (field 3) are already encoded:
/// every EDS ACK repeats the proxy's 1,200 names, the same list for every proxy of a
/// workload, so the list is encoded once per subscription ([`encode_names`]) instead of
/// cloned as 1,200 strings and encoded again for every ACK. Field order does not matter
/// to a protobuf reader; the names go last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SotwRequest {
    pub head: DiscoveryRequest,
    pub names: Bytes,
}

/// `names` as repeated field 3 of a `DiscoveryRequest`.
pub fn encode_names<S: AsRef<[u8]>>(names: &[S]) -> Bytes {
    let mut out = Vec::new();
    for n in names {
        let n = n.as_ref();
        prost::encoding::encode_key(3, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(n.len() as u64, &mut out);
        out.extend_from_slice(n);
    }
    Bytes::from(out)
}

impl prost::Message for SotwRequest {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        self.head.encode_raw(buf);
        buf.put_slice(&self.names);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only sent, never read; a decode reads the names into `head`.
        self.head.merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.encoded_len() + self.names.len()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.names = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_encoded_names_is_the_discovery_request_it_stands_for() {
        use prost::Message;
        let head = DiscoveryRequest {
            version_info: "7".into(),
            type_url: "t".into(),
            response_nonce: "7-1".into(),
            ..Default::default()
        };
        let ours = SotwRequest {
            head: head.clone(),
            names: encode_names(&["outbound|80||a", "outbound|80||b"]),
        };
        let bytes = ours.encode_to_vec();
        assert_eq!(bytes.len(), ours.encoded_len());
        let read = DiscoveryRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(
            read,
            DiscoveryRequest {
                resource_names: vec!["outbound|80||a".into(), "outbound|80||b".into()],
                ..head
            }
        );
    }
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn any(v: &[u8]) -> Any {
        Any {
            type_url: "t".into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn reads_the_standard_messages() {
        let m = DiscoveryResponse {
            version_info: "7".into(),
            resources: vec![any(b"one"), any(b"two")],
            type_url: "t".into(),
            nonce: "7-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let r = Response::sotw(&m).expect("reads");
        assert_eq!(
            (r.version(), r.nonce(), r.type_url()),
            ("7".into(), "7-1".into(), "t".into())
        );
        assert_eq!(r.resources, [&b"one"[..], &b"two"[..]]);

        let m = DeltaDiscoveryResponse {
            system_version_info: "3".into(),
            resources: vec![Resource {
                name: "a".into(),
                version: "v".into(),
                resource: Some(any(b"body")),
                ..Default::default()
            }],
            type_url: "t".into(),
            removed_resources: vec!["gone".into()],
            nonce: "3-9".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let r = Response::delta(&m).expect("reads");
        assert_eq!(r.removed, [&b"gone"[..]]);
        let (name, value) = delta_resource(r.resources[0]).expect("reads");
        assert_eq!((name, value), (&b"a"[..], Some(&b"body"[..])));
    }
}

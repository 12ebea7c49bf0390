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

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SotwRequest {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, optional, tag = "2")]
    pub node: Option<Node>,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub resource_names: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<Status>,
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
        assert_eq!(ours.version_info, "3");
        assert_eq!(ours.node, std.node);
        assert_eq!(
            ours.resource_names,
            [&b"outbound|80||a"[..], &b"outbound|80||b"[..]]
        );
        assert_eq!(ours.type_url, std.type_url);
        assert_eq!(ours.response_nonce, "3-7");
        assert_eq!(ours.error_detail, std.error_detail);
        // The names point into the received message: no copies.
        let at = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(at.contains(&(ours.resource_names[0].as_ptr() as usize)));
    }
}

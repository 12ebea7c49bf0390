//! The ADS responses as this tool reads them: resource bytes as [`Bytes`] slices of the
//! received frame instead of owned copies (envoy-types' `Any` copies every resource).
//! A simulated proxy only scans its resources, and 2,000 of them share two cores with the
//! control plane under test, so decoding must cost as little as possible. The field
//! numbers are `envoy/service/discovery/v3/discovery.proto`'s.

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// `google.protobuf.Any`, its value unparsed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.service.discovery.v3.DiscoveryResponse` (the fields read here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<Any>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
}

/// `envoy.service.discovery.v3.Resource` (the fields read here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<Any>,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse` (the fields read here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<Resource>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, repeated, tag = "6")]
    pub removed_resources: Vec<String>,
    #[prost(string, tag = "5")]
    pub nonce: String,
}

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

async fn open<Req, Resp>(
    channel: Channel,
    path: &'static str,
    requests: ReceiverStream<Req>,
) -> Result<Streaming<Resp>, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(512 << 20);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the control plane is not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    Ok(grpc
        .streaming(tonic::Request::new(requests), path, codec)
        .await?
        .into_inner())
}

/// Opens a state-of-the-world ADS stream.
pub async fn sotw(
    channel: Channel,
    requests: ReceiverStream<DiscoveryRequest>,
) -> Result<Streaming<DiscoveryResponse>, Status> {
    open(channel, SOTW, requests).await
}

/// Opens a delta ADS stream.
pub async fn delta(
    channel: Channel,
    requests: ReceiverStream<DeltaDiscoveryRequest>,
) -> Result<Streaming<DeltaDiscoveryResponse>, Status> {
    open(channel, DELTA, requests).await
}

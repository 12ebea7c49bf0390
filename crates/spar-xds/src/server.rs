//! The ADS service: one task per stream, state of the world or delta.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::metrics::Metrics;
use crate::source::ResourceSource;
use crate::status::StatusRegistry;

/// Shared by every connection.
pub struct Shared<S> {
    pub source: S,
    pub status: Arc<StatusRegistry>,
    pub metrics: Arc<Metrics>,
}

/// The Aggregated Discovery Service over a [`ResourceSource`].
pub struct AdsServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S: ResourceSource> AdsServer<S> {
    pub fn new(source: S, status: Arc<StatusRegistry>, metrics: Arc<Metrics>) -> AdsServer<S> {
        AdsServer {
            shared: Arc::new(Shared {
                source,
                status,
                metrics,
            }),
        }
    }

    /// The tonic service to add to a `Server`.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        // Full configs for big meshes exceed tonic's 4 MiB default; Envoy sends small requests
        // but a proxy's response can be large.
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(256 << 20)
    }
}

// Responses are few and large; a short queue applies backpressure to a slow proxy instead
// of buffering its pushes.
const RESPONSE_QUEUE: usize = 8;

#[tonic::async_trait]
impl<S: ResourceSource> AggregatedDiscoveryService for AdsServer<S> {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let shared = self.shared.clone();
        tokio::spawn(crate::sotw::run(shared, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let shared = self.shared.clone();
        tokio::spawn(crate::delta::run(shared, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Keeps `pilot_xds` equal to the number of live connections.
pub(crate) struct Connected(Arc<Metrics>);

impl Connected {
    pub(crate) fn new(m: &Arc<Metrics>) -> Connected {
        m.connected.inc();
        Connected(m.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.dec();
    }
}

/// What every ADS stream sets up from its first request, whichever variant it speaks:
/// who the proxy is, its first resources, and the change feed to follow.
pub(crate) struct Session {
    pub(crate) node: spar_translate::ProxyNode,
    pub(crate) proxyless: bool,
    pub(crate) id: u64,
    pub(crate) generation: u64,
    pub(crate) current: Arc<crate::resources::Encoded>,
    pub(crate) changes: tokio::sync::watch::Receiver<u64>,
    // Held for the stream's life: dropping them records the disconnect.
    _registration: crate::status::Registration,
    _connected: Connected,
}

impl Session {
    pub(crate) fn open<S: ResourceSource>(
        shared: &Shared<S>,
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
        variant: &'static str,
    ) -> Result<Session, Status> {
        let proxyless = crate::node::is_proxyless(node);
        let node =
            crate::node::proxy_node(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let registration = shared.status.connect(&node.id, variant);
        let connected = Connected::new(&shared.metrics);
        let mut changes = shared.source.changes();
        let generation = *changes.borrow_and_update();
        let current = if proxyless {
            shared
                .source
                .grpc_resources(&node, &std::collections::BTreeSet::new())
        } else {
            shared.source.resources(&node)
        };
        Ok(Session {
            id: registration.id,
            node,
            proxyless,
            generation,
            current,
            changes,
            _registration: registration,
            _connected: connected,
        })
    }
}

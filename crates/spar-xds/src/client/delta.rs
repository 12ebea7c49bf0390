//! One Delta ADS stream: subscriptions as differences (names added and removed), the
//! handler's held versions in `initial_resource_versions` on a new stream, and an ACK or
//! NACK (same nonce, `error_detail`) for every response.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::state::{check_type, to_prost, Interest, WARMING_TIMEOUT};
use super::{
    nack_status, Connected, Ctx, Ended, NamedResource, StreamError, TypeUpdate, MAX_MESSAGE,
};
use crate::resources::is_wildcard_type;

struct Stream {
    tx: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    /// Sent on the stream's first request only.
    node: Option<Node>,
}

pub(crate) async fn run(ctx: &mut Ctx, channel: Channel) -> Ended {
    let mut grpc = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut s = Stream {
        tx,
        node: Some(ctx.cfg.node.clone()),
    };
    ctx.state.begin_stream();
    // Queued before the call: some servers answer the call only once a request arrives.
    s.subscribe(ctx);
    let mut responses = 0;
    let request = match super::with_token(&ctx.cfg, UnboundedReceiverStream::new(rx)) {
        Ok(r) => r,
        Err(error) => return Ended { responses, error },
    };
    let mut inbound = match grpc.delta_aggregated_resources(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Ended {
                responses,
                error: status.into(),
            }
        }
    };
    let _connected = Connected::new(ctx);
    tracing::info!(server = %ctx.cfg.server, "xDS stream open (delta)");
    let warm = tokio::time::sleep(WARMING_TIMEOUT);
    tokio::pin!(warm);
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(resp)) => {
                    responses += 1;
                    s.on_response(ctx, resp);
                }
                Ok(None) => return Ended { responses, error: StreamError::Closed },
                Err(status) => return Ended { responses, error: status.into() },
            },
            () = &mut warm, if !ctx.state.listeners_open => {
                tracing::warn!("clusters are not warm after {WARMING_TIMEOUT:?}; asking for listeners anyway");
                ctx.state.listeners_open = true;
                s.subscribe(ctx);
            }
        }
    }
}

/// The handler's view of a response; every resource must be of the response's type.
fn update_of(resp: DeltaDiscoveryResponse) -> Result<TypeUpdate, String> {
    let mut resources = Vec::with_capacity(resp.resources.len());
    for r in resp.resources {
        // A resource without a body is a TTL heartbeat: nothing changes.
        let Some(any) = r.resource else { continue };
        check_type(&resp.type_url, &r.name, &any)?;
        resources.push(NamedResource {
            name: r.name,
            version: r.version,
            resource: to_prost(any),
        });
    }
    Ok(TypeUpdate {
        type_url: resp.type_url,
        version: resp.system_version_info,
        resources,
        removed: resp.removed_resources,
        full_state: false,
    })
}

impl Stream {
    fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        req.node = self.node.take();
        // A closed channel means the stream is gone; reading it reports why.
        let _ = self.tx.send(req);
    }

    fn on_response(&mut self, ctx: &mut Ctx, resp: DeltaDiscoveryResponse) {
        let type_url = resp.type_url.clone();
        let nonce = resp.nonce.clone();
        ctx.state.get(&type_url).nonce = nonce.clone();
        let result = update_of(resp).and_then(|u| ctx.state.apply(&*ctx.handler, &u));
        let error_detail = match result {
            Ok(()) => {
                ctx.stats.on_ack(&type_url);
                tracing::debug!(type_url, nonce, "ACK");
                None
            }
            Err(e) => {
                ctx.stats.on_nack(&type_url);
                tracing::warn!(type_url, nonce, error = %e, "NACK: keeping the last accepted config");
                Some(nack_status(e))
            }
        };
        let ok = error_detail.is_none();
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.clone(),
            response_nonce: nonce,
            error_detail,
            ..Default::default()
        });
        ctx.state.after_response(&type_url, ok, &*ctx.handler);
        self.subscribe(ctx);
    }

    /// Sends the subscription changes the state asks for, in warming order.
    fn subscribe(&mut self, ctx: &mut Ctx) {
        for (t, old, new) in ctx.state.changes(&*ctx.handler) {
            let st = ctx.state.get(t);
            let mut req = DeltaDiscoveryRequest {
                type_url: t.to_string(),
                ..Default::default()
            };
            let before: Vec<String> = st.held.keys().cloned().collect();
            match (&old, &new) {
                (None, Interest::Wildcard) => {
                    // CDS/LDS: the legacy wildcard (no names) every server understands.
                    if !is_wildcard_type(t) {
                        req.resource_names_subscribe = vec!["*".to_string()];
                    }
                }
                (None, Interest::Names(n)) => {
                    st.held.retain(|k, _| n.contains(k));
                    req.resource_names_subscribe = n.iter().cloned().collect();
                }
                (Some(Interest::Names(_)), Interest::Wildcard) => {
                    req.resource_names_subscribe = vec!["*".to_string()];
                }
                (Some(Interest::Wildcard), Interest::Names(n)) => {
                    req.resource_names_unsubscribe = vec!["*".to_string()];
                    req.resource_names_subscribe = n.iter().cloned().collect();
                    st.held.retain(|k, _| n.contains(k));
                }
                (Some(Interest::Names(a)), Interest::Names(b)) => {
                    req.resource_names_subscribe = b.difference(a).cloned().collect();
                    req.resource_names_unsubscribe = a.difference(b).cloned().collect();
                    st.held.retain(|k, _| b.contains(k));
                }
                (Some(Interest::Wildcard), Interest::Wildcard) => continue,
            }
            if old.is_none() {
                // What the handler still holds, so the server resends only what changed.
                req.initial_resource_versions = st.held.clone().into_iter().collect();
            }
            // The client drops what it unsubscribes from; the server will not say so.
            let dropped: Vec<String> = before
                .into_iter()
                .filter(|n| !st.held.contains_key(n))
                .collect();
            if !dropped.is_empty() {
                let update = TypeUpdate {
                    type_url: t.to_string(),
                    version: st.version.clone(),
                    resources: Vec::new(),
                    removed: dropped,
                    full_state: false,
                };
                if let Err(e) = ctx.handler.apply(&update) {
                    tracing::warn!(type_url = t, error = %e, "the proxy kept resources it no longer subscribes to");
                }
            }
            tracing::debug!(type_url = t, subscribe = ?req.resource_names_subscribe, unsubscribe = ?req.resource_names_unsubscribe, "subscription");
            st.sent = Some(new);
            self.send(req);
        }
    }
}

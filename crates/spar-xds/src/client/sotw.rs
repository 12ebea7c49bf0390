//! One state-of-the-world ADS stream: every request of a type carries its whole
//! subscription; an ACK echoes the response's version and nonce, a NACK the previous
//! accepted version, the nonce and `error_detail`. A new stream re-subscribes with the last
//! accepted versions.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::state::{sotw_update, WARMING_TIMEOUT};
use super::{nack_status, Connected, Ctx, Ended, StreamError, MAX_MESSAGE};

struct Stream {
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
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
    s.subscribe(ctx, None);
    let mut responses = 0;
    let request = match super::with_token(&ctx.cfg, UnboundedReceiverStream::new(rx)) {
        Ok(r) => r,
        Err(error) => return Ended { responses, error },
    };
    let mut inbound = match grpc.stream_aggregated_resources(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Ended {
                responses,
                error: status.into(),
            }
        }
    };
    let _connected = Connected::new(ctx);
    tracing::info!(server = %ctx.cfg.server, "xDS stream open (state of the world)");
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
                s.subscribe(ctx, None);
            }
        }
    }
}

impl Stream {
    fn send(&mut self, mut req: DiscoveryRequest) {
        req.node = self.node.take();
        // A closed channel means the stream is gone; reading it reports why.
        let _ = self.tx.send(req);
    }

    fn on_response(&mut self, ctx: &mut Ctx, resp: DiscoveryResponse) {
        let type_url = resp.type_url.clone();
        let st = ctx.state.get(&type_url);
        st.nonce = resp.nonce.clone();
        let result = sotw_update(&type_url, &resp.version_info, &resp.resources, &st.held)
            .and_then(|u| ctx.state.apply(&*ctx.handler, &u));
        let ok = result.is_ok();
        match &result {
            Ok(()) => {
                ctx.stats.on_ack(&type_url);
                tracing::debug!(type_url, version = resp.version_info, "ACK");
            }
            Err(e) => {
                ctx.stats.on_nack(&type_url);
                tracing::warn!(type_url, version = resp.version_info, error = %e, "NACK: keeping the last accepted config");
            }
        }
        ctx.state.after_response(&type_url, ok, &*ctx.handler);
        // The ACK carries this type's subscription as it is now (it may have changed).
        let ack = result.err().map(nack_status);
        self.subscribe(ctx, Some((&type_url, ack)));
    }

    /// Sends a request for every type whose subscription changed, in warming order; with
    /// `answer`, also the ACK/NACK of that type (carrying its new subscription, if any).
    fn subscribe(
        &mut self,
        ctx: &mut Ctx,
        answer: Option<(&str, Option<envoy_types::pb::google::rpc::Status>)>,
    ) {
        let mut changes = ctx.state.changes(&*ctx.handler);
        if let Some((t, error_detail)) = answer {
            let new = changes
                .iter()
                .position(|(c, _, _)| *c == t)
                .map(|i| changes.remove(i).2);
            if let Some(n) = &new {
                ctx.state.drop_unsubscribed(&*ctx.handler, t, n);
            }
            let st = ctx.state.get(t);
            if new.is_some() {
                st.sent = new;
            }
            // A NACK names the version still in force; the state kept it.
            self.send(DiscoveryRequest {
                version_info: st.version.clone(),
                resource_names: st
                    .sent
                    .as_ref()
                    .map(|i| i.resource_names(t))
                    .unwrap_or_default(),
                type_url: t.to_string(),
                response_nonce: st.nonce.clone(),
                error_detail,
                ..Default::default()
            });
        }
        for (t, _, new) in changes {
            ctx.state.drop_unsubscribed(&*ctx.handler, t, &new);
            let st = ctx.state.get(t);
            // On a new stream the nonce is empty: a fresh subscription carrying the last
            // accepted version.
            self.send(DiscoveryRequest {
                version_info: st.version.clone(),
                resource_names: new.resource_names(t),
                type_url: t.to_string(),
                response_nonce: st.nonce.clone(),
                ..Default::default()
            });
            st.sent = Some(new);
        }
    }
}

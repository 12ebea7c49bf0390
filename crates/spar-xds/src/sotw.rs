//! State-of-the-world ADS: every response carries all subscribed resources of its type.
//!
//! Per type the stream remembers what it subscribed to (LDS/CDS wildcard, RDS/EDS/SDS by
//! name), the nonce and version last sent and a digest of what was sent. A request whose
//! nonce is the last one sent is an ACK, or a NACK when it carries `error_detail` (the proxy
//! keeps its last accepted version, which the request names). A request with an older nonce
//! answers a response that has since been superseded and is ignored, as Envoy expects.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use spar_translate::ProxyNode;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::metrics::Metrics;
use crate::resources::{fnv1a, is_wildcard_type, Encoded, TypeResources, WARMING_ORDER};
use crate::server::{Session, Shared};
use crate::source::ResourceSource;

type Tx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

pub(crate) async fn run<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    mut requests: Streaming<DiscoveryRequest>,
    tx: Tx,
) {
    if let Err(status) = serve(&shared, &mut requests, &tx).await {
        tracing::debug!(%status, "sotw stream ended");
        let _ = tx.send(Err(status)).await;
    }
}

#[derive(Default)]
struct TypeState {
    /// `None`: wildcard (everything of the type).
    names: Option<BTreeSet<String>>,
    nonce: String,
    version: String,
    digest: Option<u64>,
    /// When the config change behind the pending push was seen (convergence time).
    changed_at: Option<Instant>,
}

struct Conn<'a, S> {
    shared: &'a Shared<S>,
    tx: &'a Tx,
    node: ProxyNode,
    /// A proxyless gRPC client: names its listeners; resources come from
    /// [`ResourceSource::grpc_resources`].
    proxyless: bool,
    id: u64,
    generation: u64,
    current: Arc<Encoded>,
    types: HashMap<String, TypeState>,
    nonces: u64,
}

async fn serve<S: ResourceSource>(
    shared: &Shared<S>,
    requests: &mut Streaming<DiscoveryRequest>,
    tx: &Tx,
) -> Result<(), Status> {
    let Some(first) = requests.message().await? else {
        return Ok(());
    };
    let session = Session::open(shared, first.node.as_ref(), "sotw")?;
    let mut changes = session.changes.clone();
    let mut conn = Conn {
        shared,
        tx,
        current: session.current.clone(),
        node: session.node.clone(),
        proxyless: session.proxyless,
        id: session.id,
        generation: session.generation,
        types: HashMap::new(),
        nonces: 0,
    };
    conn.on_request(first).await?;
    loop {
        tokio::select! {
            req = requests.message() => match req? {
                Some(req) => conn.on_request(req).await?,
                None => return Ok(()),
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(()); // the source is gone: the control plane is shutting down
                }
                let generation = *changes.borrow_and_update();
                conn.on_change(generation).await?;
            }
        }
    }
}

fn subscription(type_url: &str, names: &[String], proxyless: bool) -> Option<BTreeSet<String>> {
    let legacy_wildcard = names.is_empty() && is_wildcard_type(type_url) && !proxyless;
    if legacy_wildcard || names.iter().any(|n| n == "*") {
        return None;
    }
    Some(names.iter().cloned().collect())
}

impl<S: ResourceSource> Conn<'_, S> {
    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Status> {
        let type_url = req.type_url.clone();
        let names = subscription(&type_url, &req.resource_names, self.proxyless);
        let st = self.types.entry(type_url.clone()).or_default();
        if req.response_nonce.is_empty() {
            // A new subscription (or a re-request after reconnecting): always answer.
            st.names = names;
            return self.subscribed(&type_url).await;
        }
        if req.response_nonce != st.nonce {
            return Ok(());
        }
        if let Some(err) = &req.error_detail {
            tracing::warn!(proxy = %self.node.id, type_url, error = %err.message, "NACK");
            self.shared
                .metrics
                .rejects
                .get_or_create(&Metrics::label(&type_url))
                .inc();
            self.shared
                .status
                .nacked(self.id, &type_url, &req.version_info, &err.message);
            st.changed_at = None;
            return Ok(());
        }
        self.shared
            .status
            .acked(self.id, &type_url, &req.version_info);
        if let Some(t) = st.changed_at.take() {
            self.shared
                .metrics
                .convergence
                .observe(t.elapsed().as_secs_f64());
        }
        if names != st.names {
            // An ACK that also changes the subscription (new route or cluster names).
            st.names = names;
            return self.subscribed(&type_url).await;
        }
        Ok(())
    }

    /// Answers a (changed) subscription. A proxyless client's listener names decide what is
    /// translated, so new names recompute everything and push what that changed.
    async fn subscribed(&mut self, type_url: &str) -> Result<(), Status> {
        if self.proxyless && type_url == spar_translate::type_url::LISTENER {
            self.current = self.compute();
            self.respond(type_url, true, None).await?;
            return self.push_changed(None).await;
        }
        self.respond(type_url, true, None).await
    }

    fn compute(&self) -> Arc<Encoded> {
        if !self.proxyless {
            return self.shared.source.resources(&self.node);
        }
        let listeners = self
            .types
            .get(spar_translate::type_url::LISTENER)
            .and_then(|t| t.names.clone())
            .unwrap_or_default();
        self.shared.source.grpc_resources(&self.node, &listeners)
    }

    async fn on_change(&mut self, generation: u64) -> Result<(), Status> {
        self.generation = generation;
        let next = self.compute();
        if Arc::ptr_eq(&next, &self.current) {
            return Ok(());
        }
        self.current = next;
        self.push_changed(Some(Instant::now())).await
    }

    /// Pushes every subscribed type whose resources changed, in warming order.
    async fn push_changed(&mut self, now: Option<Instant>) -> Result<(), Status> {
        for t in WARMING_ORDER {
            if self.types.contains_key(t) {
                self.respond(t, false, now).await?;
            }
        }
        // Types outside Envoy's usual set, in a stable order.
        let mut others: Vec<String> = self
            .types
            .keys()
            .filter(|t| !WARMING_ORDER.contains(&t.as_str()))
            .cloned()
            .collect();
        others.sort();
        for t in others {
            self.respond(&t, false, now).await?;
        }
        Ok(())
    }

    /// Sends the subscribed resources of `type_url`; unless `force`, only if they changed.
    async fn respond(
        &mut self,
        type_url: &str,
        force: bool,
        changed_at: Option<Instant>,
    ) -> Result<(), Status> {
        let st = self.types.entry(type_url.to_string()).or_default();
        let all = self.current.shared(type_url).cloned().unwrap_or_default();
        // Share the node class's resources when the proxy holds all of them (wildcard, or
        // named subscriptions that cover the type, as Envoy's EDS usually does); copy only
        // a true subset.
        let holds: Arc<TypeResources> = match &st.names {
            Some(names) if !all.keys().all(|k| names.contains(k)) => Arc::new(
                names
                    .iter()
                    .filter_map(|n| all.get(n).map(|r| (n.clone(), r.clone())))
                    .collect(),
            ),
            _ => all,
        };
        let mut digest_input = Vec::new();
        for (name, r) in holds.iter() {
            digest_input.extend_from_slice(name.as_bytes());
            digest_input.push(0);
            digest_input.extend_from_slice(r.version.as_bytes());
        }
        let digest = fnv1a(&digest_input);
        if !force && st.digest == Some(digest) {
            return Ok(());
        }
        self.nonces += 1;
        st.nonce = format!("{}-{}", self.generation, self.nonces);
        st.version = self.generation.to_string();
        st.digest = Some(digest);
        if changed_at.is_some() {
            st.changed_at = changed_at;
        }
        let resp = DiscoveryResponse {
            version_info: st.version.clone(),
            resources: holds.values().map(|r| r.any.clone()).collect(),
            type_url: type_url.to_string(),
            nonce: st.nonce.clone(),
            ..Default::default()
        };
        self.shared
            .metrics
            .pushes
            .get_or_create(&Metrics::label(type_url))
            .inc();
        self.shared.status.sent(
            self.id,
            type_url,
            &st.version,
            &st.nonce,
            holds.len(),
            holds,
        );
        self.tx
            .send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("proxy went away"))
    }
}

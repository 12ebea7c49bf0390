//! Delta (incremental) ADS: responses carry only resources that changed for the proxy and
//! the names of those that went away.
//!
//! Per type the stream remembers the subscription (wildcard and/or names), what the proxy
//! holds (name → version, seeded from `initial_resource_versions` on reconnect, so nothing
//! unchanged is resent after a control-plane restart), and the last nonce. A request with
//! that nonce is an ACK, or a NACK when it carries `error_detail`.
//!
//! After a NACK the proxy may hold its old versions of what it was sent (Envoy rejects a
//! response whole for some types and resource by resource for others), so the stream stops
//! assuming: the rejected response's resources count as not held (the next push resends
//! them) and the names it removed count as still held (the next push removes them again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use spar_translate::ProxyNode;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::metrics::Metrics;
use crate::resources::{is_wildcard_type, Encoded, TypeResources, WARMING_ORDER};
use crate::server::{Session, Shared};
use crate::source::ResourceSource;

type Tx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

pub(crate) async fn run<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    mut requests: Streaming<DeltaDiscoveryRequest>,
    tx: Tx,
) {
    if let Err(status) = serve(&shared, &mut requests, &tx).await {
        tracing::debug!(%status, "delta stream ended");
        let _ = tx.send(Err(status)).await;
    }
}

#[derive(Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the proxy holds (or will, once it accepts the last response): name → version.
    holds: BTreeMap<String, String>,
    nonce: String,
    version: String,
    acked: String,
    changed_at: Option<Instant>,
    /// The last response: the names it sent, and the names it removed with the versions
    /// held before, to undo the bookkeeping when the proxy rejects it.
    last_updated: Vec<String>,
    last_removed: Vec<(String, String)>,
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
    requests: &mut Streaming<DeltaDiscoveryRequest>,
    tx: &Tx,
) -> Result<(), Status> {
    let Some(first) = requests.message().await? else {
        return Ok(());
    };
    let session = Session::open(shared, first.node.as_ref(), "delta")?;
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
                    return Ok(());
                }
                let generation = *changes.borrow_and_update();
                conn.on_change(generation).await?;
            }
        }
    }
}

impl<S: ResourceSource> Conn<'_, S> {
    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        let type_url = req.type_url.clone();
        let first = !self.types.contains_key(&type_url);
        let st = self.types.entry(type_url.clone()).or_default();
        if !req.response_nonce.is_empty() && req.response_nonce == st.nonce {
            if let Some(err) = &req.error_detail {
                tracing::warn!(proxy = %self.node.id, type_url, error = %err.message, "NACK");
                self.shared
                    .metrics
                    .rejects
                    .get_or_create(&Metrics::label(&type_url))
                    .inc();
                // Delta requests carry no accepted version; the last ACKed one stays.
                self.shared
                    .status
                    .nacked(self.id, &type_url, &st.acked, &err.message);
                st.changed_at = None;
                for n in std::mem::take(&mut st.last_updated) {
                    st.holds.remove(&n);
                }
                for (n, v) in std::mem::take(&mut st.last_removed) {
                    st.holds.insert(n, v);
                }
            } else {
                st.acked = st.version.clone();
                self.shared.status.acked(self.id, &type_url, &st.version);
                if let Some(t) = st.changed_at.take() {
                    self.shared
                        .metrics
                        .convergence
                        .observe(t.elapsed().as_secs_f64());
                }
            }
        }
        if first {
            st.holds = req.initial_resource_versions.clone().into_iter().collect();
            // Legacy wildcard: the first LDS/CDS request naming nothing asks for everything.
            st.wildcard = req.resource_names_subscribe.is_empty()
                && is_wildcard_type(&type_url)
                && !self.proxyless;
        }
        let mut newly = BTreeSet::new();
        for n in &req.resource_names_subscribe {
            if n == "*" {
                st.wildcard = true;
            } else if st.names.insert(n.clone()) {
                newly.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                st.wildcard = false;
            } else {
                st.names.remove(n);
            }
            // The proxy drops what it unsubscribed from; it must be resent if asked again.
            st.holds.remove(n);
        }
        let subscribing = first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty();
        if subscribing {
            if self.proxyless && type_url == spar_translate::type_url::LISTENER {
                // A proxyless client's listener names decide what is translated.
                self.current = self.compute();
                self.respond(&type_url, true, &newly, None).await?;
                return self.push_changed(None).await;
            }
            // Answer even when nothing changed, so the proxy's initial fetch completes.
            self.respond(&type_url, true, &newly, None).await?;
        }
        Ok(())
    }

    fn compute(&self) -> Arc<Encoded> {
        if !self.proxyless {
            return self.shared.source.resources(&self.node);
        }
        let listeners = self
            .types
            .get(spar_translate::type_url::LISTENER)
            .map(|t| t.names.clone())
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

    /// Pushes what changed for every subscribed type, in warming order.
    async fn push_changed(&mut self, now: Option<Instant>) -> Result<(), Status> {
        let none = BTreeSet::new();
        for t in WARMING_ORDER {
            if self.types.contains_key(t) {
                self.respond(t, false, &none, now).await?;
            }
        }
        let mut others: Vec<String> = self
            .types
            .keys()
            .filter(|t| !WARMING_ORDER.contains(&t.as_str()))
            .cloned()
            .collect();
        others.sort();
        for t in others {
            self.respond(&t, false, &none, now).await?;
        }
        Ok(())
    }

    /// Sends what changed for `type_url`. `requested` are names just subscribed to: ones
    /// that do not exist are reported removed, so the proxy stops waiting for them.
    async fn respond(
        &mut self,
        type_url: &str,
        force: bool,
        requested: &BTreeSet<String>,
        changed_at: Option<Instant>,
    ) -> Result<(), Status> {
        let st = self.types.entry(type_url.to_string()).or_default();
        let empty = TypeResources::new();
        let all = self.current.of(type_url).unwrap_or(&empty);
        let in_scope = |n: &str| st.wildcard || st.names.contains(n);
        let updated: Vec<(&String, &crate::resources::EncodedResource)> = all
            .iter()
            .filter(|(n, r)| in_scope(n) && st.holds.get(*n) != Some(&r.version))
            .collect();
        let mut removed: BTreeSet<String> = st
            .holds
            .keys()
            .filter(|n| !all.contains_key(*n) || !in_scope(n))
            .cloned()
            .collect();
        removed.extend(requested.iter().filter(|n| !all.contains_key(*n)).cloned());
        if !force && updated.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let resources: Vec<Resource> = updated
            .iter()
            .map(|(n, r)| Resource {
                name: (*n).clone(),
                version: r.version.clone(),
                resource: Some(r.any.clone()),
                ..Default::default()
            })
            .collect();
        st.last_updated = updated.iter().map(|(n, _)| (*n).clone()).collect();
        st.last_removed = removed
            .iter()
            .filter_map(|n| Some((n.clone(), st.holds.get(n)?.clone())))
            .collect();
        for (n, r) in &updated {
            st.holds.insert((*n).clone(), r.version.clone());
        }
        for n in &removed {
            st.holds.remove(n);
        }
        self.nonces += 1;
        st.nonce = format!("{}-{}", self.generation, self.nonces);
        st.version = self.generation.to_string();
        if changed_at.is_some() {
            st.changed_at = changed_at;
        }
        // Share the node class's resources when the proxy holds exactly all of them.
        let holds: Arc<TypeResources> = match self.current.shared(type_url) {
            Some(shared)
                if st.holds.len() == shared.len()
                    && shared.keys().all(|k| st.holds.contains_key(k)) =>
            {
                shared.clone()
            }
            _ => Arc::new(
                st.holds
                    .keys()
                    .filter_map(|n| all.get(n).map(|r| (n.clone(), r.clone())))
                    .collect(),
            ),
        };
        let resp = DeltaDiscoveryResponse {
            system_version_info: st.version.clone(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed.into_iter().collect(),
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
            resp.resources.len(),
            holds,
        );
        self.tx
            .send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("proxy went away"))
    }
}

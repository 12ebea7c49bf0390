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
//! assuming: it goes back to what the proxy held before that response, so the next push
//! resends what was rejected and removes again what it removed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use spar_translate::ProxyNode;
use tonic::Status;

use crate::body::Protocol;
use crate::held::{diff, Holds, Items, Names, Scope};
use crate::identity::OwnSecrets;
use crate::metrics::Metrics;
use crate::resources::{is_wildcard_type, Encoded, WARMING_ORDER};
use crate::server::{Caller, Session, Shared};
use crate::source::ResourceSource;
use crate::throttle::Throttle;
use crate::transport::{Requests, Tx};
use crate::wire::DeltaResponse;

pub(crate) async fn run<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    mut requests: Requests<DeltaDiscoveryRequest>,
    tx: Tx,
    caller: Option<Caller>,
) {
    if let Err(status) = serve(&shared, &mut requests, &tx, caller.as_ref()).await {
        tracing::debug!(%status, "delta stream ended");
        let _ = tx.send(Err(status)).await;
    }
}

#[derive(Default)]
struct TypeState {
    /// This type's `pilot_xds_pushes` counter, looked up once rather than on every push.
    pushes: Option<crate::metrics::Count>,
    wildcard: bool,
    names: Names,
    /// What the proxy holds (or will, once it accepts the last response).
    holds: Holds,
    nonce: String,
    version: String,
    acked: String,
    changed_at: Option<Instant>,
    /// What the proxy held before the last response, to go back to when it rejects that
    /// response: what it was sent is then not held (or held at the old version), and
    /// what it was told to remove still is.
    before_last: Holds,
}

struct Conn<'a, S> {
    shared: &'a Shared<S>,
    tx: &'a Tx,
    node: ProxyNode,
    /// A proxyless gRPC client: names its listeners; resources come from
    /// [`ResourceSource::grpc_resources`].
    proxyless: bool,
    status: crate::status::ConnStatus,
    generation: u64,
    /// The node class's output this connection follows.
    base: Arc<Encoded>,
    /// What it is sent: `base` plus its own secrets ([`crate::identity`]).
    current: Arc<Encoded>,
    own: Option<OwnSecrets>,
    types: crate::type_map::TypeMap<TypeState>,
    nonces: u64,
    throttle: Throttle,
}

async fn serve<S: ResourceSource>(
    shared: &Shared<S>,
    requests: &mut Requests<DeltaDiscoveryRequest>,
    tx: &Tx,
    caller: Option<&Caller>,
) -> Result<(), Status> {
    let Some(first) = requests.message().await? else {
        return Ok(());
    };
    let mut session = Session::open(shared, first.node.as_ref(), "delta", caller)?;
    let mut changes = session.changes.clone();
    let mut conn = Conn {
        shared,
        tx,
        base: session.base.clone(),
        current: session.current.clone(),
        own: session.own.take(),
        node: session.node.clone(),
        proxyless: session.proxyless,
        status: session.status.clone(),
        generation: session.generation,
        types: Default::default(),
        nonces: 0,
        throttle: Throttle::new(shared.permits.clone(), crate::throttle::ANSWER_TIMEOUT),
    };
    conn.on_request(first).await?;
    loop {
        let deadline = conn.throttle.deadline();
        tokio::select! {
            () = crate::throttle::until(deadline) => conn.throttle.expire(),
            req = requests.message() => match req? {
                Some(req) => conn.on_request(req).await?,
                None => return Ok(()),
            },
            () = crate::identity::renewal(conn.own.as_ref()) => conn.renew().await?,
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
        let st = self.types.entry_or_default(&type_url);
        if !req.response_nonce.is_empty() && req.response_nonce == st.nonce {
            self.throttle.answered(&type_url);
            if let Some(err) = &req.error_detail {
                tracing::warn!(proxy = %self.node.id, type_url, error = %err.message, "NACK");
                self.shared
                    .metrics
                    .rejects
                    .get_or_create(&Metrics::label(&type_url))
                    .inc();
                // Delta requests carry no accepted version; the last ACKed one stays.
                self.status.nacked(&type_url, &st.acked, &err.message);
                st.changed_at = None;
                st.holds = std::mem::take(&mut st.before_last);
            } else {
                st.acked = st.version.clone();
                self.status.acked(&type_url, &st.version);
                if let Some(t) = st.changed_at.take() {
                    self.shared
                        .metrics
                        .convergence
                        .observe(t.elapsed().as_secs_f64());
                }
            }
        }
        if first {
            st.holds = Holds::Versions(
                req.initial_resource_versions
                    .iter()
                    .map(|(n, v)| (Arc::from(n.as_str()), Arc::from(v.as_str())))
                    .collect(),
            );
            // Legacy wildcard: the first LDS/CDS request naming nothing asks for everything.
            st.wildcard = req.resource_names_subscribe.is_empty()
                && is_wildcard_type(&type_url)
                && !self.proxyless;
        }
        let subscribing = first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty();
        let plain = |l: &[String]| !l.iter().any(|n| n == "*");
        if st.names.is_empty()
            && req.resource_names_unsubscribe.is_empty()
            && !req.resource_names_subscribe.is_empty()
            && plain(&req.resource_names_subscribe)
        {
            // The usual first subscription (every EDS cluster): no set built per proxy.
            st.names = self.shared.names.intern_listed(
                &req.resource_names_subscribe,
                self.current.shared(&type_url),
            );
        } else if !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty()
        {
            let mut names: BTreeSet<Arc<str>> = (*st.names).clone();
            for n in &req.resource_names_subscribe {
                if n == "*" {
                    st.wildcard = true;
                } else {
                    names.insert(Arc::from(n.as_str()));
                }
            }
            let mut held = None;
            for n in &req.resource_names_unsubscribe {
                if n == "*" {
                    st.wildcard = false;
                } else {
                    names.remove(n.as_str());
                }
                // The proxy drops what it unsubscribed from; it must be resent if asked again.
                if st.holds.version(n).is_some() {
                    held.get_or_insert_with(|| st.holds.to_versions())
                        .remove(n.as_str());
                }
            }
            if let Some(h) = held {
                st.holds = Holds::Versions(h);
            }
            st.names = self.shared.names.intern(names, self.current.of(&type_url));
        }
        if subscribing {
            if self.proxyless && type_url == spar_translate::type_url::LISTENER {
                // A proxyless client's listener names decide what is translated.
                self.set_base(self.compute());
                self.respond(&type_url, true, &req.resource_names_subscribe, None)
                    .await?;
                return self.push_changed(None).await;
            }
            // Answer even when nothing changed, so the proxy's initial fetch completes.
            self.respond(&type_url, true, &req.resource_names_subscribe, None)
                .await?;
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
            .map(|t| t.names.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        self.shared.source.grpc_resources(&self.node, &listeners)
    }

    async fn on_change(&mut self, generation: u64) -> Result<(), Status> {
        self.generation = generation;
        // A config change may have changed the trust bundle (MeshConfig caCertificates).
        let roots_changed = self.own.as_mut().is_some_and(|o| o.refresh_roots());
        let next = self.compute();
        if Arc::ptr_eq(&next, &self.base) && !roots_changed {
            return Ok(());
        }
        self.set_base(next);
        self.push_changed(Some(Instant::now())).await
    }

    fn set_base(&mut self, base: Arc<Encoded>) {
        self.current =
            crate::identity::for_connection(&base, self.own.as_ref(), &self.node.namespace);
        self.base = base;
    }

    /// Renews the connection's own certificate and pushes it; a failed renewal keeps the
    /// current one (it is retried shortly).
    async fn renew(&mut self) -> Result<(), Status> {
        let Some(own) = &mut self.own else {
            return Ok(());
        };
        if let Err(status) = own.renew() {
            tracing::warn!(proxy = %self.node.id, identity = %own.identity(), %status, "renewing the workload certificate failed; keeping the current one");
            return Ok(());
        }
        self.set_base(self.base.clone());
        self.push_changed(Some(Instant::now())).await
    }

    /// Pushes what changed for every subscribed type, in warming order.
    async fn push_changed(&mut self, now: Option<Instant>) -> Result<(), Status> {
        let none: [String; 0] = [];
        for t in WARMING_ORDER {
            if self.types.contains_key(t) {
                self.respond(t, false, &none, now).await?;
            }
        }
        let mut others: Vec<String> = self
            .types
            .keys()
            .filter(|t| !WARMING_ORDER.contains(t))
            .map(str::to_string)
            .collect();
        others.sort();
        for t in others {
            self.respond(&t, false, &none, now).await?;
        }
        Ok(())
    }

    /// Sends what changed for `type_url`. `requested` are names just subscribed to: ones
    /// that do not exist are reported removed, so the proxy stops waiting for them (`*`
    /// is never a resource name).
    async fn respond(
        &mut self,
        type_url: &str,
        force: bool,
        requested: &[String],
        changed_at: Option<Instant>,
    ) -> Result<(), Status> {
        let st = self.types.entry_or_default(type_url);
        let all = self.current.shared(type_url).cloned().unwrap_or_default();
        let scope = Scope {
            wildcard: st.wildcard,
            names: &st.names,
        };
        let mut d = diff(&all, self.current.change(type_url), scope, &st.holds);
        d.removed.extend(
            requested
                .iter()
                .filter(|n| *n != "*" && !all.contains_key(n.as_str()))
                .map(|n| Arc::from(n.as_str())),
        );
        if !force && d.updated.is_empty() && d.removed.is_empty() {
            // Nothing to send; what the proxy holds may still be a new (equal) map.
            st.holds = Holds::Sent(d.after);
            return Ok(());
        }
        st.before_last = std::mem::replace(&mut st.holds, Holds::Sent(d.after.clone()));
        self.nonces += 1;
        st.nonce = format!("{}-{}", self.generation, self.nonces);
        st.version = self.generation.to_string();
        if changed_at.is_some() {
            st.changed_at = changed_at;
        }
        let body = match &d.updated {
            Items::All(map) => Some(self.shared.bodies.get(map, Protocol::Delta)),
            Items::Some(_) => None,
        };
        let resp = DeltaResponse {
            system_version_info: st.version.clone(),
            resources: d.updated,
            body,
            type_url: type_url.to_string(),
            removed_resources: d.removed,
            nonce: st.nonce.clone(),
        };
        self.shared.metrics.count_push(&mut st.pushes, type_url);
        self.status.sent(
            type_url,
            &st.version,
            &st.nonce,
            resp.resources.len(),
            d.after,
        );
        self.throttle
            .sending(type_url, crate::wire::WireMessage::encoded_len(&resp))
            .await;
        self.tx
            .send(Ok(Box::new(resp)))
            .await
            .map_err(|_| Status::cancelled("proxy went away"))
    }
}

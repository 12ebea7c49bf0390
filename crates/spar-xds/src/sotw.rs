//! State-of-the-world ADS: a response carries every subscribed resource of its type for
//! LDS and CDS; for EDS, RDS and SDS (where leaving a resource out does not remove it, by
//! the xDS protocol) a push carries only the resources that changed, as istiod does for
//! EDS, so an endpoint change costs one assignment per proxy, not all of them. A new or
//! changed subscription is always answered with everything it names.
//!
//! Per type the stream remembers what it subscribed to (LDS/CDS wildcard, RDS/EDS/SDS by
//! name), the nonce and version last sent and what the proxy holds ([`crate::held`]). A
//! request whose nonce is the last one sent is an ACK, or a NACK when it carries
//! `error_detail` (the proxy keeps its last accepted version, which the request names; the
//! next push of that type resends everything). A request with an older nonce answers a
//! response that has since been superseded and is ignored, as Envoy expects.

use std::sync::Arc;
use std::time::Instant;

use spar_translate::ProxyNode;
use tonic::Status;

use crate::body::Protocol;
use crate::held::{diff, same_names, Holds, Items, Names, Scope};
use crate::identity::OwnSecrets;
use crate::metrics::Metrics;
use crate::resources::{is_wildcard_type, Encoded, WARMING_ORDER};
use crate::server::{Caller, Session, Shared};
use crate::sotw_request::SotwRequest;
use crate::source::ResourceSource;
use crate::throttle::Throttle;
use crate::transport::{Requests, Tx};
use crate::wire::SotwResponse;

pub(crate) async fn run<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    mut requests: Requests<SotwRequest>,
    tx: Tx,
    caller: Option<Caller>,
) {
    if let Err(status) = serve(&shared, &mut requests, &tx, caller.as_ref()).await {
        tracing::debug!(%status, "sotw stream ended");
        let _ = tx.send(Err(status)).await;
    }
}

#[derive(Default)]
struct TypeState {
    /// This type's `pilot_xds_pushes` counter, looked up once rather than on every push.
    pushes: Option<crate::metrics::Count>,
    wildcard: bool,
    names: Names,
    nonce: String,
    version: String,
    /// What the proxy holds once it accepts what it was sent.
    holds: Holds,
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
    requests: &mut Requests<SotwRequest>,
    tx: &Tx,
    caller: Option<&Caller>,
) -> Result<(), Status> {
    let Some(first) = requests.message().await? else {
        return Ok(());
    };
    let mut session = Session::open(shared, first.node.as_ref(), "sotw", caller)?;
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
                    return Ok(()); // the source is gone: the control plane is shutting down
                }
                let generation = *changes.borrow_and_update();
                conn.on_change(generation).await?;
            }
        }
    }
}

/// Whether a request subscribes to everything of its type.
fn is_wildcard(type_url: &str, names: &[&[u8]], proxyless: bool) -> bool {
    let legacy_wildcard = names.is_empty() && is_wildcard_type(type_url) && !proxyless;
    legacy_wildcard || names.iter().any(|n| *n == b"*")
}

/// Rejects a request whose resource names are not UTF-8 (Envoy never sends one).
fn check_utf8(names: &[&[u8]]) -> Result<(), Status> {
    match names.iter().find(|n| std::str::from_utf8(n).is_err()) {
        None => Ok(()),
        Some(n) => Err(Status::invalid_argument(format!(
            "DiscoveryRequest.resource_names: {:?} is not UTF-8; resource names are strings",
            String::from_utf8_lossy(n)
        ))),
    }
}

impl<S: ResourceSource> Conn<'_, S> {
    async fn on_request(&mut self, req: SotwRequest) -> Result<(), Status> {
        let type_url = req.type_url.clone();
        let names = req.resource_names();
        let wildcard = is_wildcard(&type_url, &names, self.proxyless);
        let st = self.types.entry_or_default(&type_url);
        // Envoy repeats its whole subscription in every ACK: compare before building a set.
        let same_names = st.wildcard == wildcard
            && (wildcard && st.names.is_empty() || same_names(&names, &st.names));
        if !same_names {
            // The names are read as bytes; a changed subscription must be UTF-8, as the
            // proto's `string` says (equal to held names, they already are).
            check_utf8(&names)?;
        }
        let resubscribe = |st: &mut TypeState, shared: &Shared<S>, current: &Encoded| {
            st.wildcard = wildcard;
            if !same_names {
                st.names = if wildcard {
                    Names::default()
                } else {
                    shared
                        .names
                        .intern_listed(&names, current.shared(&type_url))
                };
            }
        };
        if req.response_nonce.is_empty() {
            // A new subscription (or a re-request after reconnecting): always answer.
            resubscribe(st, self.shared, &self.current);
            return self.subscribed(&type_url).await;
        }
        if req.response_nonce != st.nonce {
            return Ok(());
        }
        self.throttle.answered(&type_url);
        if let Some(err) = &req.error_detail {
            tracing::warn!(proxy = %self.node.id, type_url, error = %err.message, "NACK");
            self.shared
                .metrics
                .rejects
                .get_or_create(&Metrics::label(&type_url))
                .inc();
            self.status
                .nacked(&type_url, &req.version_info, &err.message);
            st.changed_at = None;
            // Which of the response the proxy kept is unknown: the next push resends all.
            st.holds = Holds::default();
            return Ok(());
        }
        self.status.acked(&type_url, &req.version_info);
        if let Some(t) = st.changed_at.take() {
            self.shared
                .metrics
                .convergence
                .observe(t.elapsed().as_secs_f64());
        }
        if !same_names {
            // An ACK that also changes the subscription (new route or cluster names).
            resubscribe(st, self.shared, &self.current);
            return self.subscribed(&type_url).await;
        }
        Ok(())
    }

    /// Answers a (changed) subscription. A proxyless client's listener names decide what is
    /// translated, so new names recompute everything and push what that changed.
    async fn subscribed(&mut self, type_url: &str) -> Result<(), Status> {
        if self.proxyless && type_url == spar_translate::type_url::LISTENER {
            self.set_base(self.compute());
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
            .filter(|t| !t.wildcard)
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
            .filter(|t| !WARMING_ORDER.contains(t))
            .map(str::to_string)
            .collect();
        others.sort();
        for t in others {
            self.respond(&t, false, now).await?;
        }
        Ok(())
    }

    /// Sends the subscribed resources of `type_url` (all of them when `force` or for LDS
    /// and CDS; otherwise only the changed ones); unless `force`, only if something changed.
    async fn respond(
        &mut self,
        type_url: &str,
        force: bool,
        changed_at: Option<Instant>,
    ) -> Result<(), Status> {
        let st = self.types.entry_or_default(type_url);
        let all = self.current.shared(type_url).cloned().unwrap_or_default();
        let scope = Scope {
            wildcard: st.wildcard,
            names: &st.names,
        };
        let d = diff(&all, self.current.change(type_url), scope, &st.holds);
        let complete = force || is_wildcard_type(type_url);
        // Outside LDS and CDS a resource left out is not removed, so removals alone need
        // no response.
        let changed = !d.updated.is_empty() || (complete && !d.removed.is_empty());
        st.holds = Holds::Sent(d.after.clone());
        if !force && !changed {
            return Ok(());
        }
        let resources = if complete {
            Items::All(d.after.clone())
        } else {
            d.updated
        };
        self.nonces += 1;
        st.nonce = format!("{}-{}", self.generation, self.nonces);
        st.version = self.generation.to_string();
        if changed_at.is_some() {
            st.changed_at = changed_at;
        }
        let body = match &resources {
            Items::All(map) => Some(self.shared.bodies.get(map, Protocol::Sotw)),
            Items::Some(_) => None,
        };
        let resp = SotwResponse {
            version_info: st.version.clone(),
            resources,
            body,
            type_url: type_url.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_must_be_utf8() {
        let good: [&[u8]; 2] = [b"outbound|80||a", b"*"];
        assert!(check_utf8(&good).is_ok());
        let bad: [&[u8]; 2] = [b"a", b"b\xff"];
        let err = check_utf8(&bad).expect_err("rejected");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("resource_names"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn wildcards() {
        let t = spar_translate::type_url::CLUSTER;
        assert!(is_wildcard(t, &[], false));
        assert!(
            !is_wildcard(t, &[], true),
            "a proxyless client names what it wants"
        );
        assert!(is_wildcard(
            spar_translate::type_url::ENDPOINT,
            &[&b"*"[..]],
            false
        ));
        assert!(!is_wildcard(spar_translate::type_url::ENDPOINT, &[], false));
    }
}

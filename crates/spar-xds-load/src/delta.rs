//! A simulated sidecar on delta (incremental) ADS: wildcard CDS and LDS, EDS and RDS
//! subscribed by name as clusters and listeners arrive and unsubscribed as they go. Every
//! response is ACKed by nonce; subscription changes go in their own requests, as Envoy
//! sends them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::proxy::{
    announce, check_target, rds_names, Holdings, Identity, ProxyError, Shared, Target, CLUSTER,
    ENDPOINT, LISTENER, ROUTE,
};
use crate::scan;

type Tx = mpsc::Sender<DeltaDiscoveryRequest>;

/// What the delta stream needs beyond [`Holdings`]: per cluster its EDS name, per listener
/// its route names, so removals can be followed.
#[derive(Default)]
struct State {
    held: Holdings,
    clusters: BTreeMap<String, Option<String>>,
    listeners: BTreeMap<String, Vec<String>>,
    eds_subscribed: BTreeSet<String>,
    rds_subscribed: BTreeSet<String>,
}

/// Runs one proxy until its stream ends or fails.
pub async fn run(shared: Arc<Shared>, id: Identity) -> Result<(), ProxyError> {
    let channel = crate::connect(&shared).await?;
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let mut first = subscribe(CLUSTER, Vec::new(), Vec::new());
    first.node = Some(id.node());
    send(&tx, first).await?;
    send(&tx, subscribe(LISTENER, Vec::new(), Vec::new())).await?;
    let mut stream = crate::wire::delta(channel, ReceiverStream::new(rx)).await?;
    let mut target = shared.target.clone();
    let mut st = State::default();
    loop {
        tokio::select! {
            resp = stream.message() => {
                let resp = resp?.ok_or(ProxyError::Closed)?;
                let t = target.borrow().clone();
                on_response(&shared, &id, &tx, &mut st, t.as_deref(), resp).await?;
            }
            changed = target.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let t = target.borrow_and_update().clone();
                announce(&shared, &st.held, id.index, t.as_deref());
            }
        }
    }
}

async fn on_response(
    shared: &Shared,
    id: &Identity,
    tx: &Tx,
    st: &mut State,
    target: Option<&Target>,
    resp: crate::wire::DeltaDiscoveryResponse,
) -> Result<(), ProxyError> {
    let ack = DeltaDiscoveryRequest {
        type_url: resp.type_url.clone(),
        response_nonce: resp.nonce.clone(),
        ..Default::default()
    };
    let gone = resp.removed_resources.iter();
    match resp.type_url.as_str() {
        CLUSTER => {
            for n in gone {
                st.clusters.remove(n);
            }
            for r in &resp.resources {
                let eds = match &r.resource {
                    Some(any) => scan::eds_name(&any.value)?,
                    None => None,
                };
                st.clusters.insert(r.name.clone(), eds);
            }
            st.held.clusters = st.clusters.len();
            st.held.got_cds = true;
            send(tx, ack).await?;
            let want: BTreeSet<String> = st.clusters.values().flatten().cloned().collect();
            resubscribe(tx, ENDPOINT, &mut st.eds_subscribed, &want).await?;
            st.held.eds_wanted = shared.intern(want.into_iter().collect());
        }
        ENDPOINT => {
            for n in gone {
                st.held.eds_held.remove(n);
            }
            for r in &resp.resources {
                st.held.eds_held.insert(r.name.clone());
            }
            send(tx, ack).await?;
            for r in &resp.resources {
                if let Some(any) = &r.resource {
                    check_target(shared, &mut st.held, id.index, target, &r.name, &any.value)?;
                }
            }
        }
        LISTENER => {
            for n in gone {
                st.listeners.remove(n);
            }
            for r in &resp.resources {
                let mut names = Vec::new();
                if let Some(any) = &r.resource {
                    rds_names(&any.value, &mut names)?;
                }
                st.listeners.insert(r.name.clone(), names);
            }
            st.held.listeners = st.listeners.len();
            st.held.got_lds = true;
            send(tx, ack).await?;
            let want: BTreeSet<String> = st.listeners.values().flatten().cloned().collect();
            resubscribe(tx, ROUTE, &mut st.rds_subscribed, &want).await?;
            st.held.rds_wanted = want.into_iter().collect();
        }
        ROUTE => {
            for n in gone {
                st.held.rds_held.remove(n);
            }
            for r in &resp.resources {
                st.held.rds_held.insert(r.name.clone());
            }
            send(tx, ack).await?;
        }
        _ => send(tx, ack).await?,
    }
    st.held.check_full(shared);
    Ok(())
}

/// Subscribes to names newly wanted and unsubscribes from those no longer wanted.
async fn resubscribe(
    tx: &Tx,
    type_url: &str,
    subscribed: &mut BTreeSet<String>,
    want: &BTreeSet<String>,
) -> Result<(), ProxyError> {
    let add: Vec<String> = want.difference(subscribed).cloned().collect();
    let drop: Vec<String> = subscribed.difference(want).cloned().collect();
    if add.is_empty() && drop.is_empty() {
        return Ok(());
    }
    subscribed.clone_from(want);
    send(tx, subscribe(type_url, add, drop)).await
}

fn subscribe(type_url: &str, add: Vec<String>, drop: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: add,
        resource_names_unsubscribe: drop,
        ..Default::default()
    }
}

async fn send(tx: &Tx, req: DeltaDiscoveryRequest) -> Result<(), ProxyError> {
    tx.send(req).await.map_err(|_| ProxyError::Closed)
}

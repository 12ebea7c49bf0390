//! A simulated sidecar on delta (incremental) ADS: wildcard CDS and LDS, EDS and RDS
//! subscribed by name as clusters and listeners arrive and unsubscribed as they go. Every
//! response is ACKed by nonce; subscription changes go in their own requests, as Envoy
//! sends them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use crate::names::{IdSet, NameId};
use crate::proxy::{
    announce, check_target, rds_names, Holdings, Identity, ProxyError, Shared, Target, CLUSTER,
    ENDPOINT, LISTENER, ROUTE,
};
use crate::scan;
use crate::wire::{self, Response};

type Tx = crate::grpc::Stream<DeltaDiscoveryRequest>;

const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// What the delta stream needs beyond [`Holdings`]: per cluster its EDS name, per listener
/// its route names, so removals can be followed.
#[derive(Default)]
struct State {
    held: Holdings,
    clusters: HashMap<NameId, Option<NameId>, foldhash::fast::RandomState>,
    listeners: BTreeMap<String, Vec<String>>,
    eds_subscribed: IdSet,
    rds_subscribed: BTreeSet<String>,
}

/// Runs one proxy until its stream ends or fails.
pub async fn run(shared: Arc<Shared>, id: Identity) -> Result<(), ProxyError> {
    let conn = crate::connect(&shared).await?;
    let mut stream = Tx::open(conn, DELTA).await?;
    let mut first = subscribe(CLUSTER, Vec::new(), Vec::new());
    first.node = Some(id.node());
    stream.send(&first)?;
    stream.send(&subscribe(LISTENER, Vec::new(), Vec::new()))?;
    let mut target = shared.target.clone();
    let mut st = State::default();
    loop {
        tokio::select! {
            resp = stream.message() => {
                let msg = resp?.ok_or(ProxyError::Closed)?;
                let resp = Response::delta(&msg)?;
                let t = target.borrow().clone();
                on_response(&shared, &id, &mut stream, &mut st, t.as_deref(), resp)?;
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

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn on_response(
    shared: &Shared,
    id: &Identity,
    tx: &mut Tx,
    st: &mut State,
    target: Option<&Target>,
    resp: Response<'_>,
) -> Result<(), ProxyError> {
    let ack = DeltaDiscoveryRequest {
        type_url: resp.type_url(),
        response_nonce: resp.nonce(),
        ..Default::default()
    };
    let names = &shared.names;
    match resp.type_url {
        t if t == CLUSTER.as_bytes() => {
            for n in &resp.removed {
                st.clusters.remove(&names.id(n));
            }
            for r in &resp.resources {
                let (name, any) = wire::delta_resource(r)?;
                let eds = match any {
                    Some(value) => scan::eds_name(value)?.map(|n| names.id(n)),
                    None => None,
                };
                st.clusters.insert(names.id(name), eds);
            }
            st.held.clusters = st.clusters.len();
            st.held.got_cds = true;
            tx.send(&ack)?;
            let mut want = IdSet::default();
            for eds in st.clusters.values().flatten() {
                want.insert(*eds);
            }
            let add: Vec<_> = want.difference(&st.eds_subscribed).collect();
            let drop: Vec<_> = st.eds_subscribed.difference(&want).collect();
            if !add.is_empty() || !drop.is_empty() {
                let req = subscribe(
                    ENDPOINT,
                    names.sorted_names(&add),
                    names.sorted_names(&drop),
                );
                tx.send(&req)?;
            }
            st.eds_subscribed.clone_from(&want);
            st.held.eds_wanted = shared.intern(want);
        }
        t if t == ENDPOINT.as_bytes() => {
            for n in &resp.removed {
                st.held.eds_held.remove(names.id(n));
            }
            let mut found = Vec::new();
            for r in &resp.resources {
                let (name, any) = wire::delta_resource(r)?;
                st.held.eds_held.insert(names.id(name));
                if let (Some(t), Some(value)) = (target, any) {
                    if t.cluster.as_bytes() == name {
                        found.push((name, value));
                    }
                }
            }
            tx.send(&ack)?;
            for (name, value) in found {
                check_target(shared, &mut st.held, id.index, target, name, value)?;
            }
        }
        t if t == LISTENER.as_bytes() => {
            for n in &resp.removed {
                st.listeners.remove(&lossy(n));
            }
            for r in &resp.resources {
                let (name, any) = wire::delta_resource(r)?;
                let mut routes = Vec::new();
                if let Some(value) = any {
                    rds_names(value, &mut routes)?;
                }
                st.listeners.insert(lossy(name), routes);
            }
            st.held.listeners = st.listeners.len();
            st.held.got_lds = true;
            tx.send(&ack)?;
            let want: BTreeSet<String> = st.listeners.values().flatten().cloned().collect();
            resubscribe(tx, ROUTE, &mut st.rds_subscribed, &want)?;
            st.held.rds_wanted = want.into_iter().collect();
        }
        t if t == ROUTE.as_bytes() => {
            for n in &resp.removed {
                st.held.rds_held.remove(&lossy(n));
            }
            for r in &resp.resources {
                let (name, _) = wire::delta_resource(r)?;
                st.held.rds_held.insert(lossy(name));
            }
            tx.send(&ack)?;
        }
        _ => tx.send(&ack)?,
    }
    st.held.check_full(shared);
    Ok(())
}

/// Subscribes to names newly wanted and unsubscribes from those no longer wanted.
fn resubscribe(
    tx: &mut Tx,
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
    tx.send(&subscribe(type_url, add, drop))
}

fn subscribe(type_url: &str, add: Vec<String>, drop: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: add,
        resource_names_unsubscribe: drop,
        ..Default::default()
    }
}

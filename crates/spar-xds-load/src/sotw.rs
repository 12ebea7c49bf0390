//! A simulated sidecar on state-of-the-world ADS, subscribing as Envoy does: CDS and LDS
//! as wildcards, then EDS for the EDS clusters received and RDS for the route names the
//! listeners carry. Every response is ACKed with its version and nonce and the current
//! names of its type.

use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use crate::names::IdSet;
use crate::proxy::{
    announce, check_target, rds_names, Holdings, Identity, ProxyError, Shared, CLUSTER, ENDPOINT,
    LISTENER, ROUTE,
};
use crate::scan;
use crate::wire::{encode_names, Response, SotwRequest};

type Tx = crate::grpc::Stream<SotwRequest>;

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/// Runs one proxy until its stream ends or fails.
pub async fn run(shared: Arc<Shared>, id: Identity) -> Result<(), ProxyError> {
    let conn = crate::connect(&shared).await?;
    let mut stream = Tx::open(conn, SOTW).await?;
    let node = id.node();
    stream.send(&request(CLUSTER, "", "", Bytes::new(), Some(node)))?;
    stream.send(&request(LISTENER, "", "", Bytes::new(), None))?;
    let mut target = shared.target.clone();
    let mut held = Holdings::default();
    // Last version and nonce per type, for subscription changes (Envoy names the last
    // nonce it saw).
    let mut nonces: [(String, String); 4] = Default::default();
    loop {
        tokio::select! {
            resp = stream.message() => {
                let msg = resp?.ok_or(ProxyError::Closed)?;
                let resp = Response::sotw(&msg)?;
                let t = target.borrow().clone();
                on_response(&shared, &id, &mut stream, &mut held, &mut nonces, t.as_deref(), resp)?;
            }
            changed = target.changed() => {
                if changed.is_err() {
                    return Ok(()); // the bench is done
                }
                let t = target.borrow_and_update().clone();
                announce(&shared, &held, id.index, t.as_deref());
            }
        }
    }
}

fn on_response(
    shared: &Shared,
    id: &Identity,
    tx: &mut Tx,
    held: &mut Holdings,
    nonces: &mut [(String, String); 4],
    target: Option<&crate::proxy::Target>,
    resp: Response<'_>,
) -> Result<(), ProxyError> {
    let slot = match resp.type_url {
        t if t == CLUSTER.as_bytes() => 0,
        t if t == ENDPOINT.as_bytes() => 1,
        t if t == LISTENER.as_bytes() => 2,
        t if t == ROUTE.as_bytes() => 3,
        _ => {
            // Not subscribed; ACK so the server's status stays clean.
            return tx.send(&ack(&resp, Bytes::new()));
        }
    };
    nonces[slot] = (resp.version(), resp.nonce());
    match slot {
        0 => {
            let mut eds = IdSet::default();
            for r in &resp.resources {
                if let Some(n) = scan::eds_name(r)? {
                    eds.insert(shared.names.id(n));
                }
            }
            held.clusters = resp.resources.len();
            held.got_cds = true;
            tx.send(&ack(&resp, Bytes::new()))?;
            if held.eds_wanted.set != eds {
                held.eds_wanted = shared.intern(eds);
                let (v, n) = &nonces[1];
                let names = held.eds_wanted.encoded.clone();
                tx.send(&request(ENDPOINT, v, n, names, None))?;
            }
        }
        1 => {
            // EDS and RDS responses carry what changed; what they leave out stays held
            // while subscribed (xDS protocol), as Envoy keeps it.
            held.eds_held.retain_in(&held.eds_wanted.set);
            let mut found = Vec::new();
            for r in &resp.resources {
                let name = scan::bytes_field(r, 1)?;
                if target.is_some_and(|t| t.cluster.as_bytes() == name) {
                    found.push((name, *r));
                }
                held.eds_held.insert(shared.names.id(name));
            }
            tx.send(&ack(&resp, held.eds_wanted.encoded.clone()))?;
            for (name, bytes) in found {
                check_target(shared, held, id.index, target, name, bytes)?;
            }
        }
        2 => {
            let mut rds = Vec::new();
            for r in &resp.resources {
                rds_names(r, &mut rds)?;
            }
            rds.sort();
            rds.dedup();
            held.listeners = resp.resources.len();
            held.got_lds = true;
            tx.send(&ack(&resp, Bytes::new()))?;
            if held.rds_wanted != rds {
                held.rds_wanted = rds;
                let (v, n) = &nonces[3];
                tx.send(&request(ROUTE, v, n, encode_names(&held.rds_wanted), None))?;
            }
        }
        _ => {
            let wanted = held.rds_wanted.clone();
            held.rds_held.retain(|n| wanted.contains(n));
            for r in &resp.resources {
                let name = scan::bytes_field(r, 1)?;
                held.rds_held
                    .insert(String::from_utf8_lossy(name).into_owned());
            }
            tx.send(&ack(&resp, encode_names(&held.rds_wanted)))?;
        }
    }
    held.check_full(shared);
    Ok(())
}

/// The ACK of `resp`, naming the current subscription of its type.
fn ack(resp: &Response<'_>, names: Bytes) -> SotwRequest {
    request(
        &resp.type_url(),
        &resp.version(),
        &resp.nonce(),
        names,
        None,
    )
}

fn request(
    type_url: &str,
    version: &str,
    nonce: &str,
    names: Bytes,
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
) -> SotwRequest {
    SotwRequest {
        head: DiscoveryRequest {
            version_info: version.to_string(),
            node,
            type_url: type_url.to_string(),
            response_nonce: nonce.to_string(),
            error_detail: None,
            ..Default::default()
        },
        names,
    }
}

//! A simulated sidecar on state-of-the-world ADS, subscribing as Envoy does: CDS and LDS
//! as wildcards, then EDS for the EDS clusters received and RDS for the route names the
//! listeners carry. Every response is ACKed with its version and nonce and the current
//! names of its type.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::proxy::{
    announce, check_target, rds_names, Holdings, Identity, ProxyError, Shared, CLUSTER, ENDPOINT,
    LISTENER, ROUTE,
};
use crate::scan;

/// Runs one proxy until its stream ends or fails.
pub async fn run(shared: Arc<Shared>, id: Identity) -> Result<(), ProxyError> {
    let channel = crate::connect(&shared).await?;
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let node = id.node();
    send(&tx, request(CLUSTER, "", "", Vec::new(), Some(node))).await?;
    send(&tx, request(LISTENER, "", "", Vec::new(), None)).await?;
    let mut stream = crate::wire::sotw(channel, ReceiverStream::new(rx)).await?;
    let mut target = shared.target.clone();
    let mut held = Holdings::default();
    // Last nonce per type, for subscription changes (Envoy names the last nonce it saw).
    let mut nonces: [(String, String); 4] = Default::default();
    loop {
        tokio::select! {
            resp = stream.message() => {
                let resp = resp?.ok_or(ProxyError::Closed)?;
                let t = target.borrow().clone();
                on_response(&shared, &id, &tx, &mut held, &mut nonces, t.as_deref(), resp).await?;
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

async fn on_response(
    shared: &Shared,
    id: &Identity,
    tx: &mpsc::Sender<DiscoveryRequest>,
    held: &mut Holdings,
    nonces: &mut [(String, String); 4],
    target: Option<&crate::proxy::Target>,
    resp: crate::wire::DiscoveryResponse,
) -> Result<(), ProxyError> {
    let slot = match resp.type_url.as_str() {
        CLUSTER => 0,
        ENDPOINT => 1,
        LISTENER => 2,
        ROUTE => 3,
        _ => {
            // Not subscribed; ACK so the server's status stays clean.
            let ack = request(
                &resp.type_url,
                &resp.version_info,
                &resp.nonce,
                vec![],
                None,
            );
            return send(tx, ack).await;
        }
    };
    nonces[slot] = (resp.version_info.clone(), resp.nonce.clone());
    match slot {
        0 => {
            let mut eds = Vec::new();
            for r in &resp.resources {
                if let Some(n) = scan::eds_name(&r.value)? {
                    eds.push(n);
                }
            }
            eds.sort();
            eds.dedup();
            held.clusters = resp.resources.len();
            held.got_cds = true;
            send(tx, ack(&resp, Vec::new())).await?;
            if *held.eds_wanted != eds {
                held.eds_wanted = shared.intern(eds);
                let (v, n) = &nonces[1];
                let names = held.eds_wanted.to_vec();
                send(tx, request(ENDPOINT, v, n, names, None)).await?;
            }
        }
        1 => {
            // EDS and RDS responses carry what changed; what they leave out stays held
            // while subscribed (xDS protocol), as Envoy keeps it.
            let wanted = held.eds_wanted.clone();
            held.eds_held.retain(|n| wanted.binary_search(n).is_ok());
            let mut found = Vec::new();
            for r in &resp.resources {
                let name = scan::string_field(&r.value, 1)?;
                if target.is_some_and(|t| t.cluster == name) {
                    found.push((name.clone(), &r.value[..]));
                }
                held.eds_held.insert(name);
            }
            send(tx, ack(&resp, held.eds_wanted.to_vec())).await?;
            for (name, bytes) in found {
                check_target(shared, held, id.index, target, &name, bytes)?;
            }
        }
        2 => {
            let mut rds = Vec::new();
            for r in &resp.resources {
                rds_names(&r.value, &mut rds)?;
            }
            rds.sort();
            rds.dedup();
            held.listeners = resp.resources.len();
            held.got_lds = true;
            send(tx, ack(&resp, Vec::new())).await?;
            if held.rds_wanted != rds {
                held.rds_wanted = rds;
                let (v, n) = &nonces[3];
                send(tx, request(ROUTE, v, n, held.rds_wanted.clone(), None)).await?;
            }
        }
        _ => {
            let wanted = held.rds_wanted.clone();
            held.rds_held.retain(|n| wanted.contains(n));
            for r in &resp.resources {
                held.rds_held.insert(scan::string_field(&r.value, 1)?);
            }
            send(tx, ack(&resp, held.rds_wanted.clone())).await?;
        }
    }
    held.check_full(shared);
    Ok(())
}

fn ack(resp: &crate::wire::DiscoveryResponse, names: Vec<String>) -> DiscoveryRequest {
    request(&resp.type_url, &resp.version_info, &resp.nonce, names, None)
}

fn request(
    type_url: &str,
    version: &str,
    nonce: &str,
    names: Vec<String>,
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node,
        resource_names: names,
        type_url: type_url.to_string(),
        response_nonce: nonce.to_string(),
        error_detail: None,
        ..Default::default()
    }
}

async fn send(
    tx: &mpsc::Sender<DiscoveryRequest>,
    req: DiscoveryRequest,
) -> Result<(), ProxyError> {
    tx.send(req).await.map_err(|_| ProxyError::Closed)
}

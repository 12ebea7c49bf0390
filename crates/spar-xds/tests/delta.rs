//! Delta ADS against a tonic client: wildcard and named subscriptions, incremental pushes,
//! removals, NACK, and a reconnect that names what it already holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc;
use spar_translate::type_url::{CLUSTER, ROUTE};
use spar_xds::SyncState;
use support::*;

fn sub(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node(),
        type_url: type_url.to_string(),
        resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: r.type_url.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    }
}

fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn wildcard_then_incremental_changes_and_removals() {
    let mut h = start(resources(&[("a", 1), ("b", 1)], &[], &["r1"])).await;
    let mut d = h.delta().await;
    d.send(sub(CLUSTER, &[])).await;
    let first = d.recv().await;
    assert_eq!(names(&first), ["a", "b"]);
    d.send(ack(&first)).await;
    // Change a, remove b, add c: only a and c are sent, b is reported removed.
    h.source
        .set(&resources(&[("a", 2), ("c", 1)], &[], &["r1"]));
    let next = d.recv().await;
    assert_eq!(names(&next), ["a", "c"]);
    assert_eq!(next.removed_resources, ["b"]);
    d.send(ack(&next)).await;
    let p = h
        .status_until("cds synced", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Synced)
                && p.types["cds"].sent_version == next.system_version_info
        })
        .await;
    assert_eq!(p.protocol, "delta");
}

#[tokio::test]
async fn named_subscriptions_and_missing_names() {
    let mut h = start(resources(&[], &[], &["r1", "r2"])).await;
    let mut d = h.delta().await;
    d.send(sub(ROUTE, &["r1", "missing"])).await;
    let r = d.recv().await;
    assert_eq!(names(&r), ["r1"]);
    assert_eq!(
        r.removed_resources,
        ["missing"],
        "tells the proxy not to wait for it"
    );
    d.send(ack(&r)).await;
    d.send(sub(ROUTE, &["r2"])).await;
    let r = d.recv().await;
    assert_eq!(names(&r), ["r2"], "only the newly subscribed resource");
}

#[tokio::test]
async fn nack_is_visible_in_status() {
    let mut h = start(resources(&[("a", 1)], &[], &[])).await;
    let mut d = h.delta().await;
    d.send(sub(CLUSTER, &[])).await;
    let r = d.recv().await;
    d.send(ack(&r)).await;
    h.status_until("cds synced", |p| {
        p.types
            .get("cds")
            .is_some_and(|t| t.state == SyncState::Synced)
    })
    .await;
    h.source.set(&resources(&[("a", 0)], &[], &[]));
    let bad = d.recv().await;
    let mut nack = ack(&bad);
    nack.error_detail = Some(rpc::Status {
        code: 3,
        message: "rejected".to_string(),
        details: vec![],
    });
    d.send(nack).await;
    let p = h
        .status_until("cds nacked", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Nacked)
        })
        .await;
    assert_eq!(p.types["cds"].acked_version, r.system_version_info);
    assert_eq!(p.types["cds"].last_nack.as_deref(), Some("rejected"));
}

#[tokio::test]
async fn reconnect_with_initial_versions_resends_nothing_unchanged() {
    let mut h = start(resources(&[("a", 1), ("b", 1)], &[], &[])).await;
    let mut d = h.delta().await;
    d.send(sub(CLUSTER, &[])).await;
    let r = d.recv().await;
    let held: HashMap<String, String> = r
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(d);
    h.source.set(&resources(&[("a", 1), ("b", 2)], &[], &[]));
    let mut d = h.delta().await;
    let mut again = sub(CLUSTER, &[]);
    again.initial_resource_versions = held;
    d.send(again).await;
    let r = d.recv().await;
    assert_eq!(
        names(&r),
        ["b"],
        "a is unchanged since the proxy last had it"
    );
}

#[tokio::test]
async fn after_a_nack_the_rejected_resources_are_sent_again() {
    let mut h = start(resources(&[("a", 1), ("b", 1), ("c", 1)], &[], &[])).await;
    let mut d = h.delta().await;
    d.send(sub(CLUSTER, &[])).await;
    let r = d.recv().await;
    d.send(ack(&r)).await;
    // a and b change, c goes away; the proxy rejects that response.
    h.source.set(&resources(&[("a", 2), ("b", 2)], &[], &[]));
    let bad = d.recv().await;
    assert_eq!(names(&bad), ["a", "b"]);
    assert_eq!(bad.removed_resources, ["c"]);
    let mut nack = ack(&bad);
    nack.error_detail = Some(rpc::Status {
        code: 3,
        message: "b is invalid".to_string(),
        details: vec![],
    });
    d.send(nack).await;
    h.status_until("cds nacked", |p| {
        p.types
            .get("cds")
            .is_some_and(|t| t.state == SyncState::Nacked)
    })
    .await;
    // Only b is fixed; the proxy may still run the old a and c, so both are resent.
    h.source.set(&resources(&[("a", 2), ("b", 3)], &[], &[]));
    let next = d.recv().await;
    assert_eq!(names(&next), ["a", "b"]);
    assert_eq!(next.removed_resources, ["c"]);
}

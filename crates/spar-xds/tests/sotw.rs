//! State-of-the-world ADS against a tonic client: subscriptions, ACK, NACK, pushes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::pb::google::rpc;
use prost::Message;
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use spar_xds::SyncState;
use support::*;

fn req(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node(),
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn wildcard_cds_and_lds_named_rds_then_ack_is_synced() {
    let mut h = start(resources(&[("b", 1), ("a", 1)], &["l1"], &["r1", "r2"])).await;
    let mut s = h.sotw().await;
    s.send(req(CLUSTER, &[], "", "")).await;
    let cds = s.recv().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(names_of(&cds), ["a", "b"]);
    s.send(req(CLUSTER, &[], &cds.version_info, &cds.nonce))
        .await;
    s.send(req(LISTENER, &[], "", "")).await;
    let lds = s.recv().await;
    assert_eq!(names_of(&lds), ["l1"]);
    s.send(req(LISTENER, &[], &lds.version_info, &lds.nonce))
        .await;
    s.send(req(ROUTE, &["r2"], "", "")).await;
    let rds = s.recv().await;
    assert_eq!(names_of(&rds), ["r2"], "RDS is served by name");
    // An ACK that widens the subscription is answered with the new set.
    s.send(req(ROUTE, &["r1", "r2"], &rds.version_info, &rds.nonce))
        .await;
    let rds2 = s.recv().await;
    assert_eq!(names_of(&rds2), ["r1", "r2"]);
    s.send(req(ROUTE, &["r1", "r2"], &rds2.version_info, &rds2.nonce))
        .await;
    let p = h
        .status_until("all synced", |p| {
            ["cds", "lds", "rds"]
                .iter()
                .all(|t| p.types.get(t).is_some_and(|t| t.state == SyncState::Synced))
        })
        .await;
    assert_eq!(p.proxy, NODE);
    assert_eq!(p.protocol, "sotw");
    assert_eq!(h.metrics.connected.get(), 1);
}

#[tokio::test]
async fn nack_keeps_last_accepted_version_and_shows_the_error() {
    let mut h = start(resources(&[("a", 1)], &[], &[])).await;
    let mut s = h.sotw().await;
    s.send(req(CLUSTER, &[], "", "")).await;
    let first = s.recv().await;
    s.send(req(CLUSTER, &[], &first.version_info, &first.nonce))
        .await;
    h.status_until("cds synced", |p| {
        p.types
            .get("cds")
            .is_some_and(|t| t.state == SyncState::Synced)
    })
    .await;
    h.source.set(&resources(&[("a", 0)], &[], &[]));
    let bad = s.recv().await;
    assert_ne!(bad.version_info, first.version_info);
    let mut nack = req(CLUSTER, &[], &first.version_info, &bad.nonce);
    nack.error_detail = Some(rpc::Status {
        code: 3,
        message: "Proto constraint validation failed: connect_timeout".to_string(),
        details: vec![],
    });
    s.send(nack).await;
    let p = h
        .status_until("cds nacked", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Nacked)
        })
        .await;
    let cds = &p.types["cds"];
    assert_eq!(cds.acked_version, first.version_info);
    assert_eq!(cds.sent_version, bad.version_info);
    assert!(cds
        .last_nack
        .as_deref()
        .unwrap()
        .contains("connect_timeout"));
    assert!(h
        .metrics
        .encode()
        .contains("pilot_total_xds_rejects{type=\"cds\"} 1"));
    // A fix is pushed and its ACK clears the NACK.
    h.source.set(&resources(&[("a", 2)], &[], &[]));
    let fixed = s.recv().await;
    s.send(req(CLUSTER, &[], &fixed.version_info, &fixed.nonce))
        .await;
    let p = h
        .status_until("cds synced", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Synced)
        })
        .await;
    assert_eq!(p.types["cds"].last_nack, None);
}

#[tokio::test]
async fn config_change_pushes_only_changed_types_in_warming_order() {
    let mut h = start(resources(&[("a", 1)], &["l1"], &["r1"])).await;
    let mut s = h.sotw().await;
    for (t, names) in [(CLUSTER, vec![]), (LISTENER, vec![]), (ROUTE, vec!["r1"])] {
        s.send(req(t, &names, "", "")).await;
        let r = s.recv().await;
        s.send(req(t, &names, &r.version_info, &r.nonce)).await;
    }
    // Same resources again: nothing to push. Then clusters and routes change: CDS comes
    // first, then RDS; LDS did not change and is not sent. The first message after both
    // changes proves the no-op produced nothing.
    h.source.set(&resources(&[("a", 1)], &["l1"], &["r1"]));
    h.source
        .set(&resources(&[("a", 1), ("b", 1)], &["l1"], &["r1", "r9"]));
    let first = s.recv().await;
    assert_eq!(first.type_url, CLUSTER);
    assert_eq!(names_of(&first), ["a", "b"]);
    // r9 is not subscribed; r1 unchanged: RDS not pushed either. Push a route change.
    h.source
        .set(&resources(&[("a", 1), ("b", 1)], &["l2"], &["r1"]));
    let next = s.recv().await;
    assert_eq!(next.type_url, LISTENER);
    assert_eq!(names_of(&next), ["l2"]);
    assert!(h
        .metrics
        .encode()
        .contains("pilot_xds_pushes{type=\"cds\"} 2"));
}

#[tokio::test]
async fn stale_nonce_is_ignored() {
    let mut h = start(resources(&[("a", 1)], &[], &[])).await;
    let mut s = h.sotw().await;
    s.send(req(CLUSTER, &[], "", "")).await;
    let r1 = s.recv().await;
    h.source.set(&resources(&[("a", 2)], &[], &[]));
    let r2 = s.recv().await;
    // A NACK of the superseded response must not mark the proxy NACKED.
    let mut late = req(CLUSTER, &[], "", &r1.nonce);
    late.error_detail = Some(rpc::Status {
        message: "old".to_string(),
        ..Default::default()
    });
    s.send(late).await;
    s.send(req(CLUSTER, &[], &r2.version_info, &r2.nonce)).await;
    let p = h
        .status_until("cds synced", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Synced)
        })
        .await;
    assert_eq!(p.types["cds"].last_nack, None);
}

#[tokio::test]
async fn a_node_id_that_is_not_istios_is_refused() {
    let mut h = start(resources(&[], &[], &[])).await;
    let mut s = h.sotw().await;
    let mut r = req(CLUSTER, &[], "", "");
    r.node.as_mut().unwrap().id = "nonsense".to_string();
    s.send(r).await;
    let err = s.rx.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("nonsense"), "{}", err.message());
}

fn assignment(name: &str, endpoints: u32, priority: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            priority,
            lb_endpoints: (0..endpoints)
                .map(|w| LbEndpoint {
                    load_balancing_weight: Some(UInt32Value { value: w + 1 }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// EDS is not state of the world: a push carries only the assignment that changed. The first
/// response is many transport chunks long and holds one resource above the size that is sent
/// without a copy; it must arrive whole and byte for byte.
#[tokio::test]
async fn eds_pushes_only_what_changed_and_big_responses_arrive_whole() {
    let names: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
    let mut x = resources(&[], &[], &[]);
    x.endpoints = names
        .iter()
        .map(|n| assignment(n, if n == "c000" { 3000 } else { 60 }, 0))
        .collect();
    let mut h = start(x.clone()).await;
    let mut s = h.sotw().await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    s.send(req(ENDPOINT, &refs, "", "")).await;
    let eds = s.recv().await;
    let got: Vec<ClusterLoadAssignment> = eds
        .resources
        .iter()
        .map(|a| ClusterLoadAssignment::decode(a.value.as_slice()).unwrap())
        .collect();
    assert_eq!(got, x.endpoints);
    let bytes: usize = eds.resources.iter().map(|a| a.value.len()).sum();
    assert!(bytes > 64 << 10, "{bytes} bytes: more than one chunk");
    assert!(
        eds.resources[0].value.len() > 8 << 10,
        "c000 is sent without a copy"
    );
    s.send(req(ENDPOINT, &refs, &eds.version_info, &eds.nonce))
        .await;
    x.endpoints[7] = assignment("c007", 60, 1);
    h.source.set(&x);
    let push = s.recv().await;
    assert_eq!(push.resources.len(), 1, "only the changed assignment");
    let one = ClusterLoadAssignment::decode(push.resources[0].value.as_slice()).unwrap();
    assert_eq!(one, x.endpoints[7]);
}

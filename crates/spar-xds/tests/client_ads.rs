//! The proxy's xDS client against the real ADS server, in Delta and in state-of-the-world
//! mode: warming order, ACK/NACK as the server records them, subscriptions that follow what
//! the handler wants, a control-plane restart, and the fallback from Delta to SotW.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "client_support.rs"]
mod support;

use std::sync::Arc;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use spar_xds::client::Mode;
use spar_xds::{StaticSource, SyncState};
use support::*;

const ALL: [&str; 4] = ["cds", "eds", "lds", "rds"];

fn protocol(mode: Mode) -> &'static str {
    match mode {
        Mode::Delta => "delta",
        Mode::Sotw => "sotw",
    }
}

async fn receives_all_types_in_warming_order_and_acks(mode: Mode) {
    let server = Server::start(Arc::new(StaticSource::new(&typical())));
    let client = Running::start(server.url(), mode);
    let p = server.synced(&ALL).await;
    assert_eq!(p.protocol, protocol(mode));
    let h = &client.handler;
    assert_eq!(first_seen(&h.log()), ALL, "Envoy's warming order");
    assert_eq!(h.names(CLUSTER), ["c1", "c2"]);
    assert_eq!(
        h.names(ENDPOINT),
        ["c1-eds", "c2-eds"],
        "only what clusters name"
    );
    assert_eq!(h.names(LISTENER), ["l1"]);
    assert_eq!(h.names(ROUTE), ["r1"], "only what listeners name");
    for t in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
        assert!(client.stats.acks(t) >= 1, "{t} acked");
        assert_eq!(client.stats.nacks(t), 0);
    }
    assert!(client.stats.connected() && h.connected());
    assert_eq!(client.stats.connects(), 1);
    client.shutdown().await;
}

async fn a_rejected_update_is_nacked_and_changes_nothing(mode: Mode) {
    let server = Server::start(Arc::new(StaticSource::new(&typical())));
    let client = Running::start(server.url(), mode);
    let before = server.synced(&ALL).await;
    // c1 turns invalid and c3 appears in the same push: c1 is rejected and keeps its old
    // version; c3 is valid and lands (Envoy applies clusters one by one too).
    server.source.set(&mesh(
        &[("c1", 0), ("c2", 1), ("c3", 1)],
        &[("l1", "r1")],
        &["r1"],
    ));
    let p = server
        .status_until("cds nacked", |p| {
            p.types
                .get("cds")
                .is_some_and(|t| t.state == SyncState::Nacked)
        })
        .await;
    let cds = &p.types["cds"];
    assert_eq!(
        cds.last_nack.as_deref(),
        Some(format!("cluster c1: {BAD_TIMEOUT}").as_str())
    );
    assert_eq!(
        cds.acked_version, before.types["cds"].acked_version,
        "the old version stays in force"
    );
    let h = &client.handler;
    h.until("c3 and its endpoints", |h| {
        h.names(ENDPOINT) == ["c1-eds", "c2-eds", "c3-eds"]
    })
    .await;
    assert_eq!(h.names(CLUSTER), ["c1", "c2", "c3"]);
    assert_eq!(
        h.cluster("c1").unwrap().connect_timeout.unwrap().seconds,
        1,
        "the rejected c1 changed nothing"
    );
    assert_eq!(client.stats.nacks(CLUSTER), 1);
    // A good push afterwards is accepted.
    server.source.set(&mesh(
        &[("c1", 2), ("c2", 1), ("c3", 1)],
        &[("l1", "r1")],
        &["r1"],
    ));
    server.synced(&["cds", "eds"]).await;
    h.until("the fixed c1", |h| {
        h.cluster("c1").unwrap().connect_timeout.unwrap().seconds == 2
    })
    .await;
    assert_eq!(client.stats.nacks(CLUSTER), 1);
    assert_eq!(h.cluster("c1").unwrap().connect_timeout.unwrap().seconds, 2);
    client.shutdown().await;
}

async fn subscriptions_follow_what_the_handler_wants(mode: Mode) {
    let server = Server::start(Arc::new(StaticSource::new(&typical())));
    let client = Running::start(server.url(), mode);
    server.synced(&ALL).await;
    // c2 goes away, c3 arrives, and the listener now uses r2 instead of r1.
    server.source.set(&mesh(
        &[("c1", 1), ("c3", 1)],
        &[("l1", "r2")],
        &["r1", "r2"],
    ));
    let h = &client.handler;
    h.until("EDS and RDS follow", |h| {
        h.names(ENDPOINT) == ["c1-eds", "c3-eds"] && h.names(ROUTE) == ["r2"]
    })
    .await;
    let p = server.synced(&ALL).await;
    let sent = server.status.sent_to(NODE);
    let (_, types) = sent.iter().find(|(c, _)| *c == p.connection).unwrap();
    let keys = |t: &str| types[t].keys().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        keys("eds"),
        ["c1-eds", "c3-eds"],
        "the server holds the new subscription"
    );
    assert_eq!(keys("rds"), ["r2"]);
    client.shutdown().await;
}

async fn reconnects_after_a_restart_and_resyncs(mode: Mode) {
    let source = Arc::new(StaticSource::new(&typical()));
    let mut server = Server::start(source.clone());
    let addr = server.addr;
    let client = Running::start(server.url(), mode);
    server.synced(&ALL).await;
    server.stop();
    let h = &client.handler;
    h.until("disconnected", |h| !h.connected()).await;
    assert_eq!(
        h.names(CLUSTER),
        ["c1", "c2"],
        "the last good config stays while away"
    );
    assert!(client.stats.disconnects() >= 1);
    let before = h.log().len();
    // While the control plane was down, c4 was added and c2 removed.
    source.set(&mesh(
        &[("c1", 1), ("c4", 1)],
        &[("l1", "r1")],
        &["r1", "r2"],
    ));
    let server = Server::start_at(source, addr, false);
    let p = server.synced(&ALL).await;
    assert_eq!(p.protocol, protocol(mode));
    h.until("c4 and its endpoints, c2 gone", |h| {
        h.names(ENDPOINT) == ["c1-eds", "c4-eds"] && h.names(CLUSTER) == ["c1", "c4"]
    })
    .await;
    assert!(client.stats.connects() >= 2);
    let after = &h.log()[before..];
    let first_cds = after.iter().find(|(t, _, _)| t == CLUSTER).unwrap();
    match mode {
        // initial_resource_versions told the server what the proxy held.
        Mode::Delta => {
            assert_eq!(first_cds.1, ["c4"], "only the new cluster is resent");
            assert_eq!(first_cds.2, ["c2"], "and the one that went away is named");
        }
        Mode::Sotw => {
            assert_eq!(first_cds.1, ["c1", "c4"]);
            assert_eq!(first_cds.2, ["c2"]);
        }
    }
    client.shutdown().await;
}

/// Secrets (keys) come only from the authenticated port: over TLS, with a bearer token.
async fn secrets_are_asked_for_by_name(mode: Mode) {
    let mut res = typical();
    res.secrets = ["gw-a", "gw-b", "other"]
        .iter()
        .map(|n| Secret {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    let (server, root_pem) = Server::start_secure(Arc::new(StaticSource::new(&res)));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    let mut cfg = config(format!("https://{}", server.addr), mode);
    cfg.tls = Some(spar_xds::client::ServerTls {
        root_pem,
        server_name: SECURE_NAME.into(),
    });
    cfg.token_file = Some(token);
    let client = Running::with_config(
        cfg,
        Recorder::wanting_secrets(&["ROOTCA", "default", "gw-a"]),
    );
    server.synced(&["cds", "eds", "lds", "rds", "sds"]).await;
    assert_eq!(client.handler.names(SECRET), ["ROOTCA", "default", "gw-a"]);
    client.shutdown().await;
}

async fn rejected_clusters_do_not_hold_back_listeners(mode: Mode) {
    let server = Server::start(Arc::new(StaticSource::new(&mesh(
        &[("c1", 0)],
        &[("l1", "r1")],
        &["r1"],
    ))));
    let client = Running::start(server.url(), mode);
    let p = server.synced(&["lds", "rds"]).await;
    assert_eq!(p.types["cds"].state, SyncState::Nacked);
    assert!(
        !p.types.contains_key("eds"),
        "no clusters, no endpoints to ask for"
    );
    assert!(client.handler.names(CLUSTER).is_empty());
    assert_eq!(client.handler.names(ROUTE), ["r1"]);
    client.shutdown().await;
}

mod delta {
    use super::*;

    #[tokio::test]
    async fn receives_all_types_in_warming_order_and_acks() {
        super::receives_all_types_in_warming_order_and_acks(Mode::Delta).await;
    }

    #[tokio::test]
    async fn a_rejected_update_is_nacked_and_changes_nothing() {
        super::a_rejected_update_is_nacked_and_changes_nothing(Mode::Delta).await;
    }

    #[tokio::test]
    async fn subscriptions_follow_what_the_handler_wants() {
        super::subscriptions_follow_what_the_handler_wants(Mode::Delta).await;
    }

    #[tokio::test]
    async fn reconnects_after_a_restart_and_resyncs() {
        super::reconnects_after_a_restart_and_resyncs(Mode::Delta).await;
    }

    #[tokio::test]
    async fn secrets_are_asked_for_by_name() {
        super::secrets_are_asked_for_by_name(Mode::Delta).await;
    }

    #[tokio::test]
    async fn rejected_clusters_do_not_hold_back_listeners() {
        super::rejected_clusters_do_not_hold_back_listeners(Mode::Delta).await;
    }
}

mod sotw {
    use super::*;

    #[tokio::test]
    async fn receives_all_types_in_warming_order_and_acks() {
        super::receives_all_types_in_warming_order_and_acks(Mode::Sotw).await;
    }

    #[tokio::test]
    async fn a_rejected_update_is_nacked_and_changes_nothing() {
        super::a_rejected_update_is_nacked_and_changes_nothing(Mode::Sotw).await;
    }

    #[tokio::test]
    async fn subscriptions_follow_what_the_handler_wants() {
        super::subscriptions_follow_what_the_handler_wants(Mode::Sotw).await;
    }

    #[tokio::test]
    async fn reconnects_after_a_restart_and_resyncs() {
        super::reconnects_after_a_restart_and_resyncs(Mode::Sotw).await;
    }

    #[tokio::test]
    async fn secrets_are_asked_for_by_name() {
        super::secrets_are_asked_for_by_name(Mode::Sotw).await;
    }

    #[tokio::test]
    async fn rejected_clusters_do_not_hold_back_listeners() {
        super::rejected_clusters_do_not_hold_back_listeners(Mode::Sotw).await;
    }
}

#[tokio::test]
async fn delta_falls_back_to_sotw_when_the_server_lacks_it() {
    let source = Arc::new(StaticSource::new(&typical()));
    let server = Server::start_at(source, "127.0.0.1:0".parse().unwrap(), true);
    let client = Running::start(server.url(), Mode::Delta);
    let p = server.synced(&ALL).await;
    assert_eq!(p.protocol, "sotw");
    assert!(client.stats.fell_back_to_sotw());
    assert_eq!(client.handler.names(ROUTE), ["r1"]);
    client.shutdown().await;
}

#[tokio::test]
async fn waits_for_a_control_plane_that_starts_later() {
    // A free port nobody listens on yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Running::start(format!("http://{addr}"), Mode::Delta);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(client.stats.connects(), 0);
    assert!(!client.handler.connected());
    let server = Server::start_at(Arc::new(StaticSource::new(&typical())), addr, false);
    server.synced(&ALL).await;
    assert_eq!(client.stats.connects(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_reported_not_retried() {
    use spar_xds::client::{ClientError, XdsClient};
    let run = |cfg| async move {
        XdsClient::new(cfg, Arc::new(Recorder::default()))
            .run(std::future::pending())
            .await
    };
    let err = run(config("not a uri".to_string(), Mode::Delta))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidServer { .. }), "{err}");
    assert!(err.to_string().contains("http://host:port"), "{err}");
    let mut cfg = config("http://127.0.0.1:15010".to_string(), Mode::Delta);
    cfg.node.id.clear();
    let err = run(cfg).await.unwrap_err();
    assert!(matches!(err, ClientError::NoNodeId), "{err}");
}

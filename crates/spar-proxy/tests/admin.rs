//! The admin server: readiness follows the first full configuration and draining,
//! `/config_dump` and `/stats/prometheus` describe what the proxy holds, and the
//! state-changing endpoints want POST.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_dump_stats_drain_and_quit() {
    let backend = Backend::start("v1").await;
    let gw = free_port();
    let y = echo_gateway(gw, backend.addr);
    let store = Arc::new(Store::default());
    let proxy = Proxy::start(
        store.clone(),
        ProxyOptions {
            admin: Some("127.0.0.1:0".parse().unwrap()),
            drain_time: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let admin = proxy.admin_addr.unwrap().port();
    let c = client(false);
    let r = get(&c, admin, "/ready", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (503, "PRE_INITIALIZING\n"));
    assert_eq!(get(&c, admin, "/healthz", &[]).await.status, 200);

    store.publish(Snapshot::from_xds(&gateway_resources(&y)).unwrap());
    // The store wakes the proxy, which binds the gateway port: poll until it serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.listener_addr(&format!("0.0.0.0_{gw}")).is_none() {
        assert!(std::time::Instant::now() < deadline, "listener never bound");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = get(&c, admin, "/ready", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "LIVE\n"));
    assert_eq!(get(&c, gw, "/", &[]).await.backend(), Some("v1"));

    let dump: serde_json::Value =
        serde_json::from_str(&get(&c, admin, "/config_dump", &[]).await.body).unwrap();
    assert_eq!(dump["ready"], true);
    let listener = &dump["listeners"][0];
    assert_eq!(listener["name"], format!("0.0.0.0_{gw}"));
    assert_eq!(
        listener["filter_chains"][0]["filter"]["http_connection_manager"]["rds"],
        format!("http.{gw}")
    );
    let clusters = dump["clusters"].as_array().unwrap();
    let echo = clusters
        .iter()
        .find(|c| c["name"] == "outbound|8080||echo.default.svc.cluster.local")
        .unwrap();
    assert_eq!(echo["hosts"][0]["address"], backend.addr.to_string());

    let stats = get(&c, admin, "/stats/prometheus", &[]).await.body;
    assert!(
        stats.contains("envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\"} 1"),
        "{stats}"
    );

    assert!(
        stats.contains(
            "envoy_cluster_upstream_rq_xx{cluster_name=\"outbound|8080||echo.default.svc.cluster.local\",envoy_response_code_class=\"2\"} 1"
        ),
        "{stats}"
    );
    assert_eq!(get(&c, admin, "/drain", &[]).await.status, 405);
    assert_eq!(send(&c, admin, "POST", "/drain", &[], "").await.status, 200);
    let r = get(&c, admin, "/ready", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (503, "DRAINING\n"));
    assert_eq!(
        send(&c, admin, "POST", "/logging?level=debug", &[], "")
            .await
            .status,
        501
    );

    assert_eq!(
        send(&c, admin, "POST", "/quitquitquit", &[], "")
            .await
            .status,
        200
    );
    tokio::time::timeout(Duration::from_secs(5), proxy.quit_requested())
        .await
        .expect("quit was requested");
    proxy.drain().await;
    assert!(
        proxy.listener_addr(&format!("0.0.0.0_{gw}")).is_none(),
        "listeners closed"
    );
}

/// A listener whose port is still held (a previous proxy closing it) comes up by itself
/// once the port is free: no config change is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_bound_once_it_is_free() {
    let backend = Backend::start("v1").await;
    let gw = free_port();
    let y = echo_gateway(gw, backend.addr);
    let squatter = std::net::TcpListener::bind(("0.0.0.0", gw)).unwrap();
    let store = Arc::new(Store::new(
        Snapshot::from_xds(&gateway_resources(&y)).unwrap(),
    ));
    let proxy = Proxy::start(store, ProxyOptions::default()).await.unwrap();
    let name = format!("0.0.0.0_{gw}");
    assert!(proxy.listener_addr(&name).is_none(), "the port is taken");
    drop(squatter);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.listener_addr(&name).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener was never bound after the port was freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&client(false), gw, "/", &[]).await.backend(),
        Some("v1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_after_config_hook_runs_once_a_new_configuration_is_in_force() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let backend = Backend::start("v1").await;
    let gw = free_port();
    let store = Arc::new(Store::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let proxy = Proxy::start(
        store.clone(),
        ProxyOptions {
            after_config: Some(Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no configuration yet");
    let y = echo_gateway(gw, backend.addr);
    store.publish(Snapshot::from_xds(&gateway_resources(&y)).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runs.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the hook never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // It runs after the listeners were reconciled: the new listener serves by then.
    assert!(proxy.listener_addr(&format!("0.0.0.0_{gw}")).is_some());
}

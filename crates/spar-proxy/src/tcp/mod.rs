//! The TCP proxy: picks a cluster (weighted when several), a host from its balancer (the
//! original destination for ORIGINAL_DST clusters such as `PassthroughCluster`), connects
//! within the cluster's connect timeout and copies bytes both ways until either side
//! closes. `BlackHoleCluster` (no hosts) closes the connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::http::upstream::{connect_stream, TlsTarget, UpstreamStream};

use crate::config::listener::TcpRoute;
use crate::config::Snapshot;
use crate::lb::{Outcome, PickCtx};
use crate::proxy::Shared;

fn pick_cluster(t: &TcpRoute) -> Option<&str> {
    let total: u64 = t.clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return t.clusters.first().map(|(c, _)| c.as_str());
    }
    let mut r = fastrand::u64(0..total);
    for (c, w) in &t.clusters {
        if r < u64::from(*w) {
            return Some(c);
        }
        r -= u64::from(*w);
    }
    None
}

pub async fn proxy<S>(
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
    route: Arc<TcpRoute>,
    mut downstream: S,
    dst: SocketAddr,
    local: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(cluster) = pick_cluster(&route) else {
        return;
    };
    let Some(lb) = snap.balancers.get(cluster).cloned() else {
        tracing::debug!(cluster, "tcp proxy: no such cluster; closing");
        return;
    };
    let ctx = PickCtx {
        original_dst: Some(dst),
        ..Default::default()
    };
    let Some(host) = lb.pick(&ctx) else {
        tracing::debug!(cluster, "tcp proxy: no healthy upstream; closing");
        return;
    };
    if host.authority == local.to_string() {
        // An original destination that is this very listener (a connection that was not
        // redirected, to a port no listener claims) would connect to itself forever.
        tracing::debug!(cluster, %local, "tcp proxy: destination is the proxy itself; closing");
        return;
    }
    if lb.active_requests.load(Ordering::Relaxed) >= lb.cluster.limits.max_connections {
        return;
    }
    let tls = match &host.tls {
        None => None,
        Some(t) => match tls_target(&shared, &snap, t, &host.authority) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(cluster, host = %host.authority, "tcp proxy: {e}");
                return;
            }
        },
    };
    let connect = connect_stream(&host.authority, lb.cluster.connect_timeout, tls.as_ref());
    let upstream = match connect.await {
        Ok(s) => s,
        Err(e) => {
            lb.report(&host, Outcome::LocalFailure);
            tracing::debug!(cluster, "tcp proxy: {e}");
            return;
        }
    };
    lb.active_requests.fetch_add(1, Ordering::Relaxed);
    host.active.fetch_add(1, Ordering::Relaxed);
    shared.stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
    let copied = match upstream {
        UpstreamStream::Plain(mut up) => copy(&mut downstream, &mut up, route.idle_timeout).await,
        UpstreamStream::Tls(mut up) => copy(&mut downstream, &mut *up, route.idle_timeout).await,
    };
    if let Ok((up, down)) = copied {
        shared.stats.tcp_bytes_sent.fetch_add(up, Ordering::Relaxed);
        shared
            .stats
            .tcp_bytes_received
            .fetch_add(down, Ordering::Relaxed);
    }
    host.active.fetch_sub(1, Ordering::Relaxed);
    lb.active_requests.fetch_sub(1, Ordering::Relaxed);
    lb.report(&host, Outcome::Success);
}

/// Both directions until either side closes; the idle timeout bounds the whole copy only
/// when set (Istio leaves it at 1 h).
async fn copy<A, B>(
    a: &mut A,
    b: &mut B,
    idle: Option<std::time::Duration>,
) -> std::io::Result<(u64, u64)>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match idle {
        Some(t) => tokio::time::timeout(t, tokio::io::copy_bidirectional(a, b))
            .await
            .unwrap_or(Ok((0, 0))),
        None => tokio::io::copy_bidirectional(a, b).await,
    }
}

/// The TLS to originate to a host (its secrets from `snap`).
fn tls_target(
    shared: &Shared,
    snap: &Snapshot,
    tls: &Arc<crate::config::tls::UpstreamTls>,
    authority: &str,
) -> Result<TlsTarget, String> {
    let config = shared
        .tls_clients
        .get(tls, snap)
        .map_err(|e| e.to_string())?;
    let server_name = crate::tls::client::server_name(tls, authority)
        .ok_or_else(|| format!("no TLS server name for {authority}"))?;
    Ok(TlsTarget {
        config,
        server_name,
        pool_suffix: String::new(),
    })
}

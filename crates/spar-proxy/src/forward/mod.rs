//! The explicit forward proxy (DESIGN.md section 5, "explicit" capture): a loopback port that
//! applications reach through `HTTP_PROXY=http://…` or `ALL_PROXY=socks5h://…` instead of
//! iptables. Three ways in, told apart by the first bytes:
//! - SOCKS5 (first byte 5) and `CONNECT host:port`: a tunnel; once the target is resolved
//!   the stream is carried exactly as a captured connection to that destination would be
//!   (listener, protocol detection, HTTP routes or TCP proxy);
//! - an HTTP/1.1 request in absolute form (`GET http://reviews:9080/ HTTP/1.1`): each
//!   request is routed by the connection manager of its destination's listener, so one
//!   keep-alive connection can carry requests for several services.
//!
//! Names resolve as in a pod ([`resolve`]). Not in Envoy (it has no SOCKS5 and no
//! absolute-form forward proxying in Istio's sidecar configuration); see
//! docs/differences.md.

pub mod connect;
pub mod resolve;
pub mod socks;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::Shared;

/// Accepts forward-proxy connections until the task is aborted.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                shared
                    .stats
                    .downstream_cx_total
                    .fetch_add(1, Ordering::Relaxed);
                tokio::spawn(handle(shared.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!("forward proxy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let mut first = [0u8; 8];
    let n = match stream.peek(&mut first).await {
        Ok(n) if n > 0 => n,
        _ => return,
    };
    if first[0] == 5 {
        socks5(shared, stream, peer).await;
    } else if first[..n].starts_with(b"CONNECT ") || (n < 8 && b"CONNECT ".starts_with(&first[..n]))
    {
        connect(shared, stream, peer).await;
    } else {
        crate::http::forward::serve(shared, stream, peer).await;
    }
}

async fn socks5(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let target = match socks::handshake(&mut stream).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, "{e}");
            return;
        }
    };
    let dst = match destination(&shared, &target.host, target.port).await {
        Ok(dst) => dst,
        Err(e) => {
            tracing::info!(%peer, "SOCKS5 CONNECT {}:{}: {e}", target.host, target.port);
            let _ = socks::reply(&mut stream, socks::HOST_UNREACHABLE).await;
            return;
        }
    };
    if socks::reply(&mut stream, socks::SUCCEEDED).await.is_err() {
        return;
    }
    crate::listener::carry_to(&shared, stream, peer, dst).await;
}

async fn connect(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let (host, port) = match connect::read_head(&mut stream).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, "{e}");
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let dst = match destination(&shared, &host, port).await {
        Ok(dst) => dst,
        Err(e) => {
            tracing::info!(%peer, "CONNECT {host}:{port}: {e}");
            let body = format!("{e}\n");
            let head = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
            return;
        }
    };
    if stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    crate::listener::carry_to(&shared, stream, peer, dst).await;
}

/// Where `host:port` goes (see [`resolve`]), with the proxy's namespace for short names.
pub async fn destination(
    shared: &Shared,
    host: &str,
    port: u16,
) -> Result<SocketAddr, resolve::ResolveError> {
    let snap = shared.store.load();
    resolve::resolve(&snap, &shared.options.namespace, host, port).await
}

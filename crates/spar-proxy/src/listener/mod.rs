//! Listeners: accept loops for bound listeners, and per connection the listener that
//! owns it (virtual listeners with `use_original_dst` hand the connection to the
//! listener of its original destination), the listener filters, the filter chain, and
//! then the chain's HTTP connection manager or TCP proxy.
//!
//! Original destination: `SO_ORIGINAL_DST` (through `spar-capture`) for connections
//! iptables redirected; for connections that reached the port directly (tests, explicit
//! mode: no conntrack NAT entry) the accepted socket's local address.

pub(crate) mod authz;
pub mod chain;
pub mod inspect;

pub(crate) use authz::authorize;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::config::listener::{Listener, NetworkFilter};
use crate::config::Snapshot;
use crate::proxy::Shared;
use chain::ConnInfo;

/// How long listener filters may wait for the first bytes.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts connections for the listener named `name` until the task is aborted.
pub async fn accept_loop(shared: Arc<Shared>, name: Arc<str>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(listener = %name, %peer, "new connection");
                shared
                    .stats
                    .downstream_cx_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(handle(shared.clone(), name.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The original destination of `stream` (see the module doc).
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    spar_capture::original_dst(stream)
        .ok()
        .or_else(|| stream.local_addr().ok())
}

/// The listener a virtual listener hands a connection to: the one bound to exactly
/// `dst`, else the wildcard one on its port.
pub(crate) fn listener_for<'a>(
    snap: &'a Snapshot,
    dst: SocketAddr,
    own: &str,
) -> Option<&'a Arc<Listener>> {
    let others = || snap.listeners.values().filter(|l| l.name != own);
    others().find(|l| l.address == dst).or_else(|| {
        others().find(|l| l.address.ip().is_unspecified() && l.address.port() == dst.port())
    })
}

struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn handle(shared: Arc<Shared>, name: Arc<str>, stream: TcpStream, peer: SocketAddr) {
    shared
        .stats
        .active_cx
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _active = Active(&shared.stats.active_cx);
    let snap = shared.store.load();
    let Some(own) = snap.listeners.get(&*name) else {
        return;
    };
    let local = stream.local_addr().unwrap_or(own.address);
    let mut listener = own;
    let mut dst = local;
    if own.use_original_dst || own.original_dst_filter {
        dst = original_dst(&stream).unwrap_or(local);
    }
    if own.use_original_dst {
        if let Some(other) = listener_for(&snap, dst, &own.name) {
            listener = other;
        }
    }
    let listener = listener.clone();
    run_chain(&shared, &snap, &listener, stream, peer, dst, local).await;
}

/// Carries a connection whose destination is `dst` as a captured one would be: through
/// the listener of that address (else the sidecar's `virtualOutbound`, whose own chains
/// pass unknown destinations through). The explicit forward proxy's tunnels (CONNECT,
/// SOCKS5) come this way. Returns `false` when the snapshot has no listener for it.
pub async fn carry_to(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
) -> bool {
    let snap = shared.store.load();
    let listener = listener_for(&snap, dst, "")
        .or_else(|| snap.listeners.values().find(|l| l.use_original_dst))
        .cloned();
    let Some(listener) = listener else {
        return false;
    };
    let local = stream.local_addr().unwrap_or(listener.address);
    run_chain(shared, &snap, &listener, stream, peer, dst, local).await;
    true
}

/// The listener's filters and chain for one connection.
async fn run_chain(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    listener: &Listener,
    stream: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    local: SocketAddr,
) {
    let (tls, http) = chain::needs_inspection(listener);
    let detected = if tls || http {
        let d = inspect::inspect(&stream, tls, http, INSPECT_TIMEOUT).await;
        shared.stats.detection.record(&d);
        d
    } else {
        inspect::Detected {
            transport: "raw_buffer",
            ..Default::default()
        }
    };
    let info = ConnInfo {
        dst,
        src: peer,
        sni: detected.sni,
        transport: detected.transport,
        alpn: detected.alpn,
    };
    let Some(chain) = chain::select(listener, &info) else {
        tracing::debug!(listener = %listener.name, ?info, "no filter chain matches; closing");
        shared
            .stats
            .no_filter_chain_match
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    match &chain.tls {
        None => {
            let sni = info.sni.as_deref().unwrap_or("");
            let at = authz::Conn {
                peer,
                dst,
                local,
                tls: None,
                sni,
            };
            if !authorize(shared, snap, chain, &at).await {
                return;
            }
            carry(shared, snap, &chain.filter, stream, peer, dst, local, None).await
        }
        Some(tls) => {
            let Some(stream) = terminate(shared, snap, tls, stream, peer).await else {
                return;
            };
            let info = crate::http::xfcc::TlsDownstream {
                peer_chain: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
                local_chain_pem: match &tls.cert {
                    crate::config::tls::Source::Inline(ck) => Some(ck.clone()),
                    crate::config::tls::Source::Sds(n) => {
                        snap.secret(n).and_then(|s| s.cert.clone())
                    }
                },
                sni: info.sni.clone(),
            };
            let at = authz::Conn {
                peer,
                dst,
                local,
                tls: Some(&info),
                sni: "",
            };
            if !authorize(shared, snap, chain, &at).await {
                return;
            }
            carry(
                shared,
                snap,
                &chain.filter,
                stream,
                peer,
                dst,
                local,
                Some(info),
            )
            .await
        }
    }
}

/// How long a TLS handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake of a chain that terminates TLS, and Envoy's checks on the peer's
/// certificate; `None` (the connection is closed) when either fails.
async fn terminate(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    tls: &Arc<crate::config::tls::DownstreamTls>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = async {
        // The ClientHello first: the configuration depends on the ALPN it offers.
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await
                .map_err(|e| format!("reading the ClientHello: {e}"))?;
        let hello = start.client_hello();
        let offered: Option<Vec<&[u8]>> = hello.alpn().map(|a| a.collect());
        let config = shared
            .tls
            .get(tls, snap, offered.as_deref())
            .map_err(|e| e.to_string())?;
        start
            .into_stream(config)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "{e}");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let matchers = crate::tls::san_matchers(tls, snap);
    if !matchers.is_empty() {
        let sans = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(crate::tls::peer_sans)
            .unwrap_or_default();
        if !crate::tls::sans_pass(&matchers, &sans) {
            tracing::debug!(%peer, ?sans, "peer certificate SANs match no allowed name; closing");
            return None;
        }
    }
    Some(stream)
}

/// The chain's network filter on the (plain or decrypted) stream.
#[allow(clippy::too_many_arguments)]
async fn carry<S>(
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    filter: &NetworkFilter,
    stream: S,
    peer: SocketAddr,
    dst: SocketAddr,
    local: SocketAddr,
    tls: Option<crate::http::xfcc::TlsDownstream>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match filter {
        NetworkFilter::Http(hcm) => {
            crate::http::serve(
                shared.clone(),
                snap.clone(),
                hcm.clone(),
                stream,
                peer,
                dst,
                local,
                tls,
            )
            .await
        }
        NetworkFilter::Tcp(t) => {
            crate::tcp::proxy(shared.clone(), snap.clone(), t.clone(), stream, dst, local).await
        }
    }
}

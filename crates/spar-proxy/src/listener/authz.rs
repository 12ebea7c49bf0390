//! A filter chain's connection-level authorization, in filter order, before any byte is
//! forwarded: `envoy.filters.network.rbac` (enforced rules close the connection; shadow
//! rules only record their result in the connection's metadata) and
//! `envoy.filters.network.ext_authz` (a gRPC authorizer's `Check`, when the metadata the
//! RBAC filters before it recorded enables it).
//!
//! Envoy's network ext_authz calls the authorizer when the client's first bytes arrive;
//! spar proxy calls it when the connection is accepted (after the TLS handshake), so a
//! server-first protocol is judged before the server speaks (docs/differences.md).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};
use serde_json::Map;

use crate::config::ext_authz::NetworkExtAuthz;
use crate::config::listener::FilterChain;
use crate::config::Snapshot;
use crate::http::ext_authz::{call_grpc, socket_address};
use crate::http::rbac::{check_with_shadow, Decision, RbacInput};
use crate::http::xfcc::TlsDownstream;
use crate::proxy::Shared;

/// What the filters know of the connection.
pub struct Conn<'a> {
    pub peer: SocketAddr,
    /// The original destination.
    pub dst: SocketAddr,
    /// The accepted socket's own address.
    pub local: SocketAddr,
    /// The terminated TLS session, when the chain terminates TLS.
    pub tls: Option<&'a TlsDownstream>,
    /// The ClientHello's SNI when the chain does not terminate TLS (tls_inspector's).
    pub sni: &'a str,
}

impl Conn<'_> {
    fn sni(&self) -> &str {
        self.tls.and_then(|t| t.sni.as_deref()).unwrap_or(self.sni)
    }
}

/// Runs the chain's RBAC and ext_authz filters: `false` when one denies (the connection
/// is then closed, as Envoy does).
pub async fn authorize(
    shared: &Arc<Shared>,
    snap: &Snapshot,
    chain: &FilterChain,
    conn: &Conn<'_>,
) -> bool {
    if chain.rbac.is_empty() && chain.ext_authz.is_empty() {
        return true;
    }
    let principal = conn
        .tls
        .and_then(|t| t.peer_chain.first())
        .map(crate::http::principal_name);
    let input = RbacInput {
        head: None,
        dst: conn.dst,
        direct_remote: conn.peer.ip(),
        remote: conn.peer.ip(),
        peer_principal: principal.as_deref(),
        sni: conn.sni(),
        jwt: None,
    };
    let mut metadata = Map::new();
    let mut ext = chain.ext_authz.iter().peekable();
    for (i, f) in chain.rbac.iter().enumerate() {
        while let Some((_, e)) = ext.next_if(|(before, _)| *before <= i) {
            if !ext_authz(shared, snap, e, conn, principal.as_deref(), &metadata).await {
                return false;
            }
        }
        let (decision, shadow) = check_with_shadow(f, &input);
        if let Some(s) = shadow {
            s.record(&f.shadow_stat_prefix, &mut metadata);
        }
        if decision != Decision::Allow {
            tracing::debug!(target: "spar_proxy::rbac", peer = %conn.peer, dst = %conn.dst, "network RBAC denied; closing");
            return false;
        }
    }
    for (_, e) in ext {
        if !ext_authz(shared, snap, e, conn, principal.as_deref(), &metadata).await {
            return false;
        }
    }
    true
}

/// One network ext_authz filter: whether the connection may go on.
async fn ext_authz(
    shared: &Arc<Shared>,
    snap: &Snapshot,
    f: &NetworkExtAuthz,
    conn: &Conn<'_>,
    principal: Option<&str>,
    metadata: &Map<String, serde_json::Value>,
) -> bool {
    let stats = &shared.stats.ext_authz_tcp;
    if let Some(m) = &f.enabled_metadata {
        if !m.matches(Some(metadata)) {
            stats.disabled.fetch_add(1, Ordering::Relaxed);
            return true;
        }
    }
    stats.total.fetch_add(1, Ordering::Relaxed);
    let req = check_request(f, conn, principal);
    let local = conn.local.to_string();
    let call = call_grpc(shared, snap, &f.service, conn.dst, &local, &req);
    let answer = tokio::time::timeout(f.service.timeout, call)
        .await
        .unwrap_or(Err(crate::http::ext_authz::CheckError::Timeout(
            f.service.timeout,
        )));
    match answer {
        Ok(resp) if resp.status.as_ref().map_or(0, |s| s.code) == 0 => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(_) => {
            stats.denied.fetch_add(1, Ordering::Relaxed);
            stats.cx_closed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "spar_proxy::ext_authz", peer = %conn.peer, dst = %conn.dst, "the authorizer denied the connection; closing");
            false
        }
        Err(e) => {
            stats.error.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "spar_proxy::ext_authz", peer = %conn.peer, dst = %conn.dst, "authorizer failed: {e}");
            if f.failure_mode_allow {
                stats.failure_mode_allowed.fetch_add(1, Ordering::Relaxed);
                true
            } else {
                stats.cx_closed.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The `CheckRequest` Envoy sends for a connection: both peers (address and principal),
/// the client's certificate and the SNI when asked for; no request.
pub fn check_request(
    f: &NetworkExtAuthz,
    conn: &Conn<'_>,
    principal: Option<&str>,
) -> CheckRequest {
    let certificate = match (f.include_peer_certificate, conn.tls) {
        (true, Some(t)) => t
            .peer_chain
            .first()
            .map(crate::http::xfcc::url_encoded_pem)
            .unwrap_or_default(),
        _ => String::new(),
    };
    let local_principal = conn
        .tls
        .and_then(|t| t.local_chain_pem.as_ref())
        .and_then(|ck| crate::http::xfcc::local_uri(&ck.chain))
        .unwrap_or_default();
    let sni = conn.sni();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(socket_address(conn.peer)),
                principal: principal.unwrap_or("").to_string(),
                certificate,
                ..Default::default()
            }),
            destination: Some(attribute_context::Peer {
                address: Some(socket_address(conn.dst)),
                principal: local_principal,
                ..Default::default()
            }),
            tls_session: (f.include_tls_session && !sni.is_empty()).then(|| {
                attribute_context::TlsSession {
                    sni: sni.to_string(),
                }
            }),
            ..Default::default()
        }),
    }
}

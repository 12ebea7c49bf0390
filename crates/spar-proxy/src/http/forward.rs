//! HTTP/1.1 requests in absolute form on the forward proxy's port (`HTTP_PROXY=http://…`):
//! each request goes through the connection manager of the listener its destination would
//! have been captured by, so a `curl -x` request to `http://reviews:9080/` meets the same
//! VirtualService routes, retries and header rules as `curl http://reviews:9080/` from a
//! pod. A destination whose listener proxies TCP (an address outside the mesh) is
//! forwarded as is when `outboundTrafficPolicy` is ALLOW_ANY (PassthroughCluster) and
//! refused with 502 under REGISTRY_ONLY (BlackHoleCluster).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::{reply, Body};
use super::{filters, Conn};
use crate::config::listener::NetworkFilter;
use crate::listener::chain::{self, ConnInfo};
use crate::proxy::Shared;

/// Envoy's PassthroughCluster connect timeout default (Istio's `connectTimeout`: 10 s).
const PASSTHROUGH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one forward-proxy connection (HTTP/1.1 requests in absolute form).
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let s = shared.clone();
    let svc = service_fn(move |req| {
        let shared = s.clone();
        async move { Ok::<_, Infallible>(one(shared, peer, local, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // As a listener's connection manager by default (Envoy's 1-hour `idle_timeout`):
        // it runs while the connection waits for, or reads, a request head.
        .header_read_timeout(crate::config::listener::DEFAULT_IDLE_TIMEOUT);
    let serving = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(serving);
    let mut drain = shared.drain.clone();
    tokio::select! {
        r = serving.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "forward-proxy connection ended: {e}");
            }
        }
        _ = async { let _ = drain.wait_for(|d| *d).await; } => {
            serving.as_mut().graceful_shutdown();
            let _ = serving.await;
        }
    }
}

async fn one(
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if req.method() == http::Method::CONNECT {
        return reply(
            400,
            "CONNECT must be the first request on a forward-proxy connection\n",
        );
    }
    let Some(authority) = req.uri().authority().cloned() else {
        return reply(
            400,
            "the forward proxy takes requests in absolute form (GET http://host:port/path); set HTTP_PROXY\n",
        );
    };
    if req.uri().scheme_str() != Some("http") {
        return reply(
            400,
            "only http:// URLs are proxied this way; https goes through CONNECT\n",
        );
    }
    let port = authority.port_u16().unwrap_or(80);
    let dst = match crate::forward::destination(&shared, authority.host(), port).await {
        Ok(dst) => dst,
        Err(e) => return reply(502, &format!("{e}\n")),
    };
    // The absolute form's authority is the request's host (RFC 9112 section 3.2.2).
    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let snap = shared.store.load();
    let listener = crate::listener::listener_for(&snap, dst, "")
        .or_else(|| snap.listeners.values().find(|l| l.use_original_dst));
    let info = ConnInfo {
        dst,
        src: peer,
        sni: None,
        transport: "raw_buffer",
        alpn: vec!["http/1.1".to_string()],
    };
    let Some(chain) = listener.and_then(|l| chain::select(l, &info)) else {
        return reply(502, &format!("no listener carries traffic for {dst}\n"));
    };
    let at = crate::listener::authz::Conn {
        peer,
        dst,
        local,
        tls: None,
        sni: "",
    };
    if !crate::listener::authorize(&shared, &snap, chain, &at).await {
        return reply(403, "RBAC: access denied");
    }
    match &chain.filter {
        NetworkFilter::Http(hcm) => {
            let conn = Arc::new(Conn {
                shared: shared.clone(),
                hcm: hcm.clone(),
                peer,
                dst,
                local,
                local_text: local.to_string(),
                scheme: "http",
                mtls: false,
                peer_principal: None,
                sni: None,
                xfcc: None,
                peer_values: super::PeerValues::new(peer.ip()),
            });
            super::handle(conn, req).await
        }
        NetworkFilter::Tcp(t) => {
            if t.clusters.iter().all(|(c, _)| c == "BlackHoleCluster") {
                return reply(
                    502,
                    &format!(
                        "{authority} is not a service of the mesh and outboundTrafficPolicy is REGISTRY_ONLY\n"
                    ),
                );
            }
            passthrough(&shared, dst, req).await
        }
    }
}

/// Forwards the request unchanged (origin form) to `dst`, as PassthroughCluster does.
async fn passthrough(shared: &Shared, dst: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    filters::strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove("proxy-connection");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = super::upstream::origin_form(path) else {
        return reply(400, "Bad Request");
    };
    let mut up = Request::new(http_body_util::BodyExt::boxed_unsync(
        http_body_util::BodyExt::map_err(body, |e| Box::new(e) as _),
    ));
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.headers_mut() = parts.headers;
    match shared
        .upstream
        .send_h1(&dst.to_string(), PASSTHROUGH_CONNECT_TIMEOUT, None, up)
        .await
    {
        Ok(mut resp) => {
            filters::strip_hop_by_hop(resp.headers_mut());
            resp
        }
        Err(e) => reply(502, &format!("{e}\n")),
    }
}

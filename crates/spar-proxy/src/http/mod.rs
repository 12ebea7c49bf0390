//! The HTTP connection manager: serves HTTP/1.1 and HTTP/2 on a connection (hyper, auto
//! detected), and for each request selects a route, runs the route's filters (CORS,
//! fault) and its action: forward (see [`router`]), redirect or direct response.
//!
//! Request headers set here, as Envoy does: `x-request-id` when absent,
//! `x-forwarded-proto`, and when the manager says `use_remote_address`: `x-forwarded-for`
//! (the peer appended, or the node's own address for a loopback peer) and
//! `x-envoy-external-address` (the peer, unless `internal_address_config` calls it internal).

pub mod body;
pub mod ext_authz;
pub mod filters;
pub mod forward;
pub mod header_names;
pub mod jwt;
pub mod local_address;
pub mod path;
pub mod rbac;
pub mod request_body;
pub mod router;
pub mod upgrade;
pub mod upstream;
pub mod xfcc;

use header_names::{X_ENVOY_EXTERNAL_ADDRESS, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use request_body::{ReadError, RequestBody};

use crate::config::listener::{HttpManager, Routes};
use crate::config::route::{Abort, Action, RouteConfig};
use crate::config::Snapshot;
use crate::proxy::Shared;
use crate::route::{self, RequestHead};
use body::{local_reply, reply, Body, Flag, Flags};

/// What every request on one downstream connection shares. The connection keeps the
/// listener's HTTP settings it was accepted with; each request reads the current
/// snapshot once for routes and clusters (as Envoy applies RDS, CDS and EDS updates to
/// new requests on existing connections) and finishes on it.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub hcm: Arc<HttpManager>,
    pub peer: SocketAddr,
    pub dst: SocketAddr,
    /// The accepted socket's own address, and as text (compared with host addresses).
    pub local: SocketAddr,
    pub local_text: String,
    pub scheme: &'static str,
    /// The client presented a certificate (mutual TLS).
    pub mtls: bool,
    /// With mutual TLS, the client's principal name for RBAC: its URI SAN, else its first
    /// DNS SAN, else empty.
    pub peer_principal: Option<String>,
    /// The SNI of the TLS connection it came on (RBAC `requested_server_name`).
    pub sni: Option<String>,
    /// This connection's `x-forwarded-client-cert` element, when the manager adds one.
    pub xfcc: Option<HeaderValue>,
    /// The peer as header values, formatted once per connection.
    pub peer_values: PeerValues,
}

/// What every request of a connection may say about its peer: its address
/// (`x-envoy-external-address`) and the hop it adds to `x-forwarded-for` (this host's own
/// address when the peer is on loopback, as Envoy). Formatting an address costs more than
/// the rest of the header work of a request, so it is done once per connection.
#[derive(Debug, Clone)]
pub struct PeerValues {
    pub ip: HeaderValue,
    pub xff_hop: HeaderValue,
}

impl PeerValues {
    pub fn new(peer: std::net::IpAddr) -> Self {
        let peer = peer.to_canonical();
        let text = |ip: std::net::IpAddr| {
            // An IP address's text is always a valid header value.
            HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("0.0.0.0"))
        };
        let hop = if peer.is_loopback() {
            local_address::local_address()
        } else {
            peer
        };
        PeerValues {
            ip: text(peer),
            xff_hop: text(hop),
        }
    }
}

/// Serves one downstream connection until it closes or the proxy drains. `scheme` is
/// `https` when the connection came through TLS termination.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S>(
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    hcm: Arc<HttpManager>,
    stream: S,
    peer: SocketAddr,
    dst: SocketAddr,
    local: SocketAddr,
    tls: Option<xfcc::TlsDownstream>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    drop(snapshot);
    let conn = Arc::new(Conn {
        shared: shared.clone(),
        hcm: hcm.clone(),
        peer,
        dst,
        local,
        local_text: local.to_string(),
        scheme: if tls.is_some() { "https" } else { "http" },
        mtls: tls.as_ref().is_some_and(|t| !t.peer_chain.is_empty()),
        peer_principal: tls
            .as_ref()
            .and_then(|t| t.peer_chain.first())
            .map(principal_name),
        sni: tls.as_ref().and_then(|t| t.sni.clone()),
        xfcc: xfcc::element(&hcm.xfcc, tls.as_ref()),
        peer_values: PeerValues::new(peer.ip()),
    });
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(conn, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_buf_size((hcm.max_request_headers_kb as usize * 1024).max(8192))
        // hyper's header read timeout runs from when the connection goes idle (after a
        // response, or from the start) until the next request head is complete: Envoy's
        // `idle_timeout` for a keep-alive connection, and the same bound on a slow head.
        .header_read_timeout(hcm.idle_timeout);
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(serving);
    let mut drain = shared.drain.clone();
    tokio::select! {
        r = serving.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "downstream connection ended: {e}");
            }
        }
        _ = async { let _ = drain.wait_for(|d| *d).await; } => {
            serving.as_mut().graceful_shutdown();
            let _ = serving.await;
        }
    }
}

/// Envoy's principal name of a client certificate: URI SAN, else DNS SAN, else empty.
pub(crate) fn principal_name(leaf: &rustls_pki_types::CertificateDer<'_>) -> String {
    use crate::config::tls::SanKind;
    let sans = crate::tls::peer_sans(leaf);
    sans.iter()
        .find(|(k, _)| *k == SanKind::Uri)
        .or_else(|| sans.iter().find(|(k, _)| *k == SanKind::Dns))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The `upgrade` an HTTP/1.1 request asks for (`connection: upgrade` and `upgrade: x`).
pub fn upgrade_type(h: &http::HeaderMap) -> Option<String> {
    let asks = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    h.get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

fn route_config<'a>(conn: &'a Conn, snap: &'a Snapshot) -> Option<&'a RouteConfig> {
    match &conn.hcm.routes {
        Routes::Inline(rc) => Some(rc),
        Routes::Rds(name) => snap.routes.get(name).map(|r| &**r),
    }
}

async fn handle(conn: Arc<Conn>, mut req: Request<Incoming>) -> Response<Body> {
    let stats = &conn.shared.stats;
    stats.downstream_rq_total.fetch_add(1, Ordering::Relaxed);
    let present = Present::of(req.headers());
    // Envoy refuses a message framed both ways (`allow_chunked_length` off); hyper would
    // take the chunked framing. Close the connection too: what follows is suspect.
    if present.transfer_encoding && present.content_length {
        let mut r = reply(400, "Bad Request");
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        stats.record(&r);
        return r;
    }
    prepare_headers(&conn, &mut req, &present);
    let resp = route_request(&conn, req.map(RequestBody::from)).await;
    stats.record(&resp);
    resp
}

/// Which of the headers the connection manager looks at on every request are there, from
/// one pass over the request's few names: a lookup by name hashes it, and this replaces
/// six of them.
#[derive(Default)]
struct Present {
    transfer_encoding: bool,
    content_length: bool,
    host: bool,
    request_id: bool,
    forwarded_proto: bool,
    forwarded_for: bool,
    /// Any `x-envoy-*` header.
    envoy: bool,
}

impl Present {
    fn of(h: &http::HeaderMap) -> Present {
        let mut p = Present::default();
        for k in h.keys() {
            match k.as_str() {
                "transfer-encoding" => p.transfer_encoding = true,
                "content-length" => p.content_length = true,
                "host" => p.host = true,
                "x-request-id" => p.request_id = true,
                "x-forwarded-proto" => p.forwarded_proto = true,
                "x-forwarded-for" => p.forwarded_for = true,
                n if n.starts_with("x-envoy-") => p.envoy = true,
                _ => {}
            }
        }
        p
    }
}

/// `x-request-id`, `x-forwarded-proto`, `x-forwarded-for`, `host` for HTTP/2 requests.
fn prepare_headers(conn: &Conn, req: &mut Request<Incoming>, present: &Present) {
    if !present.host {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        if let Some(a) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            req.headers_mut().insert(http::header::HOST, a);
        }
    }
    let h = req.headers_mut();
    if !present.request_id {
        h.insert(X_REQUEST_ID, filters::request_id());
    }
    xfcc::apply(h, &conn.hcm.xfcc, conn.mtls, conn.xfcc.as_ref());
    let peer = conn.peer.ip().to_canonical();
    let edge = conn.hcm.use_remote_address
        && !conn
            .hcm
            .internal_addresses
            .iter()
            .any(|n| n.contains(&peer));
    if present.envoy {
        clean_internal_headers(h, edge);
    }
    if conn.hcm.use_remote_address || !present.forwarded_proto {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme));
    }
    if conn.hcm.use_remote_address {
        if !conn.hcm.skip_xff_append {
            let hop = &conn.peer_values.xff_hop;
            let prev = if present.forwarded_for {
                h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok())
            } else {
                None
            };
            let v = match prev {
                Some(prev) => {
                    let hop = hop.to_str().unwrap_or_default();
                    HeaderValue::from_str(&format!("{prev},{hop}")).ok()
                }
                None => Some(hop.clone()),
            };
            if let Some(v) = v {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
        // This proxy is the edge for a peer it does not call internal: it tells the
        // upstream who that peer was (and overwrites whatever the peer claimed).
        if edge {
            h.insert(X_ENVOY_EXTERNAL_ADDRESS, conn.peer_values.ip.clone());
        }
    }
}

/// Headers only Envoy itself may set, dropped from every request; and, for an edge
/// request (from a peer outside the mesh), the ones that would let a client steer
/// retries, timeouts, stats or tracing (Envoy's `cleanInternalHeaders`).
const ENVOY_ONLY: [&str; 4] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
];
const EDGE_CONTROLLED: [&str; 12] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
];

/// Called only when the request has an `x-envoy-*` header ([`Present::envoy`]): usually
/// there is nothing to drop, and 16 lookups by name would cost more than the one pass.
fn clean_internal_headers(h: &mut http::HeaderMap, edge: bool) {
    for name in ENVOY_ONLY {
        h.remove(name);
    }
    if edge {
        for name in EDGE_CONTROLLED {
            h.remove(name);
        }
    }
}

async fn route_request(conn: &Conn, mut req: Request<RequestBody>) -> Response<Body> {
    let snap = conn.shared.store.load();
    let Some(rc) = route_config(conn, &snap) else {
        return local_reply(Flag::NR);
    };
    let sent = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // Routing, filters and the upstream all see the normalized path, as in Envoy.
    let path = match path::normalize(sent, &conn.hcm.path) {
        path::Normalized::Path(p) => p,
        path::Normalized::Reject => return reply(400, "Bad Request"),
        path::Normalized::Redirect(to) => {
            let mut r = reply(307, "");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(http::header::LOCATION, v);
            }
            return r;
        }
    };
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // JWT authentication, then authorization, both before the router, as Envoy's
    // jwt_authn and RBAC filters: a refused request gets its answer whether or not a
    // route would match.
    let mut jwt_metadata = None;
    if let Some(f) = &conn.hcm.jwt {
        let method = req.method().clone();
        let r = jwt::JwtRequest {
            method: method.as_str(),
            scheme: conn.scheme,
            authority: &authority,
            path: &path,
        };
        match jwt::authenticate(f, &r, req.headers_mut()) {
            Ok(md) => jwt_metadata = md,
            Err(status) => {
                tracing::debug!(target: "spar_proxy::jwt", path = %path, reason = status.message(), "JWT refused");
                let mut resp = reply(status.code(), status.message());
                if let Some(v) = jwt::www_authenticate(conn.scheme, &authority, &path) {
                    resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                }
                return resp;
            }
        }
    }
    // Authorization runs before the router, as Envoy's RBAC and ext_authz filters: a denied
    // request gets its answer whether or not a route would match. The filters run in
    // config order (ext_authz after the shadow RBAC filter whose result enables it).
    let mut on_success = Vec::new();
    if !conn.hcm.rbac.is_empty() || !conn.hcm.ext_authz.is_empty() {
        let remote = rbac::remote_address(
            conn.peer.ip(),
            req.headers(),
            conn.hcm.use_remote_address,
            conn.hcm.xff_num_trusted_hops,
        );
        // `envoy.filters.http.rbac`'s dynamic metadata (shadow results).
        let mut rbac_md = serde_json::Map::new();
        let mut next_ext = 0;
        for i in 0..=conn.hcm.rbac.len() {
            while let Some((_, f)) = conn.hcm.ext_authz.get(next_ext).filter(|(at, _)| *at == i) {
                next_ext += 1;
                let md = ext_authz::Metadata {
                    jwt: jwt_metadata.as_ref(),
                    rbac: &rbac_md,
                };
                if !ext_authz::enabled(f, &md) {
                    continue;
                }
                // `with_request_body`: the body's first bytes go along (not for an upgrade,
                // whose body is the tunnel), as Envoy buffers them.
                let check_body = match f.with_body {
                    Some(b) if upgrade_type(req.headers()).is_none() => {
                        match req
                            .body_mut()
                            .read_for_check(b.max_bytes, b.allow_partial)
                            .await
                        {
                            Ok(body) => body,
                            Err(ReadError::TooLarge) => return reply(413, "Payload Too Large"),
                            Err(ReadError::Stream(e)) => {
                                tracing::debug!(target: "spar_proxy::ext_authz", "reading the body for the check: {e}");
                                return local_reply(Flag::DC);
                            }
                        }
                    }
                    _ => None,
                };
                let input = ext_authz::CheckInput {
                    method: req.method(),
                    path: &path,
                    authority: &authority,
                    scheme: conn.scheme,
                    version: req.version(),
                    headers: req.headers(),
                    source: SocketAddr::new(remote, conn.peer.port()),
                    destination: conn.local,
                    peer_principal: conn.peer_principal.as_deref(),
                    body: check_body.as_ref(),
                    pack_as_bytes: f.with_body.is_some_and(|b| b.pack_as_bytes),
                };
                // Boxed: the check's future (a gRPC or HTTP call) is several KB, and every
                // request's future would otherwise be that large and copied at each level.
                match Box::pin(ext_authz::run(conn, &snap, f, &input)).await {
                    ext_authz::Answer::Deny(r) => {
                        tracing::debug!(target: "spar_proxy::ext_authz", path = %path, status = r.status().as_u16(), "ext_authz denied");
                        return r;
                    }
                    ext_authz::Answer::Allow(a) => {
                        a.apply(req.headers_mut());
                        on_success.extend(a.on_success);
                    }
                }
            }
            let Some(f) = conn.hcm.rbac.get(i) else {
                break;
            };
            let head = RequestHead {
                method: req.method().as_str(),
                scheme: conn.scheme,
                authority: &authority,
                path: &path,
                headers: req.headers(),
                random: 0,
            };
            let input = rbac::RbacInput {
                head: Some(&head),
                dst: conn.dst,
                direct_remote: conn.peer.ip(),
                remote,
                peer_principal: conn.peer_principal.as_deref(),
                sni: conn.sni.as_deref().unwrap_or(""),
                jwt: jwt_metadata.as_ref(),
            };
            let (decision, shadow) = rbac::check_with_shadow(f, &input);
            if let Some(sh) = shadow {
                sh.record(&f.shadow_stat_prefix, &mut rbac_md);
            }
            if let rbac::Decision::Deny(policy) = decision {
                tracing::debug!(target: "spar_proxy::rbac", policy = policy.as_deref().unwrap_or("none matched"), path = %path, "RBAC denied");
                return reply(403, "RBAC: access denied");
            }
        }
    }
    let mut resp = dispatch(conn, &snap, rc, req, &path, &authority).await;
    for (k, v) in on_success {
        resp.headers_mut().append(k, v);
    }
    resp
}

/// Routing and the route's action, once the request is authorized.
async fn dispatch(
    conn: &Conn,
    snap: &Snapshot,
    rc: &RouteConfig,
    req: Request<RequestBody>,
    path: &str,
    authority: &str,
) -> Response<Body> {
    let head = RequestHead {
        method: req.method().as_str(),
        scheme: conn.scheme,
        authority,
        path,
        headers: req.headers(),
        random: fastrand::u64(..),
    };
    let Some(sel) = route::select(rc, &head) else {
        return local_reply(Flag::NR);
    };
    let route = sel.route;
    if sel.virtual_host.require_tls && conn.scheme == "http" {
        let mut r = reply(301, "");
        if let Ok(v) = HeaderValue::from_str(&format!("https://{authority}{path}")) {
            r.headers_mut().insert(http::header::LOCATION, v);
        }
        return r;
    }
    // CORS (only where the manager runs the filter and the route configures it).
    let cors = route.cors.as_ref().filter(|_| conn.hcm.cors);
    let origin = cors.and_then(|c| filters::cors_origin(c, req.headers()).cloned());
    if let (Some(c), Some(o)) = (cors, &origin) {
        if req.method() == http::Method::OPTIONS
            && req
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut r = reply(200, "");
            for (k, v) in filters::cors_preflight(c, o) {
                r.headers_mut().insert(k, v);
            }
            return r;
        }
    }
    // HTTP/1 upgrades (WebSocket) only where the manager allows the type, as Envoy: 403.
    let upgrade = upgrade_type(req.headers());
    if let Some(u) = &upgrade {
        if !conn.hcm.upgrades.iter().any(|a| a == u) {
            return reply(403, "");
        }
    }
    let mut flags = Vec::new();
    // Fault: delay first, then abort.
    if let Some(f) = route.fault.as_ref().filter(|_| conn.hcm.fault) {
        if let Some((delay, pct)) = f.delay {
            if pct.sample() {
                flags.push(Flag::DI);
                tokio::time::sleep(delay).await;
            }
        }
        if let Some((abort, pct)) = &f.abort {
            if pct.sample() {
                let mut r = match abort {
                    Abort::Http(code) => reply(*code, "fault filter abort"),
                    Abort::Grpc(status) => {
                        let mut r = reply(200, "");
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/grpc"),
                        );
                        r.headers_mut()
                            .insert("grpc-status", HeaderValue::from(*status));
                        r.headers_mut().insert(
                            "grpc-message",
                            HeaderValue::from_static("fault filter abort"),
                        );
                        r
                    }
                };
                flags.push(Flag::FI);
                r.extensions_mut().insert(Flags(flags));
                return r;
            }
        }
    }
    let mut resp = match &route.action {
        Action::Direct { status, body } => {
            let mut r = Response::new(body::full(body.clone()));
            *r.status_mut() = http::StatusCode::from_u16(*status).unwrap_or(http::StatusCode::OK);
            r.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(body.len() as u64),
            );
            if !body.is_empty() {
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            r
        }
        Action::Redirect(rd) => {
            let loc =
                filters::redirect_location(rd, conn.scheme, authority, path, &route.matcher.path);
            let mut r = reply(rd.status, "");
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(http::header::LOCATION, v);
            }
            r
        }
        Action::Forward(fwd) => router::forward(conn, snap, route, fwd.clone(), req, path).await,
    };
    filters::apply_ops(
        resp.headers_mut(),
        &route.headers.response_add,
        &route.headers.response_remove,
    );
    if let (Some(c), Some(o)) = (cors, &origin) {
        filters::cors_response(c, o, resp.headers_mut());
    }
    if !flags.is_empty() {
        let mut all = resp.extensions_mut().remove::<Flags>().unwrap_or_default();
        all.0.extend(flags);
        resp.extensions_mut().insert(all);
    }
    resp
}

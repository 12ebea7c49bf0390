//! Running `envoy.filters.http.ext_authz` for one request, as Envoy does: when the filter is
//! enabled for the request (`filter_enabled_metadata`, which Istio's CUSTOM action points at
//! the shadow RBAC result), ask the authorizer and either let the request on (with the
//! headers the answer adds) or answer the client with the denial.
//!
//! The authorizer is reached through the snapshot's cluster: an endpoint picked by the
//! cluster's balancer, over the proxy's upstream pools (TLS when the cluster originates it).
//!
//! - HTTP service: the request is replayed, same method, path `path_prefix` + path (query
//!   included), with the headers Envoy sends (`host`, the `authorization` header,
//!   `content-length`, the headers `allowed_headers` admits, none when it is unset, and
//!   `x-envoy-internal`, `x-envoy-expected-rq-timeout-ms`) and `headers_to_add`; its body
//!   is what `with_request_body` read, if anything. 200 allows; a 5xx or no answer is a
//!   failure; any other status denies with that status and body.
//! - gRPC service: `envoy.service.auth.v3.Authorization/Check`, unary over HTTP/2 (framing
//!   written here: a 5-byte prefix per message, `grpc-status` in the trailers). Status 0
//!   allows; any other denies (`denied_response`, else 403); a call that fails is a failure.
//! - A failure denies with `status_on_error`, or allows with `failure_mode_allow`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, check_response, AttributeContext, CheckRequest, CheckResponse,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{Map, Value};

use super::body::{self, Body};
use super::request_body::CheckBody;
use super::Conn;
use crate::config::ext_authz::{any_matches, ExtAuthz, GrpcAuthz, HttpAuthz, Service};
use crate::config::metadata::{JWT_AUTHN, RBAC};
use crate::config::Snapshot;
use crate::lb::PickCtx;
use crate::proxy::Shared;

/// The largest authorizer answer read (a bigger one is a failure).
const MAX_ANSWER: usize = 1024 * 1024;
/// The gRPC method Envoy calls.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
/// The header `failure_mode_allow_header_add` sets upstream.
pub const FAILURE_MODE_ALLOWED: &str = "x-envoy-auth-failure-mode-allowed";

/// What the request looks like to the filter.
pub struct CheckInput<'a> {
    pub method: &'a Method,
    /// The (normalized) path with its query.
    pub path: &'a str,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub version: http::Version,
    pub headers: &'a HeaderMap,
    /// The client (source) and where the connection was accepted (destination).
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub peer_principal: Option<&'a str>,
    /// The body's first bytes, with `with_request_body` and a request that has a body.
    pub body: Option<&'a CheckBody>,
    /// gRPC: the body goes in `raw_body` (`pack_as_bytes`).
    pub pack_as_bytes: bool,
}

/// The header telling the authorizer whether the body it got was cut at `max_request_bytes`.
pub const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

impl CheckInput<'_> {
    /// `x-envoy-auth-partial-body`'s value, when a body is sent.
    fn partial(&self) -> Option<&'static str> {
        self.body.map(|b| if b.partial { "true" } else { "false" })
    }
}

/// The request's dynamic metadata the filter can be enabled by.
pub struct Metadata<'a> {
    pub jwt: Option<&'a Map<String, Value>>,
    pub rbac: &'a Map<String, Value>,
}

/// Whether the filter runs for a request with this metadata.
pub fn enabled(f: &ExtAuthz, md: &Metadata<'_>) -> bool {
    let Some(m) = &f.enabled_metadata else {
        return true;
    };
    let ns = match m.filter.as_str() {
        RBAC => Some(md.rbac),
        JWT_AUTHN => md.jwt,
        _ => None,
    };
    m.matches(ns)
}

/// The authorizer's answer, as the filter applies it.
#[derive(Debug)]
pub enum Answer {
    Allow(Allowed),
    Deny(Response<Body>),
}

/// What an allowed check changes.
#[derive(Debug, Default)]
pub struct Allowed {
    /// Set on the upstream request (replacing a header of the same name).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appended to the upstream request.
    pub append: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the upstream request.
    pub remove: Vec<HeaderName>,
    /// Added to the response the client eventually gets.
    pub on_success: Vec<(HeaderName, HeaderValue)>,
}

impl Allowed {
    /// Applies the upstream changes to the request's headers.
    pub fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (k, _) in &self.set {
            h.remove(k);
        }
        for (k, v) in self.set.iter().chain(&self.append) {
            h.append(k.clone(), v.clone());
        }
    }
}

/// Why the authorizer gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cluster {0:?} is not in the proxy's configuration (is the provider's service in the mesh?)")]
    NoCluster(String),
    #[error("cluster {0:?} has no healthy endpoint")]
    NoHost(String),
    #[error("the authorizer's endpoint {0} is this proxy's own listener")]
    Loop(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Upstream(#[from] super::upstream::UpstreamError),
    #[error("the authorizer answered {0} (a failure, as in Envoy)")]
    ServerError(u16),
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// Runs the filter: asks the authorizer and applies its answer, or the failure policy.
pub async fn run(conn: &Conn, snap: &Snapshot, f: &ExtAuthz, input: &CheckInput<'_>) -> Answer {
    let result = match &f.service {
        Service::Http(h) => tokio::time::timeout(h.timeout, ask_http(conn, snap, f, h, input))
            .await
            .unwrap_or(Err(CheckError::Timeout(h.timeout))),
        Service::Grpc(g) => tokio::time::timeout(g.timeout, ask_grpc(conn, snap, g, input))
            .await
            .unwrap_or(Err(CheckError::Timeout(g.timeout))),
    };
    match result {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(target: "spar_proxy::ext_authz", path = %input.path, "authorizer failed: {e}");
            failed(f)
        }
    }
}

/// Reads an answer's body (at most [`MAX_ANSWER`] bytes) and its trailers.
async fn read_answer(mut b: Body) -> Result<(Bytes, HeaderMap), CheckError> {
    let mut data = BytesMut::new();
    let mut trailers = HeaderMap::new();
    while let Some(frame) = b.frame().await {
        let frame = frame.map_err(|e| CheckError::BadAnswer(format!("reading the answer: {e}")))?;
        match frame.into_data() {
            Ok(d) => {
                if data.len() + d.len() > MAX_ANSWER {
                    return Err(CheckError::BadAnswer(format!(
                        "the answer is larger than {MAX_ANSWER} bytes"
                    )));
                }
                data.extend_from_slice(&d);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    Ok((data.freeze(), trailers))
}

/// The answer when the authorizer fails: `status_on_error`, or on with `failure_mode_allow`.
pub fn failed(f: &ExtAuthz) -> Answer {
    if f.failure_mode_allow {
        let mut a = Allowed::default();
        if f.failure_mode_allow_header_add {
            a.set.push((
                HeaderName::from_static(FAILURE_MODE_ALLOWED),
                HeaderValue::from_static("true"),
            ));
        }
        return Answer::Allow(a);
    }
    Answer::Deny(body::reply(f.status_on_error, ""))
}

/// A cluster's balancer, the endpoint it picked, and the TLS to reach that endpoint with.
type Endpoint = (
    std::sync::Arc<crate::lb::ClusterLb>,
    std::sync::Arc<crate::lb::Host>,
    Option<super::upstream::TlsTarget>,
);

/// An endpoint of `cluster` and the TLS to reach it with, for a connection to `dst`
/// accepted on `local` (an endpoint that is that very socket would loop).
fn endpoint(
    shared: &Shared,
    snap: &Snapshot,
    cluster: &str,
    dst: SocketAddr,
    local: &str,
) -> Result<Endpoint, CheckError> {
    let lb = snap
        .balancers
        .get(cluster)
        .cloned()
        .ok_or_else(|| CheckError::NoCluster(cluster.to_string()))?;
    let ctx = PickCtx {
        original_dst: Some(dst),
        ..Default::default()
    };
    let host = lb
        .pick(&ctx)
        .ok_or_else(|| CheckError::NoHost(cluster.to_string()))?;
    if host.authority == local {
        return Err(CheckError::Loop(host.authority.clone()));
    }
    let tls = match &host.tls {
        None => None,
        Some(t) => Some(super::router::tls_target(shared, t, &host.authority)?),
    };
    Ok((lb, host, tls))
}

/// Request headers Envoy always sends an HTTP authorizer (besides the request line).
const ALWAYS_SENT: [&str; 1] = ["authorization"];
/// Headers never copied from the client's request.
const NOT_COPIED: [&str; 4] = ["content-length", "transfer-encoding", "host", "expect"];

/// The headers of the check request to an HTTP authorizer.
pub fn http_check_headers(f: &ExtAuthz, h: &HttpAuthz, input: &CheckInput<'_>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in input.headers {
        let name = k.as_str();
        if NOT_COPIED.contains(&name) {
            continue;
        }
        // Unset: no client header but the always-sent ones (Envoy 1.3x; an HTTP
        // authorizer sees only what Istio's includeRequestHeadersInCheck names).
        let admitted = ALWAYS_SENT.contains(&name)
            || f.allowed_headers
                .as_ref()
                .is_some_and(|l| any_matches(l, name));
        if admitted {
            out.append(k.clone(), v.clone());
        }
    }
    super::filters::strip_hop_by_hop(&mut out);
    if let Ok(v) = HeaderValue::from_str(input.authority) {
        out.insert(http::header::HOST, v);
    }
    // What Envoy's async client adds to every call it makes.
    out.insert("x-envoy-internal", HeaderValue::from_static("true"));
    out.insert(
        "x-envoy-expected-rq-timeout-ms",
        HeaderValue::from(h.timeout.as_millis() as u64),
    );
    // Envoy sends it whatever the header list says.
    if let Some(p) = input.partial() {
        out.insert(PARTIAL_BODY, HeaderValue::from_static(p));
    }
    out.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(http_check_body(input).len() as u64),
    );
    for (k, v) in &h.headers_to_add {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The body an HTTP authorizer gets: what `with_request_body` read, except with
/// `pack_as_bytes`, where (as in Envoy) it goes only to gRPC authorizers' `raw_body`.
fn http_check_body(input: &CheckInput<'_>) -> Bytes {
    match input.body {
        Some(b) if !input.pack_as_bytes => b.bytes.clone(),
        _ => Bytes::new(),
    }
}

async fn ask_http(
    conn: &Conn,
    snap: &Snapshot,
    f: &ExtAuthz,
    h: &HttpAuthz,
    input: &CheckInput<'_>,
) -> Result<Answer, CheckError> {
    let (lb, host, tls) = endpoint(&conn.shared, snap, &h.cluster, conn.dst, &conn.local_text)?;
    let path = format!("{}{}", h.path_prefix, input.path);
    let headers = http_check_headers(f, h, input);
    let check_body = http_check_body(input);
    let check_body = if check_body.is_empty() {
        body::empty()
    } else {
        body::full(check_body)
    };
    let resp = super::router::send_one(
        &conn.shared,
        &lb.cluster,
        &host,
        tls,
        input.method,
        headers,
        None,
        &path,
        check_body,
    )
    .await?;
    let (head, b) = resp.into_parts();
    let (bytes, _) = read_answer(b).await?;
    http_answer(f, h, head.status, &head.headers, bytes)
}

/// Envoy's reading of an HTTP authorizer's answer.
pub fn http_answer(
    f: &ExtAuthz,
    h: &HttpAuthz,
    status: StatusCode,
    headers: &HeaderMap,
    body_bytes: Bytes,
) -> Result<Answer, CheckError> {
    if status.is_server_error() {
        return Err(CheckError::ServerError(status.as_u16()));
    }
    let pick = |list: &Option<Vec<crate::config::matcher::StringMatch>>| -> Vec<(HeaderName, HeaderValue)> {
        let Some(list) = list else { return Vec::new() };
        headers
            .iter()
            .filter(|(k, _)| any_matches(list, k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if status == StatusCode::OK {
        return Ok(Answer::Allow(Allowed {
            set: pick(&h.allowed_upstream),
            on_success: pick(&h.allowed_client_on_success),
            ..Default::default()
        }));
    }
    // Denied: unset → every header but `host`; set → those and Envoy's four.
    const DEFAULT_CLIENT: [&str; 3] = ["content-length", "www-authenticate", "location"];
    let to_client: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            match &h.allowed_client {
                None => k != "host",
                Some(l) => DEFAULT_CLIENT.contains(&k) || any_matches(l, k),
            }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Answer::Deny(denial(
        f,
        status.as_u16(),
        to_client,
        body_bytes,
    )))
}

/// The client's answer to a denied request.
fn denial(
    f: &ExtAuthz,
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    mut body_bytes: Bytes,
) -> Response<Body> {
    if f.max_denied_body > 0 && body_bytes.len() > f.max_denied_body {
        body_bytes.truncate(f.max_denied_body);
    }
    let len = body_bytes.len();
    let mut r = Response::new(if body_bytes.is_empty() {
        body::empty()
    } else {
        body::full(body_bytes)
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let mut hm = HeaderMap::new();
    for (k, v) in headers {
        hm.append(k, v);
    }
    super::filters::strip_hop_by_hop(&mut hm);
    hm.remove(http::header::CONTENT_LENGTH);
    hm.remove(http::header::TRANSFER_ENCODING);
    if len > 0 && !hm.contains_key(http::header::CONTENT_TYPE) {
        hm.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    hm.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len as u64));
    *r.headers_mut() = hm;
    r
}

pub(crate) fn socket_address(a: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_canonical().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// Headers Envoy's connection manager takes off a request before any filter sees it.
const CONNECTION_HEADERS: [&str; 4] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];

/// The `CheckRequest` Envoy sends a gRPC authorizer for this request (no body).
pub fn check_request(input: &CheckInput<'_>) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: &str| {
        headers
            .entry(k.to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    };
    put(":authority", input.authority);
    put(":method", input.method.as_str());
    put(":path", input.path);
    put(":scheme", input.scheme);
    for (k, v) in input.headers {
        // The connection's own headers never reach Envoy's filters.
        if k == http::header::HOST || CONNECTION_HEADERS.contains(&k.as_str()) {
            continue;
        }
        put(k.as_str(), &String::from_utf8_lossy(v.as_bytes()));
    }
    if let Some(p) = input.partial() {
        // Set, not appended: a client cannot pose as the proxy here.
        headers.insert(PARTIAL_BODY.to_string(), p.to_string());
    }
    let protocol = match input.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    let http = attribute_context::HttpRequest {
        id: input
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        method: input.method.as_str().to_string(),
        headers,
        path: input.path.to_string(),
        host: input.authority.to_string(),
        scheme: input.scheme.to_string(),
        protocol: protocol.to_string(),
        size: input
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1),
        body: match input.body {
            Some(b) if !input.pack_as_bytes => String::from_utf8_lossy(&b.bytes).into_owned(),
            _ => String::new(),
        },
        raw_body: match input.body {
            Some(b) if input.pack_as_bytes => b.bytes.to_vec(),
            _ => Vec::new(),
        },
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(socket_address(input.source)),
                principal: input.peer_principal.unwrap_or("").to_string(),
                ..Default::default()
            }),
            destination: Some(attribute_context::Peer {
                address: Some(socket_address(input.destination)),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                time: None,
                http: Some(http),
            }),
            ..Default::default()
        }),
    }
}

/// One gRPC message: the uncompressed flag, the length, the message.
pub fn grpc_frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    msg.encode(&mut b).unwrap_or_default();
    b.freeze()
}

/// The one message of a unary gRPC answer.
pub fn grpc_unframe(mut b: Bytes) -> Result<Bytes, CheckError> {
    if b.len() < 5 {
        return Err(CheckError::BadAnswer(
            "no gRPC message in the answer".into(),
        ));
    }
    let compressed = b.get_u8();
    let len = b.get_u32() as usize;
    if compressed != 0 {
        return Err(CheckError::BadAnswer("compressed gRPC message".into()));
    }
    if b.len() < len {
        return Err(CheckError::BadAnswer("truncated gRPC message".into()));
    }
    Ok(b.split_to(len))
}

async fn ask_grpc(
    conn: &Conn,
    snap: &Snapshot,
    g: &GrpcAuthz,
    input: &CheckInput<'_>,
) -> Result<Answer, CheckError> {
    let req = check_request(input);
    let resp = call_grpc(&conn.shared, snap, g, conn.dst, &conn.local_text, &req).await?;
    Ok(grpc_answer(resp))
}

/// `Authorization/Check` on the authorizer `g`, for a connection to `dst` accepted on
/// `local`: its `CheckResponse`, or why there is none.
pub async fn call_grpc(
    shared: &Shared,
    snap: &Snapshot,
    g: &GrpcAuthz,
    dst: SocketAddr,
    local: &str,
    check: &CheckRequest,
) -> Result<CheckResponse, CheckError> {
    let (_, host, tls) = endpoint(shared, snap, &g.cluster, dst, local)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri: http::Uri = format!("{scheme}://{}{CHECK_PATH}", g.authority)
        .parse()
        .map_err(|_| CheckError::BadAnswer(format!("authority {:?} is not valid", g.authority)))?;
    let mut req = Request::new(body::full(grpc_frame(check)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    let h = req.headers_mut();
    for (k, v) in &g.initial_metadata {
        h.append(k.clone(), v.clone());
    }
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if let Ok(v) = HeaderValue::from_str(&format!("{}m", g.timeout.as_millis())) {
        h.insert("grpc-timeout", v);
    }
    let connect = snap
        .clusters
        .get(&g.cluster)
        .map_or(Duration::from_secs(10), |c| c.connect_timeout);
    let resp = shared
        .upstream
        .send_h2(&host.authority, connect, tls.as_ref(), req)
        .await?;
    let (head, b) = resp.into_parts();
    if head.status != StatusCode::OK {
        return Err(CheckError::BadAnswer(format!(
            "HTTP status {}",
            head.status
        )));
    }
    let (bytes, trailers) = read_answer(b).await?;
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| head.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if grpc_status != "0" {
        let msg = trailers
            .get("grpc-message")
            .or_else(|| head.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(CheckError::BadAnswer(format!(
            "grpc-status {grpc_status:?} {msg}"
        )));
    }
    let msg = grpc_unframe(bytes)?;
    CheckResponse::decode(msg)
        .map_err(|e| CheckError::BadAnswer(format!("CheckResponse does not decode: {e}")))
}

fn option_header(o: &HeaderValueOption) -> Option<(HeaderName, HeaderValue, bool)> {
    let h = o.header.as_ref()?;
    let name = HeaderName::from_bytes(h.key.to_ascii_lowercase().as_bytes()).ok()?;
    let value = if h.raw_value.is_empty() {
        HeaderValue::from_str(&h.value).ok()?
    } else {
        HeaderValue::from_bytes(&h.raw_value).ok()?
    };
    #[allow(deprecated)] // `append` (Envoy still reads it when set)
    let append = o.append.as_ref().is_some_and(|b| b.value);
    Some((name, value, append))
}

/// Envoy's reading of a `CheckResponse`: status 0 allows (ok_response's headers upstream),
/// anything else denies (denied_response's status, else 403, its headers and body).
pub fn grpc_answer(resp: CheckResponse) -> Answer {
    let code = resp.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let mut a = Allowed::default();
        if let Some(check_response::HttpResponse::OkResponse(ok)) = &resp.http_response {
            for (k, v, append) in ok.headers.iter().filter_map(option_header) {
                if append {
                    a.append.push((k, v));
                } else {
                    a.set.push((k, v));
                }
            }
            a.remove = ok
                .headers_to_remove
                .iter()
                .filter(|n| !n.starts_with(':') && !n.eq_ignore_ascii_case("host"))
                .filter_map(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
                .collect();
            a.on_success = ok
                .response_headers_to_add
                .iter()
                .filter_map(option_header)
                .map(|(k, v, _)| (k, v))
                .collect();
        }
        return Answer::Allow(a);
    }
    let (status, headers, body_text) = match resp.http_response {
        Some(check_response::HttpResponse::DeniedResponse(d)) => (
            d.status.map_or(0, |s| s.code),
            d.headers
                .iter()
                .filter_map(option_header)
                .map(|(k, v, _)| (k, v))
                .collect(),
            d.body,
        ),
        _ => (0, Vec::new(), String::new()),
    };
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .unwrap_or(403);
    let mut r = Response::new(if body_text.is_empty() {
        body::empty()
    } else {
        body::full(body_text.clone())
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let hm = r.headers_mut();
    for (k, v) in headers {
        hm.append(k, v);
    }
    hm.remove(http::header::CONTENT_LENGTH);
    if !body_text.is_empty() && !hm.contains_key(http::header::CONTENT_TYPE) {
        hm.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    hm.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(body_text.len() as u64),
    );
    Answer::Deny(r)
}

#[cfg(test)]
mod tests;

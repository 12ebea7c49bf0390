//! Upstream HTTP clients.
//!
//! HTTP/1.1 upstreams (most of a mesh) go through [`Pools::send_h1`]: idle connections per
//! upstream address, checked out and back under one short lock, each driven by its own
//! task, and requests written in origin form with the Host header the router chose. hyper's
//! pooled `Client` did the same with a pool key built from the URI, a formatted and parsed
//! absolute URI per request and more bookkeeping; it was ~10% of the proxy's CPU per request.
//! HTTP/2 upstreams (prior knowledge, when the cluster asks for it, plaintext or over the
//! cluster's TLS) go through [`Pools::send_h2`]: one multiplexed connection per upstream
//! address and TLS context, as Envoy keeps one per host until it is closed. Upgraded
//! (WebSocket) requests use hyper's pooled `Client` ([`Pools::client`]), in plaintext.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::{Body, BoxError};

pub type HttpClient = Client<HttpConnector, Body>;

/// How long an idle upstream HTTP/1.1 connection is kept (hyper's pooled client: 60 s; Envoy's
/// `idle_timeout` default is an hour, but upstreams usually close sooner).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, unreachable or not within the cluster's connect timeout.
    #[error("cannot connect to {authority}: {why}")]
    Connect { authority: String, why: String },
    /// The connection failed after the request was (perhaps partly) sent.
    #[error("upstream reset: {0}")]
    Reset(String),
    #[error("the request path {0:?} is not a valid request target")]
    BadPath(String),
}

/// A pooled HTTP/1.1 connection and when it was last handed back.
type Idle = (Instant, SendRequest<Body>);

/// Idle HTTP/1.1 connections (each has finished its last response) by upstream `ip:port`
/// (and TLS context). Looked up twice per request (check-out, hand-back): a fast hash, and
/// shared keys so a hand-back copies no string.
type IdleConnections = Mutex<HashMap<Arc<str>, IdleList, foldhash::fast::RandomState>>;

/// One address's idle connections, most recently returned last, and its key.
struct IdleList {
    key: Arc<str>,
    idle: Vec<Idle>,
}

/// The shared HTTP/2 connection to each upstream address (and TLS context). Its slot is
/// locked while a connection is being made, so requests that arrive meanwhile wait for that
/// one instead of each opening their own (as Envoy attaches them to the connecting one).
type H2Slot = Arc<tokio::sync::Mutex<Option<http2::SendRequest<Body>>>>;
type H2Connections = Mutex<HashMap<String, H2Slot>>;

/// The pools, created on first use.
#[derive(Default)]
pub struct Pools {
    clients: Mutex<HashMap<(bool, Duration), HttpClient>>,
    h1: Arc<IdleConnections>,
    h2: H2Connections,
}

/// The pool key: the address, and the TLS context when there is one (TLS connections are
/// pooled apart from plaintext ones to the same address).
fn pool_key<'a>(authority: &'a str, tls: Option<&TlsTarget>) -> std::borrow::Cow<'a, str> {
    match tls {
        None => std::borrow::Cow::Borrowed(authority),
        Some(t) => std::borrow::Cow::Owned(format!("{authority}|tls|{}", t.pool_suffix)),
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pools")
    }
}

impl Pools {
    /// hyper's pooled client, for upgraded (WebSocket) requests.
    pub fn client(&self, http2: bool, connect_timeout: Duration) -> HttpClient {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((http2, connect_timeout))
            .or_insert_with(|| {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(connect_timeout));
                conn.set_nodelay(true);
                conn.enforce_http(true);
                let mut b = Client::builder(TokioExecutor::new());
                b.pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .set_host(false);
                if http2 {
                    b.http2_only(true);
                }
                b.build(conn)
            })
            .clone()
    }

    /// Sends `req` (its URI: the path and query only) to `authority` over HTTP/1.1 on an idle
    /// pooled connection, or a new one. A request that a reused connection closed before
    /// taking it is sent again on a new connection, as hyper's pooled client does. The
    /// connection goes back to the pool when the response body has been read to its end.
    pub async fn send_h1(
        &self,
        authority: &str,
        connect_timeout: Duration,
        tls: Option<&TlsTarget>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let key = pool_key(authority, tls);
        let key = key.as_ref();
        while let Some((key, mut sender)) = self.checkout(key) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(key, sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Never written: the server had closed the idle connection.
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Reset(e.into_error().to_string())),
                },
            }
        }
        // Boxed (as below): connecting (TCP, TLS) takes a future of KBs that only a new
        // connection needs; unboxed, every request's future would carry it.
        let mut sender = Box::pin(connect(authority, connect_timeout, tls)).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Reset(e.to_string()))?;
        Ok(self.pooled(Arc::from(key), sender, resp))
    }

    /// Sends `req` (an absolute URI) to `authority` over HTTP/2 with prior knowledge, on the
    /// connection shared by every request to that address and TLS context, or a new one
    /// when there is none or it closed. A request the shared connection refused before
    /// sending it (it was going away) is sent again on a new connection.
    pub async fn send_h2(
        &self,
        authority: &str,
        connect_timeout: Duration,
        tls: Option<&TlsTarget>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let key = pool_key(authority, tls);
        let slot = {
            let mut map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key.as_ref()) {
                Some(slot) => slot.clone(),
                None => map.entry(key.to_string()).or_default().clone(),
            }
        };
        // The shared connection gets one try; a request it could not take goes on a new one.
        let mut reuse = true;
        loop {
            let (mut sender, fresh) = {
                let mut shared = slot.lock().await;
                match shared.as_ref() {
                    Some(s) if reuse && !s.is_closed() => (s.clone(), false),
                    _ => {
                        let s = Box::pin(connect_h2(authority, connect_timeout, tls)).await?;
                        *shared = Some(s.clone());
                        (s, true)
                    }
                }
            };
            let sent = match sender.ready().await {
                Ok(()) => sender.try_send_request(req).await,
                Err(e) if fresh => return Err(UpstreamError::Reset(e.to_string())),
                Err(_) => {
                    reuse = false;
                    continue;
                }
            };
            match sent {
                Ok(resp) => {
                    return Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        reuse = false;
                        req = unsent;
                    }
                    _ => return Err(UpstreamError::Reset(e.into_error().to_string())),
                },
            }
        }
    }

    /// The most recently returned connection that is still open; ones idle longer than
    /// [`IDLE_TIMEOUT`] are dropped on the way. Every pooled connection has finished its
    /// last response, so it is ready for the next request as soon as its task notices.
    /// The pool's key comes along, for the hand-back.
    fn checkout(&self, authority: &str) -> Option<(Arc<str>, SendRequest<Body>)> {
        let now = Instant::now();
        let mut map = self.h1.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(authority)?;
        while let Some((at, sender)) = list.idle.pop() {
            if !sender.is_closed() && now.duration_since(at) <= IDLE_TIMEOUT {
                return Some((list.key.clone(), sender));
            }
        }
        None
    }

    /// The response, with a body that hands the connection back once it is read to the end.
    fn pooled(
        &self,
        authority: Arc<str>,
        sender: SendRequest<Body>,
        resp: Response<Incoming>,
    ) -> Response<Body> {
        let release = Release {
            pool: self.h1.clone(),
            authority,
            sender,
        };
        resp.map(|inner| {
            let mut body = PooledBody {
                inner,
                release: Some(release),
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body.boxed_unsync()
        })
    }
}

/// A connection to hand back to the pool.
struct Release {
    pool: Arc<IdleConnections>,
    authority: Arc<str>,
    sender: SendRequest<Body>,
}

/// An upstream response body that returns its connection to the pool when it ends; one
/// dropped before its end takes the connection with it (its state is unknown).
struct PooledBody {
    inner: Incoming,
    release: Option<Release>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(r) = self.release.take() {
            let entry = (Instant::now(), r.sender);
            let mut map = r.pool.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&*r.authority) {
                Some(list) => list.idle.push(entry),
                None => {
                    let key = r.authority.clone();
                    map.insert(
                        r.authority,
                        IdleList {
                            key,
                            idle: vec![entry],
                        },
                    );
                }
            }
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.release = None,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// TLS to originate on an upstream connection.
pub struct TlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls_pki_types::ServerName<'static>,
    /// Tells this context's pooled connections apart (the SNI and the context).
    pub pool_suffix: String,
}

/// A TCP connection to `authority`, with TLS when `tls` says so; the timeout covers both
/// (Envoy's `connect_timeout` includes the transport socket's handshake).
pub async fn connect_stream(
    authority: &str,
    timeout: Duration,
    tls: Option<&TlsTarget>,
) -> Result<UpstreamStream, UpstreamError> {
    let failed = |why: String| UpstreamError::Connect {
        authority: authority.to_string(),
        why,
    };
    let connect = async {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok(UpstreamStream::Plain(stream)),
            Some(t) => tokio_rustls::TlsConnector::from(t.config.clone())
                .connect(t.server_name.clone(), stream)
                .await
                .map(|s| UpstreamStream::Tls(Box::new(s)))
                .map_err(|e| failed(format!("TLS handshake: {e}"))),
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(failed(format!("no answer within {timeout:?}"))),
    }
}

/// An upstream connection, plain or TLS.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A new HTTP/1.1 connection, driven by its own task until either side closes it.
async fn connect(
    authority: &str,
    timeout: Duration,
    tls: Option<&TlsTarget>,
) -> Result<SendRequest<Body>, UpstreamError> {
    let stream = connect_stream(authority, timeout, tls).await?;
    let failed = |e: hyper::Error| UpstreamError::Connect {
        authority: authority.to_string(),
        why: e.to_string(),
    };
    let builder = hyper::client::conn::http1::Builder::new();
    let sender = match stream {
        UpstreamStream::Plain(s) => {
            let (sender, conn) = builder.handshake(TokioIo::new(s)).await.map_err(failed)?;
            tokio::spawn(drive(conn));
            sender
        }
        UpstreamStream::Tls(s) => {
            let (sender, conn) = builder.handshake(TokioIo::new(*s)).await.map_err(failed)?;
            tokio::spawn(drive(conn));
            sender
        }
    };
    Ok(sender)
}

/// A new HTTP/2 connection (prior knowledge, whatever ALPN settled on: the cluster says the
/// upstream speaks HTTP/2, as Envoy's explicit http2 protocol options do), driven by its
/// own task.
async fn connect_h2(
    authority: &str,
    timeout: Duration,
    tls: Option<&TlsTarget>,
) -> Result<http2::SendRequest<Body>, UpstreamError> {
    let stream = connect_stream(authority, timeout, tls).await?;
    let failed = |e: hyper::Error| UpstreamError::Connect {
        authority: authority.to_string(),
        why: e.to_string(),
    };
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    let sender = match stream {
        UpstreamStream::Plain(s) => {
            let (sender, conn) = builder.handshake(TokioIo::new(s)).await.map_err(failed)?;
            tokio::spawn(drive(conn));
            sender
        }
        UpstreamStream::Tls(s) => {
            let (sender, conn) = builder.handshake(TokioIo::new(*s)).await.map_err(failed)?;
            tokio::spawn(drive(conn));
            sender
        }
    };
    Ok(sender)
}

async fn drive<F: std::future::Future<Output = Result<(), hyper::Error>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!("upstream connection ended: {e}");
    }
}

/// The request target for an HTTP/1.1 upstream: origin form, as Envoy sends it.
pub fn origin_form(path: &str) -> Result<Uri, UpstreamError> {
    Uri::try_from(path).map_err(|_| UpstreamError::BadPath(path.to_string()))
}

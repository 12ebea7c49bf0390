//! gRPC over HTTP/2 for the two ADS methods, on hyper directly.
//!
//! tonic's server encodes each response message whole into a per-stream buffer that keeps
//! its largest size for the life of the stream: with a full config of ~1.6 MB per proxy
//! and 2,000 proxies that is gigabytes held for nothing. Here a response is written in
//! chunks of at most [`CHUNK`] bytes as HTTP/2 asks for data (large resources go out as the
//! shared bytes themselves, without a copy), so a stream holds at most one chunk beyond
//! what flow control lets through. The framing is standard gRPC: length-prefixed
//! messages, `grpc-status` in the trailers; clients see no difference.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::Status;

use crate::server::{Caller, Shared};
use crate::source::ResourceSource;
use crate::wire::{WireMessage, WriteState};

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Requests are small (a SotW EDS ACK names every cluster: ~60 KB for 1,000 services).
const MAX_REQUEST: usize = 64 << 20;
/// Response bytes handed to HTTP/2 at a time.
pub(crate) const CHUNK: usize = 32 << 10;
/// Resources at least this big are sent as their shared bytes instead of being copied.
pub(crate) const ZERO_COPY_MIN: usize = 8 << 10;
// Responses are few and large; a short queue applies backpressure to a slow proxy instead
// of buffering its pushes.
const RESPONSE_QUEUE: usize = 8;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTP/2 PING interval: finds dead peers behind NAT or a crashed proxy host.
    pub keepalive: Option<Duration>,
    /// Answer Delta streams with UNIMPLEMENTED, like an older control plane (tests of the
    /// clients' fallback).
    pub refuse_delta: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            keepalive: Some(Duration::from_secs(30)),
            refuse_delta: false,
        }
    }
}

/// Binds the xDS address with a listen backlog for a fleet: after a control-plane restart
/// every proxy reconnects at once, and the default backlog (1,024) overflows into SYN
/// cookies and resets on a busy machine.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

/// Accepts connections on `listener` until `shutdown` completes.
pub(crate) async fn serve<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors or a connection reset before accept: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "xDS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http.timer(TokioTimer::new())
                .keep_alive_interval(opts.keepalive)
                .keep_alive_timeout(Duration::from_secs(20))
                .max_concurrent_streams(64)
                // What HTTP/2 may hold for a stream beyond the peer's window: a couple of
                // our chunks, not hyper's default 400 KB per proxy.
                .max_send_buf_size(2 * CHUNK);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                let refuse_delta = opts.refuse_delta;
                let (parts, body) = req.into_parts();
                let body = tonic::body::Body::new(body);
                async move {
                    Ok::<_, Infallible>(route(shared, parts.uri.path(), body, None, refuse_delta))
                }
            });
            let (io, writer) = crate::coalesce::gathered(stream);
            let conn = http.serve_connection(TokioIo::new(io), svc);
            if let Err(e) = crate::coalesce::write_after_poll(conn, writer).await {
                tracing::debug!(error = %e, "xDS connection ended");
            }
        });
    }
}

/// Starts the stream `path` names. `caller` is the authenticated identity on the secure
/// port, `None` on the plaintext one.
pub(crate) fn route<S: ResourceSource>(
    shared: Arc<Shared<S>>,
    path: &str,
    body: tonic::body::Body,
    caller: Option<Caller>,
    refuse_delta: bool,
) -> Response<ResponseBody> {
    match path {
        SOTW_PATH => {
            let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
            let requests = Requests::<crate::sotw_request::SotwRequest>::new(body);
            tokio::spawn(crate::sotw::run(shared, requests, tx, caller));
            ResponseBody::streaming(rx)
        }
        DELTA_PATH if !refuse_delta => {
            let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
            let requests = Requests::<DeltaDiscoveryRequest>::new(body);
            tokio::spawn(crate::delta::run(shared, requests, tx, caller));
            ResponseBody::streaming(rx)
        }
        path => ResponseBody::trailers_only(&Status::unimplemented(format!(
            "{path} is not served here (only ADS: StreamAggregatedResources, DeltaAggregatedResources)"
        ))),
    }
}

/// The request messages of one stream.
pub(crate) struct Requests<M> {
    body: tonic::body::Body,
    buf: BytesMut,
    _message: PhantomData<M>,
}

/// A request message the server reads from the bytes received.
pub(crate) trait RequestMessage: Sized {
    fn decode(message: Bytes) -> Result<Self, prost::DecodeError>;
}

impl RequestMessage for envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest {
    fn decode(message: Bytes) -> Result<Self, prost::DecodeError> {
        <Self as Message>::decode(message)
    }
}

impl RequestMessage for crate::sotw_request::SotwRequest {
    fn decode(message: Bytes) -> Result<Self, prost::DecodeError> {
        crate::sotw_request::SotwRequest::decode(message)
    }
}

impl<M: RequestMessage> Requests<M> {
    fn new(body: tonic::body::Body) -> Self {
        Requests {
            body,
            buf: BytesMut::new(),
            _message: PhantomData,
        }
    }

    /// The next message; `None` when the client half-closed the stream.
    pub(crate) async fn message(&mut self) -> Result<Option<M>, Status> {
        loop {
            if let Some(msg) = self.take()? {
                return Ok(Some(msg));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(Status::unavailable(format!("xDS stream: {e}"))),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(Status::internal(
                        "the stream ended inside a message (was the client cut off?)",
                    ))
                }
            }
        }
    }

    fn take(&mut self) -> Result<Option<M>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed xDS requests are not supported; turn off gRPC compression on the client",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_REQUEST {
            return Err(Status::resource_exhausted(format!(
                "an xDS request of {len} bytes is over the {MAX_REQUEST}-byte limit"
            )));
        }
        if self.buf.len() < 5 + len {
            // Room for the whole message at once: a SotW ACK repeating 1,200 names is ~50 KB
            // in 16 KB frames, and growing the buffer frame by frame copied it again each time.
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(5);
        let msg = M::decode(self.buf.split_to(len).freeze())
            .map_err(|e| Status::invalid_argument(format!("cannot decode the xDS request: {e}")))?;
        if self.buf.is_empty() {
            // The empty tail still shares the message's allocation: kept, it would hold the
            // last request (a 50 KB SotW ACK) for the life of the stream, 2,000 of them
            // after one endpoint change.
            self.buf = BytesMut::new();
        }
        Ok(Some(msg))
    }
}

/// Response messages as HTTP/2 data, then the gRPC status as trailers.
pub(crate) struct ResponseBody {
    rx: Option<mpsc::Receiver<Result<Box<dyn WireMessage>, Status>>>,
    current: Option<(Box<dyn WireMessage>, WriteState)>,
    out: Out,
    trailers: Option<HeaderMap>,
}

pub(crate) type Tx = mpsc::Sender<Result<Box<dyn WireMessage>, Status>>;

impl ResponseBody {
    fn streaming(
        rx: mpsc::Receiver<Result<Box<dyn WireMessage>, Status>>,
    ) -> Response<ResponseBody> {
        grpc_response(ResponseBody {
            rx: Some(rx),
            current: None,
            out: Out::default(),
            trailers: None,
        })
    }

    pub(crate) fn trailers_only(status: &Status) -> Response<ResponseBody> {
        let mut resp = grpc_response(ResponseBody {
            rx: None,
            current: None,
            out: Out::default(),
            trailers: None,
        });
        let _ = status.add_header(resp.headers_mut());
        resp
    }
}

fn grpc_response(body: ResponseBody) -> Response<ResponseBody> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

fn status_trailers(status: &Status) -> HeaderMap {
    let mut h = HeaderMap::new();
    if status.add_header(&mut h).is_err() {
        h.insert("grpc-status", HeaderValue::from_static("13"));
    }
    h
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.out.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if let Some((msg, state)) = &mut this.current {
                if msg.write_some(state, &mut this.out, CHUNK) {
                    this.current = None;
                }
                this.out.flush();
                continue;
            }
            if let Some(t) = this.trailers.take() {
                this.rx = None;
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            let Some(rx) = &mut this.rx else {
                return Poll::Ready(None);
            };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    let len = msg.encoded_len();
                    this.out.buf.put_u8(0);
                    this.out.buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
                    this.current = Some((msg, WriteState::default()));
                }
                Poll::Ready(Some(Err(status))) => {
                    this.trailers = Some(status_trailers(&status));
                }
                Poll::Ready(None) => {
                    this.trailers = Some(status_trailers(&Status::ok("")));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rx.is_none()
            && self.current.is_none()
            && self.out.ready.is_empty()
            && self.out.buf.is_empty()
            && self.trailers.is_none()
    }
}

/// Bytes on their way out: small writes gathered into chunks, big shared ones passed as is.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) buf: BytesMut,
    pub(crate) ready: VecDeque<Bytes>,
}

impl Out {
    /// Bytes written so far and not yet handed on.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() + self.ready.iter().map(Bytes::len).sum::<usize>()
    }

    /// Appends `b`: by reference when it is big, copied otherwise.
    pub(crate) fn put_shared(&mut self, b: &Bytes) {
        if b.len() >= ZERO_COPY_MIN {
            self.flush();
            self.ready.push_back(b.clone());
        } else {
            self.buf.put_slice(b);
        }
    }

    /// Moves the gathered small writes into their own allocation, freed once sent.
    pub(crate) fn flush(&mut self) {
        if !self.buf.is_empty() {
            // Hand the allocation on (it is freed once sent) instead of keeping a chunk's
            // worth of capacity per stream for the stream's life.
            self.ready.push_back(std::mem::take(&mut self.buf).freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: &impl Message) -> Bytes {
        let body = msg.encode_to_vec();
        let mut out = BytesMut::with_capacity(5 + body.len());
        out.put_u8(0);
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out.freeze()
    }

    #[tokio::test]
    async fn a_read_request_leaves_no_buffer_behind() {
        let subscribe = |n: usize| DeltaDiscoveryRequest {
            type_url: "t".into(),
            resource_names_subscribe: (0..n).map(|i| format!("outbound|80||s{i}")).collect(),
            ..Default::default()
        };
        let (big, small) = (subscribe(700), subscribe(1));
        // As HTTP/2 may cut them: the big message over two frames, the second carrying
        // the start of the small one.
        let mut stream = BytesMut::new();
        stream.put(framed(&big));
        stream.put(framed(&small));
        let first = stream.split_to(100);
        let second = stream.split_to(stream.len() - 10);
        let frames = [first, second, stream].map(|b| Ok::<_, Infallible>(Frame::data(b.freeze())));
        let body =
            tonic::body::Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)));
        let mut requests = Requests::<DeltaDiscoveryRequest>::new(body);
        assert_eq!(requests.message().await.expect("reads"), Some(big));
        assert_eq!(requests.message().await.expect("reads"), Some(small));
        // Nothing of the big message's allocation is held once both are read.
        assert_eq!(requests.buf.capacity(), 0);
        assert!(requests.message().await.expect("ends cleanly").is_none());
    }
}

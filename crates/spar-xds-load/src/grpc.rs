//! One ADS stream on HTTP/2, with no gRPC library between it and h2.
//!
//! The tool simulates 2,000 proxies on the two cores the control plane under test also
//! runs on, so what it spends is taken from the figures. tonic's client passed every
//! request through a channel, a stream adapter and its encoder, and copied every response
//! into a buffer that grew with it; here a request is encoded into one buffer and handed to
//! h2, and a response that arrives in one DATA frame (every endpoint change) is a slice of
//! that frame. A message spread over frames (a full push) is copied once, into a buffer of
//! its exact size. The framing is standard gRPC: a 5-byte prefix per message, `grpc-status`
//! in the trailers (or in the headers of a trailers-only answer).

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Request};

use crate::proxy::ProxyError;

/// HTTP/2 windows the tool advertises: hyper's client defaults, which it used before.
/// Envoy advertises more (256 MiB); both exceed a full push, so neither waits on them.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;

/// Responses bigger than this are refused (a bug, not a config: a full push is ~1.5 MB).
const MAX_MESSAGE: usize = 512 << 20;

/// Opens the HTTP/2 connection of one proxy on `io` (Envoy opens one per ADS cluster); its
/// frames are read and written by a task of its own.
pub async fn handshake<T>(io: T) -> Result<SendRequest<Bytes>, h2::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(io)
        .await?;
    tokio::spawn(async move {
        // Ends when the proxy drops its stream or the control plane goes away; the stream
        // reports either.
        let _ = connection.await;
    });
    Ok(send)
}

/// A bidirectional gRPC stream: requests of type `Req`, responses as their bytes.
pub struct Stream<Req> {
    send: SendStream<Bytes>,
    response: Option<ResponseFuture>,
    recv: Option<RecvStream>,
    incoming: Incoming,
    _request: PhantomData<Req>,
}

/// Received bytes not yet taken as messages.
#[derive(Default)]
struct Incoming {
    /// The unread rest of the last DATA frame.
    pending: Bytes,
    /// A message that started in an earlier frame.
    partial: BytesMut,
}

impl<Req: prost::Message> Stream<Req> {
    /// Starts a call of `path` (`/package.Service/Method`).
    pub async fn open(conn: SendRequest<Bytes>, path: &str) -> Result<Self, ProxyError> {
        let mut conn = conn.ready().await.map_err(stream_error)?;
        let request = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| ProxyError::Stream(e.to_string()))?;
        let (response, send) = conn.send_request(request, false).map_err(stream_error)?;
        Ok(Stream {
            send,
            response: Some(response),
            recv: None,
            incoming: Incoming::default(),
            _request: PhantomData,
        })
    }

    /// Queues `req` (h2 sends it as the control plane's window allows).
    pub fn send(&mut self, req: &Req) -> Result<(), ProxyError> {
        let len = req.encoded_len();
        let mut buf = BytesMut::with_capacity(5 + len);
        buf.put_u8(0);
        buf.put_u32(len as u32);
        req.encode(&mut buf)
            .map_err(|e| ProxyError::Stream(format!("cannot encode a request: {e}")))?;
        self.send
            .send_data(buf.freeze(), false)
            .map_err(stream_error)
    }

    /// The next response message; `None` when the control plane ended the stream with OK.
    pub async fn message(&mut self) -> Result<Option<Bytes>, ProxyError> {
        loop {
            if let Some(msg) = self.incoming.take()? {
                return Ok(Some(msg));
            }
            let recv = match &mut self.recv {
                Some(recv) => recv,
                None => {
                    let future = self.response.take().ok_or(ProxyError::Closed)?;
                    let response = future.await.map_err(stream_error)?;
                    if response.status() != http::StatusCode::OK {
                        return Err(ProxyError::Stream(format!(
                            "HTTP status {} (is this a gRPC server?)",
                            response.status()
                        )));
                    }
                    // A trailers-only answer: the status is in the headers.
                    grpc_status(response.headers())?;
                    self.recv.insert(response.into_body())
                }
            };
            match recv.data().await {
                Some(Ok(frame)) => {
                    let _ = recv.flow_control().release_capacity(frame.len());
                    self.incoming.pending = frame;
                }
                Some(Err(e)) => return Err(stream_error(e)),
                None => {
                    if let Some(trailers) = recv.trailers().await.map_err(stream_error)? {
                        grpc_status(&trailers)?;
                    }
                    if !self.incoming.partial.is_empty() {
                        return Err(ProxyError::Stream(
                            "the stream ended inside a message".into(),
                        ));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

impl Incoming {
    /// A whole message from what was received, if there is one.
    fn take(&mut self) -> Result<Option<Bytes>, ProxyError> {
        if self.partial.is_empty() {
            // The usual case for small messages: all of it in the frame at hand.
            if let Some(len) = message_len(&self.pending)? {
                if self.pending.len() >= 5 + len {
                    self.pending.advance(5);
                    return Ok(Some(self.pending.split_to(len)));
                }
                self.partial.reserve(5 + len);
            }
        }
        // Copy into the partial message until it is whole or the frame is used up.
        loop {
            let want = match message_len(&self.partial)? {
                Some(len) => 5 + len,
                None => 5,
            };
            let n = (want - self.partial.len()).min(self.pending.len());
            self.partial.extend_from_slice(&self.pending[..n]);
            self.pending.advance(n);
            if self.partial.len() < want {
                return Ok(None);
            }
            if let Some(len) = message_len(&self.partial)? {
                if self.partial.len() == 5 + len {
                    let mut msg = std::mem::take(&mut self.partial);
                    msg.advance(5);
                    return Ok(Some(msg.freeze()));
                }
                // The prefix just came in: room for the rest at once.
                self.partial.reserve(5 + len - self.partial.len());
            }
        }
    }
}

/// The length a gRPC message prefix announces, once its 5 bytes are there.
fn message_len(b: &[u8]) -> Result<Option<usize>, ProxyError> {
    if b.len() < 5 {
        return Ok(None);
    }
    if b[0] != 0 {
        return Err(ProxyError::Stream(
            "a compressed response, which this tool never asked for".into(),
        ));
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(ProxyError::Stream(format!(
            "a response of {len} bytes is over the {MAX_MESSAGE}-byte limit"
        )));
    }
    Ok(Some(len))
}

/// `Err` unless `grpc-status` is absent or 0.
fn grpc_status(headers: &HeaderMap) -> Result<(), ProxyError> {
    match headers.get("grpc-status").map(|v| v.as_bytes()) {
        None | Some(b"0") => Ok(()),
        Some(code) => Err(ProxyError::Stream(format!(
            "grpc-status {}: {}",
            String::from_utf8_lossy(code),
            headers
                .get("grpc-message")
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .unwrap_or_default()
        ))),
    }
}

fn stream_error(e: h2::Error) -> ProxyError {
    ProxyError::Stream(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Feeds `frames` in turn and collects the messages taken out.
    fn read(frames: &[&[u8]]) -> Result<Vec<Bytes>, ProxyError> {
        let mut incoming = Incoming::default();
        let mut out = Vec::new();
        for f in frames {
            incoming.pending = Bytes::copy_from_slice(f);
            while let Some(m) = incoming.take()? {
                out.push(m);
            }
            assert!(incoming.pending.is_empty(), "a frame's bytes left unread");
        }
        assert!(incoming.partial.is_empty(), "a message left unfinished");
        Ok(out)
    }

    #[test]
    fn messages_are_read_whatever_the_frames() {
        let a = vec![7u8; 40_000];
        let b = b"small".to_vec();
        let mut all = framed(&a);
        all.extend(framed(&b));
        all.extend(framed(b""));
        // Every way of cutting the bytes in two, and in 16 KB frames.
        for cut in [
            1,
            4,
            5,
            6,
            100,
            40_004,
            40_005,
            40_006,
            40_010,
            all.len() - 1,
        ] {
            let got = read(&[&all[..cut], &all[cut..]]).expect("reads");
            assert_eq!(got, [&a[..], &b[..], &[][..]], "cut at {cut}");
        }
        let frames: Vec<&[u8]> = all.chunks(16_384).collect();
        assert_eq!(read(&frames).expect("reads"), [&a[..], &b[..], &[][..]]);
    }

    #[test]
    fn a_message_in_one_frame_is_a_slice_of_it() {
        let frame = Bytes::from(framed(b"endpoint change"));
        let mut incoming = Incoming {
            pending: frame.clone(),
            ..Incoming::default()
        };
        let msg = incoming.take().expect("reads").expect("a message");
        assert_eq!(&msg[..], b"endpoint change");
        assert_eq!(msg.as_ptr(), frame[5..].as_ptr(), "not copied");
    }

    #[test]
    fn compressed_or_oversized_messages_are_refused() {
        assert!(read(&[&[1, 0, 0, 0, 1, 0]]).is_err());
        assert!(read(&[&[0, 0xff, 0xff, 0xff, 0xff]]).is_err());
    }
}

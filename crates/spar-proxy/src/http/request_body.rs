//! A downstream request's body on its way to the router: as hyper received it, or with the
//! part a filter already read put back in front. ext_authz with `with_request_body` reads
//! the body's first bytes for the authorizer (Envoy buffers them in the filter chain); the
//! upstream then gets every byte, those first.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};

/// The body the router forwards (`B`: hyper's, or any body in tests).
pub struct RequestBody<B = Incoming> {
    /// Bytes already read from `rest`, sent first.
    read: Option<Bytes>,
    /// Trailers already read (the stream ended while reading).
    trailers: Option<HeaderMap>,
    /// What the client has not handed over yet; `None` once the stream ended.
    rest: Option<B>,
}

impl<B> RequestBody<B> {
    pub fn new(b: B) -> Self {
        RequestBody {
            read: None,
            trailers: None,
            rest: Some(b),
        }
    }
}

impl From<Incoming> for RequestBody {
    fn from(b: Incoming) -> Self {
        RequestBody::new(b)
    }
}

impl<B> hyper::body::Body for RequestBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(b) = self.read.take() {
            if !b.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.as_ref().is_none_or(Bytes::is_empty)
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.read.as_ref().map_or(0, |b| b.len() as u64);
        let rest = match &self.rest {
            Some(r) => r.size_hint(),
            None => SizeHint::with_exact(0),
        };
        // Upper first: a lower bound above the upper one panics.
        let mut hint = SizeHint::new();
        if let Some(u) = rest.upper() {
            hint.set_upper(u + read);
        }
        hint.set_lower(rest.lower() + read);
        hint
    }
}

/// What the authorizer is sent of the body: its first bytes, and whether there were more.
#[derive(Debug, Clone)]
pub struct CheckBody {
    pub bytes: Bytes,
    pub partial: bool,
}

/// Why the body could not be read for the authorizer.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than `max` and a partial body is not allowed: Envoy's 413.
    TooLarge,
    /// The client's stream failed.
    Stream(super::body::BoxError),
}

impl<B> RequestBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<super::body::BoxError>,
{
    /// Reads the body as Envoy's ext_authz buffers it: to its end, or with `allow_partial`
    /// until at least `max` bytes are in; a body longer than `max` without `allow_partial`
    /// is refused. What was read stays in front of the rest. `None`: there is no body.
    pub async fn read_for_check(
        &mut self,
        max: usize,
        allow_partial: bool,
    ) -> Result<Option<CheckBody>, ReadError> {
        if self.is_end_stream() {
            return Ok(None);
        }
        let mut buf = BytesMut::new();
        if let Some(b) = self.read.take() {
            buf.extend_from_slice(&b);
        }
        while !(allow_partial && buf.len() >= max) {
            let Some(rest) = self.rest.as_mut() else {
                break;
            };
            match rest.frame().await {
                None => self.rest = None,
                Some(Err(e)) => return Err(ReadError::Stream(e.into())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => buf.extend_from_slice(&d),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                        }
                        self.rest = None;
                    }
                },
            }
            if !allow_partial && buf.len() > max {
                return Err(ReadError::TooLarge);
            }
        }
        let all = buf.freeze();
        let partial = all.len() > max;
        let bytes = all.slice(..all.len().min(max));
        self.read = Some(all);
        Ok(Some(CheckBody { bytes, partial }))
    }
}

#[cfg(test)]
mod tests;

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Frame;

use super::*;

/// A client body arriving frame by frame.
struct Frames(VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// A body that arrives in `chunks`, then `trailers` if any.
fn body(chunks: &[&str], trailers: Option<(&str, &str)>) -> RequestBody<Frames> {
    let mut frames: VecDeque<Frame<Bytes>> = chunks
        .iter()
        .map(|c| Frame::data(Bytes::from(c.to_string())))
        .collect();
    if let Some((k, v)) = trailers {
        let mut t = HeaderMap::new();
        t.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
        frames.push_back(Frame::trailers(t));
    }
    RequestBody::new(Frames(frames))
}

/// Everything the upstream would get: the data, and the trailers.
async fn forwarded(b: RequestBody<Frames>) -> (String, Option<HeaderMap>) {
    let c = b.collect().await.unwrap();
    let trailers = c.trailers().cloned();
    (String::from_utf8(c.to_bytes().to_vec()).unwrap(), trailers)
}

#[tokio::test]
async fn the_whole_body_is_read_when_it_fits_and_forwarded_after() {
    let mut b = body(&["hel", "lo"], Some(("grpc-status", "0")));
    let got = b.read_for_check(16, false).await.unwrap().unwrap();
    assert_eq!((&got.bytes[..], got.partial), (&b"hello"[..], false));
    assert_eq!(hyper::body::Body::size_hint(&b).exact(), Some(5));
    let (data, trailers) = forwarded(b).await;
    assert_eq!(data, "hello");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn a_body_of_exactly_max_bytes_fits() {
    let mut b = body(&["0123", "4567"], None);
    let got = b.read_for_check(8, false).await.unwrap().unwrap();
    assert_eq!((got.bytes.len(), got.partial), (8, false));
}

#[tokio::test]
async fn longer_than_max_is_too_large_without_partial_messages() {
    let mut b = body(&["0123", "45678"], None);
    assert!(matches!(
        b.read_for_check(8, false).await,
        Err(ReadError::TooLarge)
    ));
}

#[tokio::test]
async fn with_partial_messages_the_first_max_bytes_are_sent_and_all_forwarded() {
    let mut b = body(&["0123", "456789", "abc"], None);
    let got = b.read_for_check(8, true).await.unwrap().unwrap();
    // Reading stops once `max` bytes are in; the check gets the first `max` of them.
    assert_eq!((&got.bytes[..], got.partial), (&b"01234567"[..], true));
    assert_eq!(forwarded(b).await.0, "0123456789abc");
    // Exactly `max` buffered: Envoy's flag says the check's body is not cut short.
    let mut b = body(&["01234567", "89"], None);
    let got = b.read_for_check(8, true).await.unwrap().unwrap();
    assert_eq!((got.bytes.len(), got.partial), (8, false));
    assert_eq!(forwarded(b).await.0, "0123456789");
}

#[tokio::test]
async fn no_body_is_no_check_body() {
    let mut b = body(&[], None);
    // A stream that has not said it ended is read to its end.
    let got = b.read_for_check(8, false).await.unwrap();
    assert_eq!(got.map(|g| g.bytes.len()), Some(0));
    let mut b = RequestBody::new(http_body_util::Empty::<Bytes>::new());
    assert!(b.read_for_check(8, false).await.unwrap().is_none());
}

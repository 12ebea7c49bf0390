//! Body and response types shared by the HTTP path, Envoy's response flags, and local
//! replies (the responses the proxy writes itself).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Envoy's response flags (the `%RESPONSE_FLAGS%` short names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// No route.
    NR,
    /// Upstream connection failure.
    UF,
    /// No healthy upstream host.
    UH,
    /// Upstream overflow (circuit breaking).
    UO,
    /// Upstream retry limit exceeded.
    URX,
    /// Upstream request timeout.
    UT,
    /// Downstream connection termination.
    DC,
    /// Upstream connection termination (reset before headers).
    UC,
    /// Cluster not found.
    NC,
    /// Fault injected abort.
    FI,
    /// Fault injected delay.
    DI,
}

impl Flag {
    pub const ALL: [Flag; 11] = [
        Flag::NR,
        Flag::UF,
        Flag::UH,
        Flag::UO,
        Flag::URX,
        Flag::UT,
        Flag::DC,
        Flag::UC,
        Flag::NC,
        Flag::FI,
        Flag::DI,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::NR => "NR",
            Flag::UF => "UF",
            Flag::UH => "UH",
            Flag::UO => "UO",
            Flag::URX => "URX",
            Flag::UT => "UT",
            Flag::DC => "DC",
            Flag::UC => "UC",
            Flag::NC => "NC",
            Flag::FI => "FI",
            Flag::DI => "DI",
        }
    }
}

/// The flags a response carries (a response extension, read by stats and logs).
#[derive(Debug, Clone, Default)]
pub struct Flags(pub Vec<Flag>);

/// A response the proxy writes itself, with Envoy's status and body for each flag.
pub fn local_reply(flag: Flag) -> Response<Body> {
    let (status, body): (u16, &str) = match flag {
        Flag::NR => (404, ""),
        Flag::UH => (503, "no healthy upstream"),
        Flag::UF => (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        Flag::UC => (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
        Flag::UO => (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
        Flag::UT => (504, "upstream request timeout"),
        Flag::NC => (503, ""),
        Flag::URX | Flag::DC | Flag::FI | Flag::DI => (503, ""),
    };
    let mut r = reply(status, body);
    r.extensions_mut().insert(Flags(vec![flag]));
    r
}

pub fn reply(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(if body.is_empty() {
        empty()
    } else {
        full(body.to_string())
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(body.len() as u64),
    );
    r
}
